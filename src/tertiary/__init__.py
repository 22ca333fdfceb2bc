"""tertiary: protein structure prediction, embedding and design in one PyTorch package."""

from tertiary.errors import (
    ConfigError,
    DataError,
    InputError,
    ParseError,
    ResourceError,
    TertiaryError,
    TrainingError,
    WeightsError,
)

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "DataError",
    "InputError",
    "ParseError",
    "ResourceError",
    "TertiaryError",
    "TrainingError",
    "WeightsError",
    "__version__",
]
