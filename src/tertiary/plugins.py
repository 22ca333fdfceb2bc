"""Objects named by ``"package.module:attribute"`` strings (tasks, dataset builders, user plugins)."""

from __future__ import annotations

import importlib
from typing import Any

from tertiary.errors import TertiaryError


def load_object(spec: str, what: str, error: type[TertiaryError]) -> Any:
    """Import ``spec`` = ``"package.module:attribute"`` and return the attribute.

    Args:
        spec: the dotted module path and attribute, separated by a colon.
        what: what is being loaded, for the message (e.g. ``"task 'fair'"``).
        error: the error class to raise (a :class:`TertiaryError` subclass).

    Raises:
        error: ``spec`` is malformed, its module cannot be imported, or it lacks the attribute.
    """
    if ":" not in spec:
        raise error(f"{what}: '{spec}' is not of the form module:attribute")
    module_name, attr = spec.split(":", 1)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise error(f"{what} cannot be imported ({module_name}: {exc})") from None
    try:
        return getattr(module, attr)
    except AttributeError:
        raise error(f"{what}: '{module_name}' has no '{attr}'") from None
