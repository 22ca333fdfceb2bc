"""Protein.from_file / helpers / writers on real files (tests/data/protein, see its README).

Expected values are computed independently in the tests: by reading the fixed PDB columns of
the file with plain Python (``_records``), or with gemmi's own reader where it accepts the file.
"""

from __future__ import annotations

import gzip
import shutil
import warnings
from pathlib import Path

import gemmi
import numpy as np
import pytest

from tertiary import constants as rc
from tertiary.errors import InputError, ParseError, TertiaryError
from tertiary.protein import HetGroup, ParseWarning, Protein

DATA = Path(__file__).resolve().parent / "data" / "protein"
GEOMETRY = Path(__file__).resolve().parent / "data" / "geometry"


def _text(path: Path) -> str:
    raw = path.read_bytes()
    return (gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw).decode()


def _records(path: Path) -> list[dict]:
    """ATOM/HETATM records of a single-model PDB file, read by fixed columns in plain Python."""
    out = []
    for line in _text(path).splitlines():
        if line.startswith(("ATOM", "HETATM")):
            out.append(
                dict(
                    het=line.startswith("HETATM"), name=line[12:16].strip(), alt=line[16].strip(),
                    resname=line[17:20].strip(), chain=line[21].strip(), resseq=int(line[22:26]),
                    icode=line[26].strip(), xyz=(float(line[30:38]), float(line[38:46]),
                                                 float(line[46:54])),
                    occ=float(line[54:60]), b=float(line[60:66]),
                )
            )
    return out


def _read(path: Path, **kwargs) -> Protein:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ParseWarning)
        return Protein.from_file(path, **kwargs)


def _residue(p: Protein, chain: str, number: int, icode: str = "") -> int:
    hit = np.flatnonzero(
        (p.chain_id == chain) & (p.residue_index == number) & (p.insertion_code == icode)
    )
    assert len(hit) == 1, (chain, number, icode, hit)
    return int(hit[0])


# -------------------------------------------------------------------------------------------
# Reading: formats
# -------------------------------------------------------------------------------------------


def test_pdb_and_mmcif_of_one_entry_agree() -> None:
    pdb = _read(DATA / "1aki.pdb.gz")
    cif = _read(DATA / "1aki.cif.gz")
    assert len(pdb) == len(cif) == 129
    assert pdb.sequence() == cif.sequence()
    assert pdb.chains == cif.chains == ("A",)
    np.testing.assert_array_equal(pdb.residue_index, cif.residue_index)
    np.testing.assert_array_equal(pdb.atom_mask, cif.atom_mask)
    np.testing.assert_allclose(pdb.atom_positions, cif.atom_positions, atol=1e-3)
    np.testing.assert_allclose(pdb.b_factors, cif.b_factors, atol=1e-2)
    # Sequence and heavy-atom count agree with gemmi's reader.
    st = gemmi.read_structure(str(DATA / "1aki.pdb.gz"))
    st.remove_ligands_and_waters()
    st.remove_hydrogens()
    residues = [r for r in st[0]["A"]]
    assert pdb.sequence() == "".join(gemmi.find_tabulated_residue(r.name).one_letter_code.upper()
                                     for r in residues)
    assert int(pdb.atom_mask.sum()) == sum(len(r) for r in residues)


def test_water_is_dropped_and_ligands_kept_aside() -> None:
    recs = _records(DATA / "1aki.pdb.gz")
    assert sum(r["resname"] == "HOH" for r in recs) == 78
    for path in (DATA / "1aki.pdb.gz", DATA / "1aki.cif.gz"):
        p = _read(path)
        assert "HOH" not in set(p.residue_name.tolist())
        assert all(g.resname != "HOH" for g in p.ligands)
    assert not [r for r in recs if r["het"] and r["resname"] != "HOH"]
    assert not _read(DATA / "1aki.pdb.gz").ligands
    # Glycans of 1E4K: one group per (chain, residue number), atoms in file order.
    recs = _records(DATA / "1E4K_r_b.pdb.gz")
    het = [r for r in recs if r["het"]]
    groups: dict[tuple, list] = {}
    for r in het:
        groups.setdefault((r["chain"], r["resseq"], r["icode"]), []).append(r)
    p = _read(DATA / "1E4K_r_b.pdb.gz")
    assert len(p.ligands) == len(groups)
    for g, (key, rows) in zip(p.ligands, groups.items()):
        assert isinstance(g, HetGroup) and (g.chain_id, g.residue_number) == key[:2]
        assert g.resname == rows[0]["resname"] and len(g) == len(rows)
        np.testing.assert_allclose(g.positions, [r["xyz"] for r in rows], atol=1e-6)
        assert g.atom_names == tuple(r["name"] for r in rows)


