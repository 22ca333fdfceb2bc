"""FAIR: full-atom protein pocket design by iterative refinement (Zhang et al., NeurIPS 2023).

``FairModel`` is the network (faithful to the released architecture so that its checkpoint
loads through :func:`weights.load_official`); :func:`generate.generate` runs the two-stage
sampler, :func:`loss.training_loss` the two-stage training forward.
"""

from .config import FairConfig
from .model import FairModel

__all__ = ["FairConfig", "FairModel"]
