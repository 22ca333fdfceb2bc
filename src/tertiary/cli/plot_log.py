"""``tertiary plot-log RUN_DIR``: loss and validation curves of a training run, as PNG."""

from __future__ import annotations

import argparse
from pathlib import Path

from tertiary.errors import ConfigError, MissingDependencyError
from tertiary.train.metrics_log import read_metrics

_SKIP = {"it_per_s", "lr", "grad_norm"}


def plot_run(run_dir: Path, out: Path) -> Path:
    """Draw one panel per metric (train and val curves overlaid) into ``out``."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise MissingDependencyError("plot-log needs matplotlib: pip install 'tertiary[plots]'") from None
    data = read_metrics(run_dir)
    names = sorted({m for split in data.values() for m in split if m not in _SKIP})
    if not names:
        raise ConfigError(f"{run_dir}: metrics.csv has no rows to plot")
    cols = min(3, len(names))
    rows = -(-len(names) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.5 * cols, 3.2 * rows), squeeze=False)
    for ax, name in zip(axes.flat, names):
        for split, style in (("train", "-"), ("val", "o-")):
            if name in data.get(split, {}):
                steps, values = data[split][name]
                ax.plot(steps, values, style, label=split, markersize=3)
        ax.set_title(name)
        ax.set_xlabel("step")
        ax.legend()
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def _run(args: argparse.Namespace) -> int:
    run_dir = Path(args.run_dir)
    out = plot_run(run_dir, Path(args.output) if args.output else run_dir / "curves.png")
    print(out)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "plot-log",
        help="plot loss / validation curves of a training run to PNG",
        description="Read RUN_DIR/metrics.csv (written by 'tertiary train') and draw one panel per metric, "
        "train and validation overlaid.",
    )
    p.add_argument("run_dir", help="training run folder")
    p.add_argument("-o", "--output", help="PNG path (default RUN_DIR/curves.png)")
    p.set_defaults(handler=_run)