def test_ligand_after_ter_with_elements(tmp_path: Path) -> None:
    path = DATA / "1F6M_r_u.pdb.gz"
    recs = _records(path)
    fad = [r for r in recs if r["resname"] == "FAD"]
    p = _read(path)
    (g,) = [g for g in p.ligands if g.resname == "FAD"]
    assert len(g) == len(fad) == 53 and g.chain_id == "A" and g.residue_number == 500
    assert g.kind == "ligand"
    assert set(g.elements) == {"C", "N", "O", "P"}
    np.testing.assert_allclose(g.positions, [r["xyz"] for r in fad], atol=1e-6)
    np.testing.assert_allclose(g.b_factors, [r["b"] for r in fad], atol=1e-4)


def test_gzip_and_plain_and_sniffing(tmp_path: Path) -> None:
    ref = _read(DATA / "1aki.pdb.gz")
    plain = tmp_path / "1aki.pdb"
    plain.write_text(_text(DATA / "1aki.pdb.gz"))
    # Content decides: gzip magic with a misleading name, mmCIF text in a .pdb file.
    odd = tmp_path / "structure.txt"
    shutil.copy(DATA / "1aki.pdb.gz", odd)
    cif_named_pdb = tmp_path / "really_cif.pdb"
    cif_named_pdb.write_text(_text(DATA / "1aki.cif.gz"))
    for path in (plain, odd, cif_named_pdb):
        p = _read(path)
        np.testing.assert_allclose(p.atom_positions, ref.atom_positions, atol=1e-3)
        assert p.sequence() == ref.sequence()
    assert _read(plain).name == "1aki"
    with pytest.raises(ParseError, match="really_cif.pdb"):
        Protein.from_file(cif_named_pdb, fmt="pdb")
    with pytest.raises(InputError, match="no such file"):
        Protein.from_file(tmp_path / "missing.pdb")
    with pytest.raises(InputError, match="unknown structure format"):
        Protein.from_file(plain, fmt="xyz")


def test_from_string_matches_from_file() -> None:
    text = _text(DATA / "1AVX_r_b.pdb.gz")
    a = _read(DATA / "1AVX_r_b.pdb.gz")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ParseWarning)
        b = Protein.from_string(text, name="x")
    np.testing.assert_array_equal(a.atom_positions, b.atom_positions)
    assert b.name == "x" and a.name == "1AVX_r_b"


# -------------------------------------------------------------------------------------------
# Reading: PDB details
# -------------------------------------------------------------------------------------------


def test_alt_locs_keep_highest_occupancy() -> None:
    path = DATA / "1BKD_l_u.pdb.gz"
    recs = [r for r in _records(path) if not r["het"]]
    p = _read(path)
    best: dict[tuple, dict] = {}
    for r in recs:  # first record wins ties, as documented
        key = (r["chain"], r["resseq"], r["icode"], r["name"])
        if key not in best or r["occ"] > best[key]["occ"]:
            best[key] = r
    with_alt = {k for k in best if any(
        r["alt"] for r in recs if (r["chain"], r["resseq"], r["icode"], r["name"]) == k)}
    assert len(with_alt) >= 20
    checked = 0
    for key, r in best.items():
        i = _residue(p, key[0], key[1], key[2])
        name = key[3]
        if name not in rc.ATOM_ORDER:
            continue
        a = rc.ATOM_ORDER[name]
        assert p.atom_mask[i, a] == 1
        np.testing.assert_allclose(p.atom_positions[i, a], r["xyz"], atol=1e-5)
        checked += key in with_alt
    assert checked == len(with_alt)


def test_alt_locs_and_microheterogeneity_mmcif() -> None:
    with pytest.warns(ParseWarning, match="alternative residue types"):
        p = Protein.from_file(DATA / "altloc.cif")
    doc = gemmi.cif.read(str(DATA / "altloc.cif"))
    table = doc.sole_block().find("_atom_site.", ["auth_seq_id", "auth_comp_id"])
    first_name = {}
    for row in table:
        first_name.setdefault(int(row[0]), row[1])
    assert p.residue_name.tolist() == list(first_name.values())
    assert len(p) == len(first_name)


