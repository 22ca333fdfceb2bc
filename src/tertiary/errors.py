"""Exceptions raised by tertiary.

Every error a user can cause (bad file, bad option, wrong weights) is a :class:`TertiaryError`
subclass whose message names the file / record / key and the problem. The CLI prints the message
on one line and exits with code 2.
"""

from __future__ import annotations


class TertiaryError(Exception):
    """Base class of all errors caused by user input or the environment."""


class ParseError(TertiaryError, ValueError):
    """A file or string could not be read (structure, sequence, MSA, ligand)."""


class WeightsError(TertiaryError):
    """A weights / checkpoint file is missing, corrupt or does not fit the architecture."""


class ConfigError(TertiaryError, ValueError):
    """A configuration is invalid (unknown key, wrong type, inconsistent values)."""


class InputError(TertiaryError, ValueError):
    """Tensors or objects passed to a function are inconsistent (shapes, masks, lengths)."""


class DataError(TertiaryError):
    """A dataset is missing, corrupt or inconsistent."""


class TrainingError(TertiaryError):
    """Training cannot go on (e.g. too many non-finite losses in a row)."""


class MissingDependencyError(TertiaryError, ImportError):
    """An optional dependency is not installed; the message names the extra to install."""


class ResourceError(TertiaryError):
    """The requested work would not fit the available memory / disk / device."""


def one_line(error: BaseException | str) -> str:
    """A message on one line (runs of whitespace, newlines included, become one space), for the
    CLI and for per-item error reports; an exception with an empty message gives its type name."""
    text = " ".join(str(error).split())
    if not text and isinstance(error, BaseException):
        return type(error).__name__
    return text
