"""The training engine shared by every model family.

A family provides a :class:`~tertiary.train.task.Task` (model, datasets, loss, evaluation);
:class:`~tertiary.train.engine.Trainer` owns precision, accumulation, clipping, EMA, schedules,
distributed data parallelism, checkpoints and logging.
"""