def test_microheterogeneity_in_the_middle_of_a_chain() -> None:
    """A second residue type at one position (altloc B) keeps the first; later residues are
    unaffected (their first atoms move when the alternative atoms are dropped)."""
    lines = _text(DATA / "1aki.pdb.gz").splitlines()
    res3 = [ln for ln in lines if ln.startswith("ATOM") and ln[22:26] == "   3"]
    alt_a = [ln[:16] + "A" + ln[17:54] + "  0.60" + ln[60:] for ln in res3]
    alt_b = [ln[:16] + "B" + "GLY" + ln[20:54] + "  0.40" + ln[60:] for ln in res3[:4]]
    at = lines.index(res3[0])
    edited = lines[:at] + alt_a + alt_b + lines[at + len(res3):]
    with pytest.warns(ParseWarning, match="alternative residue types"):
        q = Protein.from_string("\n".join(edited), name="micro")
    ref = _read(DATA / "1aki.pdb.gz")
    assert q.sequence() == ref.sequence()
    np.testing.assert_array_equal(q.residue_name, ref.residue_name)
    np.testing.assert_allclose(q.atom_positions, ref.atom_positions, atol=1e-6)


def test_selenomethionine_becomes_met_with_sd() -> None:
    path = DATA / "1JK9_r_u.pdb.gz"
    mse = [r for r in _records(path) if r["resname"] == "MSE"]
    assert {r["het"] for r in mse} == {True}
    p = _read(path)
    numbers = sorted({(r["chain"], r["resseq"]) for r in mse})
    for chain, number in numbers:
        i = _residue(p, chain, number)
        assert p.aatype[i] == rc.RESNAME_TO_INDEX["MET"] and p.residue_name[i] == "MSE"
        se = next(r for r in mse if r["name"] == "SE" and r["resseq"] == number)
        np.testing.assert_allclose(p.atom_positions[i, rc.ATOM_ORDER["SD"]], se["xyz"], atol=1e-5)
        expected = rc.RESTYPE_ATOM37_MASK[rc.RESNAME_TO_INDEX["MET"]]
        np.testing.assert_array_equal(p.atom_mask[i] > 0, expected > 0)
        assert p.sequence(chain)[i - int(np.flatnonzero(p.chain_id == chain)[0])] == "M"
    assert all(g.resname != "MSE" for g in p.ligands)


def test_d_amino_acid_maps_to_parent_and_unknown_modified_to_x() -> None:
    p = _read(DATA / "2AYO_l_u.pdb.gz")
    dva = np.flatnonzero(p.residue_name == "DVA")
    assert len(dva) == 1 and p.aatype[dva[0]] == rc.RESNAME_TO_INDEX["VAL"]
    # A residue type gemmi knows as an amino acid but not mapped (ornithine) -> X in the chain;
    # an unknown name in a HETATM record is a ligand; in an ATOM record it is X.
    lines = _text(DATA / "1aki.pdb.gz").splitlines()
    res3 = [ln for ln in lines if ln.startswith("ATOM") and ln[22:26] == "   3"]
    res4 = [ln for ln in lines if ln.startswith("ATOM") and ln[22:26] == "   4"]
    res5 = [ln for ln in lines if ln.startswith("ATOM") and ln[22:26] == "   5"]
    edit = {ln: ln[:17] + "ORN" + ln[20:] for ln in res3}
    edit.update({ln: "HETATM" + ln[6:17] + "QQQ" + ln[20:] for ln in res4})
    edit.update({ln: ln[:17] + "QQQ" + ln[20:] for ln in res5})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ParseWarning)
        q = Protein.from_string("\n".join(edit.get(ln, ln) for ln in lines), name="edited")
    ref = _read(DATA / "1aki.pdb.gz")
    assert len(q) == len(ref) - 1
    i3, i5 = _residue(q, "A", 3), _residue(q, "A", 5)
    assert q.aatype[i3] == q.aatype[i5] == rc.UNK_INDEX
    assert q.residue_name[i3] == "ORN" and q.sequence()[i3] == "X"
    (g,) = [g for g in q.ligands if g.resname == "QQQ"]
    assert g.residue_number == 4 and len(g) == len(res4)
    # X residues keep their atom37 atoms (backbone) in the mask.
    assert q.atom_mask[i3, rc.ATOM_ORDER["CA"]] == 1


