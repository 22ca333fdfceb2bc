"""Shared fixtures: where ``../shared`` and the reference sets are.

- ``TERTIARY_SHARED`` (default ``<repo>/../shared``): real data; tests that need it skip cleanly
  when it is absent.
- ``TERTIARY_REFS`` (default ``<shared>/refs``): outputs of original implementations. Reference
  tests (``test_*_refs.py``) must run whenever a reference set is there: they skip only when the
  default location is absent and ``TERTIARY_REFS`` is unset, and fail when a set is incomplete.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
TESTS_DATA = Path(__file__).resolve().parent / "data"


def shared_root() -> Path:
    return Path(os.environ.get("TERTIARY_SHARED", REPO.parent / "shared"))


def refs_root() -> Path:
    return Path(os.environ.get("TERTIARY_REFS", shared_root() / "refs"))


@pytest.fixture(scope="session")
def tests_data() -> Path:
    """``tests/data``: small fixtures shipped with the repository."""
    return TESTS_DATA


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """``../shared`` (or ``$TERTIARY_SHARED``); skips the test when absent."""
    root = shared_root()
    if not root.is_dir():
        pytest.skip(f"shared data folder {root} not found (set TERTIARY_SHARED)")
    return root


@pytest.fixture(scope="session")
def shared_data(shared_dir: Path) -> Path:
    """``../shared/data``; skips when absent."""
    data = shared_dir / "data"
    if not data.is_dir():
        pytest.skip(f"{data} not found")
    return data


def open_refs(family: str) -> Path:
    """Folder of one family's reference set (``$TERTIARY_REFS/<family>``).

    Skips only when ``TERTIARY_REFS`` is unset and the default location does not exist;
    fails when the variable points somewhere without this family or without its ``meta.json``.
    """
    explicit = "TERTIARY_REFS" in os.environ
    root = refs_root()
    if not root.is_dir():
        if explicit:
            pytest.fail(f"TERTIARY_REFS={root} is not a folder")
        pytest.skip(f"no reference sets at {root} (set TERTIARY_REFS)")
    folder = root / family
    if not (folder / "meta.json").is_file():
        pytest.fail(f"reference set {folder} is incomplete: meta.json missing")
    return folder


def require(path: Path) -> Path:
    """Fail (never skip) when a file of a reference set is missing."""
    if not path.exists():
        pytest.fail(f"reference set incomplete: {path} missing")
    return path
