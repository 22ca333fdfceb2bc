"""Datasets stored in one LMDB file: many concurrent readers, atomic builds, no pickle.

A record is a dict of numpy arrays plus a JSON-able metadata dict, serialised with
safetensors (arrays) and JSON (metadata), so reading a dataset never unpickles anything. The
key ``__index__`` holds the ordered record keys, each record's metadata, the task name and the
build report. Builds write ``<path>.partial`` and rename it over ``<path>`` only when complete,
so a crash never leaves a half-built dataset under the final name.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tertiary.errors import DataError

INDEX_KEY = b"__index__"
FORMAT_VERSION = 1
#: Read-only environments by (path, process id): py-lmdb allows one per file and process.
_READERS: dict[tuple[str, int], Any] = {}


def encode_record(arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> bytes:
    """Arrays + metadata -> bytes (safetensors with the metadata as a JSON string)."""
    from safetensors.numpy import save

    return save({k: np.ascontiguousarray(v) for k, v in arrays.items()}, metadata={"meta": json.dumps(meta)})


def decode_record(blob: bytes, where: str) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Inverse of :func:`encode_record`; corrupt data raises :class:`DataError` naming ``where``."""
    from safetensors.numpy import load

    try:
        arrays = load(blob)
        header_len = int.from_bytes(blob[:8], "little")
        header = json.loads(blob[8 : 8 + header_len])
        meta = json.loads(header.get("__metadata__", {}).get("meta", "{}"))
    except Exception as exc:  # safetensors raises several types for corrupt input
        raise DataError(f"{where}: corrupt record ({type(exc).__name__}: {exc})") from None
    return arrays, meta


class LmdbWriter:
    """Write records, then ``commit()`` to publish the dataset atomically.

    Use as a context manager: leaving the block without ``commit()`` (or with an exception)
    deletes the partial file.
    """

    def __init__(self, path: str | Path, task: str, map_size: int = 1 << 40) -> None:
        import lmdb

        self.path = Path(path)
        self.partial = self.path.with_name(self.path.name + ".partial")
        self.partial.unlink(missing_ok=True)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.env = lmdb.open(str(self.partial), subdir=False, map_size=map_size, lock=False, sync=False)
        self.task = task
        self.keys: list[str] = []
        self.meta: list[dict[str, Any]] = []
        self._seen: set[str] = set()
        self.committed = False

    def add(self, key: str, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        if key in self._seen:
            raise DataError(f"duplicate record key '{key}'")
        with self.env.begin(write=True) as txn:
            txn.put(key.encode(), encode_record(arrays, meta))
        self._seen.add(key)
        self.keys.append(key)
        self.meta.append(meta)

    def commit(self, report: dict[str, Any] | None = None) -> Path:
        index = {
            "format_version": FORMAT_VERSION,
            "task": self.task,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "keys": self.keys,
            "meta": self.meta,
            "report": report or {},
        }
        with self.env.begin(write=True) as txn:
            txn.put(INDEX_KEY, json.dumps(index).encode())
        self.env.sync(True)
        self.env.close()
        stale = _READERS.pop((str(self.path.resolve()), os.getpid()), None)
        if stale is not None:
            stale.close()
        os.replace(self.partial, self.path)
        self.committed = True
        return self.path

    def __enter__(self) -> LmdbWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        if not self.committed:
            self.env.close()
            self.partial.unlink(missing_ok=True)


class LmdbDataset(Sequence):
    """Read-only view of a dataset built by :class:`LmdbWriter`.

    Safe to share with data-loader workers and DDP ranks: the LMDB environment is opened lazily
    in each process. ``dataset[i]`` -> ``(arrays, meta)``.
    """

    def __init__(self, path: str | Path, task: str | None = None) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise DataError(f"{self.path}: dataset not found (build it with 'tertiary data build')")
        index = self._read_index()
        if task is not None and index.get("task") != task:
            raise DataError(f"{self.path}: dataset was built for task '{index.get('task')}', not '{task}'")
        self.task = index.get("task")
        self.keys: list[str] = index["keys"]
        self.meta: list[dict[str, Any]] = index["meta"]
        self.report: dict[str, Any] = index.get("report", {})

    def _open(self):
        import lmdb

        key = (str(self.path.resolve()), os.getpid())
        if key not in _READERS:
            try:
                _READERS[key] = lmdb.open(
                    key[0], subdir=False, readonly=True, lock=False, readahead=False, max_readers=512
                )
            except lmdb.Error as exc:
                raise DataError(f"{self.path}: cannot open dataset ({exc})") from None
        return _READERS[key]

    def _read_index(self) -> dict[str, Any]:
        with self._open().begin() as txn:
            raw = txn.get(INDEX_KEY)
        if raw is None:
            raise DataError(f"{self.path}: not a tertiary dataset (no index)")
        try:
            index = json.loads(raw)
        except json.JSONDecodeError:
            raise DataError(f"{self.path}: corrupt dataset index") from None
        if index.get("format_version") != FORMAT_VERSION or len(index.get("keys", [])) != len(index.get("meta", [])):
            raise DataError(f"{self.path}: unsupported or inconsistent dataset index")
        return index

    def __len__(self) -> int:
        return len(self.keys)

    def __getitem__(self, i: int) -> tuple[dict[str, np.ndarray], dict[str, Any]]:  # type: ignore[override]
        key = self.keys[i]
        with self._open().begin() as txn:
            blob = txn.get(key.encode())
        if blob is None:
            raise DataError(f"{self.path}: record '{key}' is missing")
        return decode_record(bytes(blob), f"{self.path}:{key}")

    def __iter__(self) -> Iterator[tuple[dict[str, np.ndarray], dict[str, Any]]]:
        for i in range(len(self)):
            yield self[i]