def test_nmr_reads_one_model() -> None:
    path = GEOMETRY / "1l2y.pdb.gz"
    m1, m2 = _read(path), _read(path, model=2)
    assert m1.n_models == m2.n_models == 38 and m1.model == 1 and m2.model == 2
    assert len(m1) == 20 and m1.sequence() == m2.sequence() == "NLYIQWLKDGGPSSGRPPPS"
    assert not np.allclose(m1.atom_positions, m2.atom_positions)
    model2 = []
    for line in _text(path).split("MODEL        2")[1].split("ENDMDL")[0].splitlines():
        if line.startswith("ATOM") and line[12:16].strip() == "CA":
            model2.append([float(line[30:38]), float(line[38:46]), float(line[46:54])])
    np.testing.assert_allclose(m2.ca()[0], model2, atol=1e-6)
    cif = _read(DATA / "1l2y.cif.gz", model=2)
    assert cif.n_models == 38
    np.testing.assert_allclose(cif.atom_positions, m2.atom_positions, atol=1e-3)
    with pytest.raises(InputError, match="model 39"):
        Protein.from_file(path, model=39)
    with pytest.raises(InputError, match="model 39"):
        Protein.from_file(DATA / "1l2y.cif.gz", model=39)
    with pytest.raises(InputError, match="model must be >= 1"):
        Protein.from_file(path, model=0)


