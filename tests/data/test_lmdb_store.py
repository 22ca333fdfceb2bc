import pickle

import numpy as np
import pytest

from tertiary.data.lmdb_store import LmdbDataset, LmdbWriter, decode_record, encode_record
from tertiary.errors import DataError


def test_round_trip_and_index(tmp_path):
    path = tmp_path / "d.lmdb"
    with LmdbWriter(path, task="toy") as w:
        for i in range(5):
            w.add(f"k{i}", {"x": np.arange(i + 1, dtype=np.float32), "m": np.ones((2, 2), np.int64)}, {"i": i, "name": f"n{i}"})
        with pytest.raises(DataError, match="duplicate"):
            w.add("k0", {"x": np.zeros(1)}, {})
        w.commit({"skipped": []})
    assert not (tmp_path / "d.lmdb.partial").exists()
    ds = LmdbDataset(path, task="toy")
    assert len(ds) == 5 and ds.meta[3] == {"i": 3, "name": "n3"}
    arrays, meta = ds[4]
    np.testing.assert_array_equal(arrays["x"], np.arange(5, dtype=np.float32))
    assert meta["i"] == 4
    clone = pickle.loads(pickle.dumps(ds))  # what a DataLoader worker receives
    assert clone[2][1]["i"] == 2
    with pytest.raises(DataError, match="built for task 'toy'"):
        LmdbDataset(path, task="folding")


def test_failed_build_leaves_nothing(tmp_path):
    path = tmp_path / "d.lmdb"
    with pytest.raises(RuntimeError):
        with LmdbWriter(path, task="toy") as w:
            w.add("a", {"x": np.zeros(2)}, {})
            raise RuntimeError("crash")
    assert not path.exists() and not (tmp_path / "d.lmdb.partial").exists()


def test_corrupt_inputs_are_data_errors(tmp_path):
    with pytest.raises(DataError, match="not found"):
        LmdbDataset(tmp_path / "missing.lmdb")
    junk = tmp_path / "junk.lmdb"
    junk.write_bytes(b"\0" * 10000)
    with pytest.raises(DataError):
        LmdbDataset(junk)
    with pytest.raises(DataError, match="rec: corrupt record"):
        decode_record(b"garbage", "rec")
    arrays, meta = decode_record(encode_record({"a": np.ones(3)}, {"x": 1}), "ok")
    assert meta == {"x": 1}
