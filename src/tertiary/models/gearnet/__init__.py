"""GearNet / GearNet-Edge structure encoders over residue graphs (:mod:`tertiary.data.graph`)."""

from tertiary.models.gearnet.config import GearNetConfig
from tertiary.models.gearnet.model import GearNet, mean_readout, sum_readout

__all__ = ["GearNet", "GearNetConfig", "mean_readout", "sum_readout"]