@pytest.mark.parametrize(
    "name", ["1ACB_l_b", "1ACB_l_u", "1BVN_l_u", "1E4K_r_b", "1AVX_r_b", "1F6M_r_u"]
)
def test_legacy_pdb_fields_by_fixed_columns(name: str) -> None:
    path = DATA / f"{name}.pdb.gz"
    recs = _records(path)
    p = _read(path)
    n_het_groups = len({(r["chain"], r["resseq"], r["icode"]) for r in recs if r["het"]})
    n_res = len({(r["chain"], r["resseq"], r["icode"]) for r in recs})
    assert len(p) + len(p.ligands) == n_res
    assert len(p.ligands) <= n_het_groups
    # Every protein heavy atom of the file lands in its residue with its coordinates, B-factor.
    for r in recs[:: max(1, len(recs) // 300)]:
        if r["het"] or r["alt"]:
            continue
        i = _residue(p, r["chain"], r["resseq"], r["icode"])
        a = rc.ATOM_ORDER[{"OT1": "O", "OT2": "OXT"}.get(r["name"], r["name"])]
        np.testing.assert_allclose(p.atom_positions[i, a], r["xyz"], atol=1e-5)
        np.testing.assert_allclose(p.b_factors[i, a], r["b"], atol=1e-4)


def test_gemmi_default_reader_rejects_a_legacy_file_that_tertiary_reads() -> None:
    """1ACB_l_b: digits of an old serial number in the charge columns (see the README)."""
    text = _text(DATA / "1ACB_l_b.pdb.gz")
    try:
        gemmi.read_pdb_string(text)
        rejected = False
    except RuntimeError:
        rejected = True
    p = _read(DATA / "1ACB_l_b.pdb.gz")
    assert len(p) == 63 and p.chains == ("I",)
    assert int(p.atom_mask.sum()) == len(_records(DATA / "1ACB_l_b.pdb.gz")) == 522
    # gemmi with the junk columns cut off agrees with tertiary residue by residue.
    st = gemmi.read_pdb_string(text, max_line_length=72)
    assert [r.name for r in st[0]["I"]] == p.residue_name.tolist()
    if not rejected:
        pytest.skip("this gemmi version accepts the junk charge columns")


def test_every_db55_file_matches_its_record_counts(shared_data: Path) -> None:
    """All 638 legacy DB5.5 files (24 of which gemmi's default reader rejects) parse; atom,
    residue and chain counts equal the plain fixed-column counts of ``files.tsv``."""
    import csv

    root = shared_data / "db5.5_docking_benchmark"
    rows = list(csv.DictReader((root / "files.tsv").open(), delimiter="\t"))
    assert len(rows) == 638
    from tertiary.atom_sites import read_structure_bytes

    for row in rows:
        data = (root / row["file"]).read_bytes()
        sites = read_structure_bytes(data, row["file"])
        assert len(sites) == int(row["n_atom_records"]) + int(row["n_hetatm_records"]), row["file"]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ParseWarning)
            p = Protein.from_string(data, name=row["file"])
        assert len(p) + len(p.ligands) == int(row["n_residues"]), row["file"]
        chains = set(p.chain_id.tolist()) | {g.chain_id for g in p.ligands}
        assert {c or "_" for c in chains} == set(row["chains"]), row["file"]
        assert int(p.atom_mask.sum()) <= int(row["n_atom_records"]) + int(row["n_hetatm_records"])


def test_extension_decides_when_content_is_ambiguous(tmp_path: Path) -> None:
    text = "# a comment line, nothing else\n"
    (tmp_path / "a.cif").write_text(text)
    (tmp_path / "a.pdb").write_text(text)
    with pytest.raises(ParseError, match="a.cif: no _atom_site"):
        Protein.from_file(tmp_path / "a.cif")
    with pytest.raises(ParseError, match="a.pdb: no ATOM/HETATM"):
        Protein.from_file(tmp_path / "a.pdb")


def test_blank_chain_and_touching_b_factors() -> None:
    p = _read(DATA / "1ACB_l_u.pdb.gz")
    assert p.chains == ("",) and p.sequence("") == p.sequence()
    assert len(p.select_chains("")) == len(p)
    q = _read(DATA / "1E4K_r_b.pdb.gz")
    i = _residue(q, "A", 229)
    assert q.b_factors[i, rc.ATOM_ORDER["N"]] == pytest.approx(181.37, abs=1e-3)
    assert q.b_factors[i, rc.ATOM_ORDER["CA"]] == pytest.approx(181.67, abs=1e-3)


def test_insertion_codes_kept() -> None:
    p = _read(DATA / "1AVX_r_b.pdb.gz")
    recs = _records(DATA / "1AVX_r_b.pdb.gz")
    icodes = {(r["chain"], r["resseq"], r["icode"]) for r in recs if r["icode"]}
    assert icodes
    for chain, number, icode in icodes:
        i = _residue(p, chain, number, icode)
        assert p.insertion_code[i] == icode
    # 184A and 184 are distinct residues, kept in file order (184A comes first in 1AVX).
    i, j = _residue(p, "A", 184), _residue(p, "A", 184, "A")
    assert j == i - 1
    order = list(dict.fromkeys((r["chain"], r["resseq"], r["icode"]) for r in recs if not r["het"]))
    assert order == list(zip(p.chain_id.tolist(), p.residue_index.tolist(),
                             p.insertion_code.tolist()))


def test_residue_without_ca_is_kept_with_a_warning() -> None:
    with pytest.warns(ParseWarning, match="without a CA"):
        p = Protein.from_file(DATA / "1F6M_r_u.pdb.gz")
    i = _residue(p, "A", 317)
    assert p.atom_mask[i].sum() == 1 and p.atom_mask[i, rc.ATOM_ORDER["N"]] == 1
    bb, side = p.missing_atoms()
    assert bb[i] and side[i] == (rc.RESTYPES_WITH_X[p.aatype[i]] != "G")


# -------------------------------------------------------------------------------------------
# Chains and helpers
# -------------------------------------------------------------------------------------------


def test_chain_selection() -> None:
    path = DATA / "1E4K_r_b.pdb.gz"
    full = _read(path)
    assert full.chains == ("A", "B")
    a = _read(path, chains="A")
    assert a.chains == ("A",) and a.sequence() == full.sequence("A")
    np.testing.assert_array_equal(a.atom_positions, full.atom_positions[full.chain_id == "A"])
    assert all(g.chain_id == "A" for g in a.ligands) and a.ligands
    both = _read(path, chains=["B", "A"])
    assert both.chains == ("A", "B")  # file order
    sel = full.select_chains(["B"])
    assert sel.chains == ("B",) and len(sel) == int((full.chain_id == "B").sum())
    assert all(g.chain_id == "B" for g in sel.ligands)
    with pytest.raises(InputError, match="'C'"):
        _read(path, chains="C")
    with pytest.raises(InputError, match="'Z'"):
        full.select_chains("Z")
    with pytest.raises(InputError, match="no chain"):
        full.sequence("Q")
    np.testing.assert_array_equal(full.chain_index, (full.chain_id == "B").astype(int))


def test_atom14_backbone_ca() -> None:
    p = _read(DATA / "1AVX_r_b.pdb.gz")
    pos14, mask14 = p.atom14()
    assert pos14.shape == (len(p), 14, 3) and mask14.shape == (len(p), 14)
    for i in range(0, len(p), 7):
        names = rc.RESTYPE_NAME_TO_ATOM14_NAMES[rc.RESNAMES[p.aatype[i]]]
        for k, name in enumerate(names):
            if not name:
                assert mask14[i, k] == 0
                continue
            a = rc.ATOM_ORDER[name]
            assert mask14[i, k] == p.atom_mask[i, a]
            np.testing.assert_array_equal(pos14[i, k], p.atom_positions[i, a] * p.atom_mask[i, a])
    # Atoms other than OXT are all in atom14.
    oxt = rc.ATOM_ORDER["OXT"]
    assert mask14.sum() == p.atom_mask.sum() - p.atom_mask[:, oxt].sum()
    bb, bmask = p.backbone()
    np.testing.assert_array_equal(bb[:, 1], p.ca()[0])
    np.testing.assert_array_equal(bmask[:, 0], p.atom_mask[:, rc.ATOM_ORDER["N"]])
    four, _ = p.backbone(("N", "CA", "C", "O"))
    assert four.shape == (len(p), 4, 3)
    with pytest.raises(InputError, match="unknown atom name"):
        p.backbone(("N", "XX"))
    ca, ca_mask = p.ca()
    d = np.linalg.norm(np.diff(ca, axis=0), axis=1)
    same_chain = (p.chain_id[1:] == p.chain_id[:-1]) & (np.diff(p.residue_index) == 1)
    ok = same_chain & (ca_mask[1:] > 0) & (ca_mask[:-1] > 0)
    assert np.median(d[ok]) == pytest.approx(3.8, abs=0.05)


def test_sequences_and_missing_atoms_against_gemmi() -> None:
    path = DATA / "1E4K_r_b.pdb.gz"
    p = _read(path)
    st = gemmi.read_structure(str(path))
    for chain in st[0]:
        names = [r.name for r in chain if r.het_flag == "A"]
        expected = gemmi.one_letter_code(names).upper()
        assert p.sequences()[chain.name] == expected.replace("?", "X")
    bb, side = p.missing_atoms()
    for i in np.flatnonzero(side)[:5]:
        expected = rc.RESTYPE_ATOM37_MASK[p.aatype[i]] > 0
        assert (expected & (p.atom_mask[i] == 0)).any()
    assert not (bb & (p.atom_mask[:, [0, 1, 2, 4]].all(axis=1) > 0)).any()


def test_to_torch_and_take() -> None:
    p = _read(DATA / "1ACB_l_b.pdb.gz")
    t = p.to_torch()
    assert tuple(t["atom_positions"].shape) == (len(p), 37, 3)
    assert str(t["aatype"].dtype) == "torch.int64"
    q = p.take(slice(5, 10))
    assert len(q) == 5 and q.sequence() == p.sequence()[5:10]


def test_constructor_checks_shapes() -> None:
    with pytest.raises(InputError, match="atom_positions"):
        Protein(np.zeros((3, 36, 3)), np.zeros((3, 37)), np.zeros(3), np.arange(3), ["A"] * 3)
    with pytest.raises(InputError, match="aatype"):
        Protein(np.zeros((3, 37, 3)), np.zeros((3, 37)), np.full(3, 21), np.arange(3), ["A"] * 3)
    with pytest.raises(InputError, match="chain_id"):
        Protein(np.zeros((3, 37, 3)), np.zeros((3, 37)), np.zeros(3), np.arange(3), ["A"] * 2)


# -------------------------------------------------------------------------------------------
# Writing
# -------------------------------------------------------------------------------------------


def _assert_same(a: Protein, b: Protein, atol: float = 1e-3) -> None:
    assert a.chains == b.chains
    np.testing.assert_array_equal(a.chain_id, b.chain_id)
    np.testing.assert_array_equal(a.residue_index, b.residue_index)
    np.testing.assert_array_equal(a.insertion_code, b.insertion_code)
    np.testing.assert_array_equal(a.aatype, b.aatype)
    np.testing.assert_array_equal(a.atom_mask, b.atom_mask)
    np.testing.assert_allclose(a.atom_positions, b.atom_positions, atol=atol)
    np.testing.assert_allclose(a.b_factors, b.b_factors, atol=5e-3)


@pytest.mark.parametrize("name", ["1AVX_r_b", "1ACB_l_u", "1E4K_r_b", "1JK9_r_u", "1BKD_l_u"])
def test_pdb_round_trip(name: str, tmp_path: Path) -> None:
    p = _read(DATA / f"{name}.pdb.gz")
    out = tmp_path / "out.pdb"
    text = p.to_pdb(out)
    assert out.read_text() == text
    q = _read(out)
    _assert_same(p, q)
    assert [g.label for g in q.ligands] == [g.label for g in p.ligands]
    for g, h in zip(p.ligands, q.ligands):
        np.testing.assert_allclose(g.positions, h.positions, atol=1e-3)
        assert g.elements == h.elements
    # gemmi reads the file we wrote with the same atoms.
    st = gemmi.read_pdb_string(text)
    n_lig = sum(len(g) for g in p.ligands)
    assert st[0].count_atom_sites() == int(p.atom_mask.sum()) + n_lig


@pytest.mark.parametrize("name", ["1AVX_r_b", "1E4K_r_b", "1JK9_r_u"])
def test_mmcif_round_trip(name: str, tmp_path: Path) -> None:
    p = _read(DATA / f"{name}.pdb.gz")
    text = p.to_mmcif(tmp_path / "out.cif")
    q = _read(tmp_path / "out.cif")
    _assert_same(p, q)
    assert [g.label for g in q.ligands] == [g.label for g in p.ligands]
    st = gemmi.read_structure(str(tmp_path / "out.cif"))
    assert st[0].count_atom_sites() == int(p.atom_mask.sum()) + sum(len(g) for g in p.ligands)
    doc = gemmi.cif.read_string(text)
    assert doc.sole_block().find_values("_atom_site.auth_asym_id")[0] == p.chain_id[0]


def test_mmcif_rejects_blank_chain() -> None:
    p = _read(DATA / "1ACB_l_u.pdb.gz")
    with pytest.raises(InputError, match="chain id"):
        p.to_mmcif()


def test_per_residue_and_per_atom_b_factors(tmp_path: Path) -> None:
    p = _read(DATA / "1ACB_l_b.pdb.gz")
    rng = np.random.default_rng(0)
    per_res = rng.uniform(0, 100, len(p)).round(2)
    q = Protein.from_string(p.to_pdb(b_factors=per_res))
    np.testing.assert_allclose(q.b_factors, per_res[:, None] * p.atom_mask, atol=5e-3)
    per_atom = rng.uniform(0, 100, (len(p), 37)).round(2)
    for text in (p.to_pdb(b_factors=per_atom), p.to_mmcif(b_factors=per_atom)):
        q = Protein.from_string(text)
        np.testing.assert_allclose(q.b_factors, per_atom * p.atom_mask, atol=5e-3)
    with pytest.raises(InputError, match="b_factors"):
        p.to_pdb(b_factors=np.zeros(len(p) + 1))


def test_pdb_writer_refuses_what_does_not_fit() -> None:
    p = _read(DATA / "1ACB_l_b.pdb.gz")
    long_chain = Protein(
        p.atom_positions, p.atom_mask, p.aatype, p.residue_index, np.full(len(p), "AB")
    )
    with pytest.raises(InputError, match="longer than one character"):
        long_chain.to_pdb()
    text = long_chain.to_mmcif()
    assert Protein.from_string(text).chains == ("AB",)
    far = Protein(p.atom_positions + 20000.0, p.atom_mask, p.aatype, p.residue_index, p.chain_id)
    with pytest.raises(InputError, match="do not fit"):
        far.to_pdb()


def test_written_structure_without_ligands(tmp_path: Path) -> None:
    p = _read(DATA / "1F6M_r_u.pdb.gz")
    text = p.to_pdb(include_ligands=False)
    assert "HETATM" not in text and "FAD" not in text
    with pytest.warns(ParseWarning, match="without a CA"):
        assert not Protein.from_string(text).ligands


def test_errors_are_tertiary_errors() -> None:
    assert issubclass(ParseError, TertiaryError) and issubclass(InputError, TertiaryError)
