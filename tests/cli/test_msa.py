from __future__ import annotations

import json
from pathlib import Path

import pytest

from tertiary.cli.main import main
from tertiary.data.msa_features import MSAFeatureConfig, build_features
from tertiary.sequence import read_fasta, read_msa

FIXTURES = Path(__file__).resolve().parent.parent / "data" / "sequence"


def _names(a3m: Path) -> list[str]:
    return [line[1:].strip() for line in a3m.read_text().splitlines() if line.startswith(">")]


def test_help_explains(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["msa", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for word in ("jackhmmer", "A3M", "--db", "--iterations", "--evalue", "--cpus", "--max-seqs"):
        assert word in out


def test_search_finds_homologues_and_a3m_feeds_features(tmp_path, capsys):
    """Database: the 2q2k MSA's hit sequences ('homolog_*') plus 40 unrelated PDB chains ('decoy_*')."""
    query = read_fasta(FIXTURES / "2q2k_A.fasta")[0]
    db = FIXTURES / "2q2k_A_search_db.fasta"
    homologues = [r.name for r in read_fasta(db) if r.name.startswith("homolog_")]
    fasta = tmp_path / "q.fasta"
    fasta.write_text(f">{query.name}\n{query.sequence}\n>broken\nMK1V\n")
    out = tmp_path / "out"
    assert main(["msa", str(fasta), "--db", str(db), "-o", str(out), "--cpus", "1"]) == 1  # one bad record
    captured = capsys.readouterr().out
    assert "1 searched" in captured and "1 failed" in captured and "broken" in captured

    a3m = out / f"{query.name}.a3m"
    msa = read_msa(a3m)
    msa.check_query(query.sequence)
    names = _names(a3m)
    found = {n.rsplit("/", 1)[0] for n in names[1:] if n.startswith("homolog_")}
    assert len(found) >= 0.7 * len(homologues)
    # decoys may only match the N-terminal His-tag / thrombin-site expression tag (...GSHM)
    tag_end = query.sequence.index("GSHM") + 4
    for i, name in enumerate(names):
        if name.startswith("decoy_"):
            covered = [j for j in range(msa.length) if msa.sequences[i, j] != 21]
            assert max(covered) < tag_end, name
    summary = json.loads((out / "msa_summary.json").read_text())
    ok = [r for r in summary if r["status"] == "ok"]
    assert len(ok) == 1 and ok[0]["rows"] == msa.depth and ok[0]["hits"] >= len(found)
    assert [r["status"] for r in summary].count("failed") == 1

    batch = build_features(query.sequence, msa, MSAFeatureConfig(max_msa_clusters=8, max_extra_msa=16, num_recycles=0))
    assert batch["msa_row_mask"].sum() == 8

    # rerun: existing outputs are skipped unless --overwrite; --max-seqs limits the rows
    fasta.write_text(f">{query.name}\n{query.sequence}\n")
    assert main(["msa", str(fasta), "--db", str(db), "-o", str(out)]) == 0
    assert "1 skipped" in capsys.readouterr().out
    assert main(["msa", str(fasta), "--db", str(db), "-o", str(out), "--overwrite", "--max-seqs", "3"]) == 0
    assert read_msa(a3m).depth == 4


def test_bad_inputs_give_one_line_errors(tmp_path, capsys):
    fasta = tmp_path / "q.fasta"
    fasta.write_text(">q\nMKVLA\n")
    junk = tmp_path / "junk.fasta"
    junk.write_bytes(b"\x00\x01\x02binary")
    empty = tmp_path / "empty.fasta"
    empty.write_text("")
    out = str(tmp_path / "o")
    assert main(["msa", str(fasta), "--db", str(tmp_path / "missing.fasta"), "-o", out]) == 2
    assert "not found" in capsys.readouterr().err
    assert main(["msa", str(fasta), "--db", str(junk), "-o", out]) == 2
    assert "junk.fasta" in capsys.readouterr().err
    assert main(["msa", str(empty), "--db", str(fasta), "-o", out]) == 2
    assert "no FASTA records" in capsys.readouterr().err
    assert main(["msa", str(fasta), "--db", str(fasta), "-o", out, "--iterations", "0"]) == 2


def test_kinase_search_against_pdb_chains(shared_data, tmp_path):
    """A protein kinase against the 207 deepfri_nrpdb chains (read with gemmi): it finds itself
    first, and every other hit with an EC annotation is a kinase (EC 2.7.10-2.7.12)."""
    gemmi = pytest.importorskip("gemmi")
    folder = shared_data / "deepfri_nrpdb"
    structures = sorted((folder / "structures").glob("*.pdb.gz"))
    if not structures:
        pytest.skip("deepfri_nrpdb structures not found")
    db = tmp_path / "db.fasta"
    seqs = {}
    with db.open("w") as handle:
        for path in structures:
            chain = gemmi.read_structure(str(path))[0][0]
            seq = gemmi.one_letter_code([r.name for r in chain.get_polymer()]).upper()
            seqs[path.name.removesuffix(".pdb.gz")] = seq
            handle.write(f">{path.name.removesuffix('.pdb.gz')}\n{seq}\n")
    ec = {}
    for line in (folder / "nrPDB-EC_2020.04_annot.tsv").read_text().splitlines():
        parts = line.split("\t")
        if len(parts) == 2 and not line.startswith("#"):
            ec[parts[0]] = parts[1].split(",")
    query = "1PHK-A"
    fasta = tmp_path / "q.fasta"
    fasta.write_text(f">{query}\n{seqs[query]}\n")
    assert main(["msa", str(fasta), "--db", str(db), "-o", str(tmp_path / "out"), "--iterations", "2", "--cpus", "1"]) == 0
    a3m = tmp_path / "out" / f"{query}.a3m"
    read_msa(a3m).check_query(seqs[query])
    hits = [n.split("/")[0] for n in _names(a3m)[1:]]
    assert hits[0] == query
    others = {h for h in hits if h != query}
    assert len(others) >= 5
    annotated = [h for h in others if h in ec]
    assert annotated and all(any(e.startswith(("2.7.10", "2.7.11", "2.7.12")) for e in ec[h]) for h in annotated)


def test_streamed_database_matches_in_memory(tmp_path, capsys):
    """--max-db-gib 0 streams the database from disk; every query (not only the first) sees all of it."""
    query = read_fasta(FIXTURES / "2q2k_A.fasta")[0]
    fasta = tmp_path / "q.fasta"
    fasta.write_text(f">full\n{query.sequence}\n>core\n{query.sequence[20:]}\n")
    db = FIXTURES / "2q2k_A_search_db.fasta"
    for mode, extra in (("memory", []), ("stream", ["--max-db-gib", "0"])):
        assert main(["msa", str(fasta), "--db", str(db), "-o", str(tmp_path / mode), "--cpus", "1", *extra]) == 0
    for name in ("full", "core"):
        memory, stream = _names(tmp_path / "memory" / f"{name}.a3m"), _names(tmp_path / "stream" / f"{name}.a3m")
        assert len(memory) > 5 and stream == memory


def test_a3m_feeds_tertiary_fold(tmp_path, capsys):
    """The A3M written by 'tertiary msa' is accepted by 'tertiary fold --msa' (tiny random model)."""
    import dataclasses
    from importlib import util

    import torch

    from tertiary.models.alphafold.config import DataConfig
    from tertiary.models.alphafold.model import AlphaFold
    from tertiary.models.alphafold.weights import save_weights

    path = Path(__file__).resolve().parents[1] / "models" / "alphafold" / "test_model.py"
    spec = util.spec_from_file_location("_af2_test_model_msa", path)
    module = util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    torch.manual_seed(0)
    config = dataclasses.replace(module.tiny_config(), data=DataConfig(max_msa_clusters=8, max_extra_msa=16, num_recycles=0))
    params = save_weights(AlphaFold(config), tmp_path / "tiny")

    query = read_fasta(FIXTURES / "2q2k_A.fasta")[0]
    fasta = tmp_path / "q.fasta"
    fasta.write_text(f">{query.name}\n{query.sequence}\n")
    db = FIXTURES / "2q2k_A_search_db.fasta"
    assert main(["msa", str(fasta), "--db", str(db), "-o", str(tmp_path / "msas"), "--cpus", "1"]) == 0
    rows = read_msa(tmp_path / "msas" / f"{query.name}.a3m").depth
    out = tmp_path / "fold"
    # the folder of A3Ms is matched to the FASTA records by name
    assert main(["fold", str(fasta), "--msa", str(tmp_path / "msas"), "--params", str(params), "-o", str(out)]) == 0
    folded = json.loads((out / "summary.json").read_text())["folded"]
    assert folded[0]["name"] == query.name and folded[0]["msa_rows"] == rows > 5
    assert (out / f"{query.name}.msa_coverage.png").is_file()
