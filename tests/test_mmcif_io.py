"""mmCIF ``_atom_site`` reading and writing (tertiary.mmcif_io)."""

from __future__ import annotations

import gzip
from pathlib import Path

import gemmi
import numpy as np
import pytest

from tertiary.errors import InputError, ParseError
from tertiary.mmcif_io import _cif_value, format_mmcif, read_mmcif_sites
from tertiary.protein import HetGroup, Protein

DATA = Path(__file__).resolve().parent / "data" / "protein"

TAGS = ("group_PDB", "id", "type_symbol", "label_atom_id", "label_alt_id", "label_comp_id",
        "label_asym_id", "label_seq_id", "pdbx_PDB_ins_code", "Cartn_x", "Cartn_y", "Cartn_z",
        "occupancy", "B_iso_or_equiv", "auth_seq_id", "auth_asym_id", "pdbx_PDB_model_num")
ROWS = [
    "ATOM 1 N N . ALA A 1 ? 1.000 2.000 3.000 1.00 10.00 101 X 1",
    "ATOM 2 C CA . ALA A 1 ? 2.000 2.000 3.000 1.00 11.00 101 X 1",
    "ATOM 3 C C . ALA A 1 ? 3.000 2.000 3.000 1.00 12.00 101 X 1",
    "ATOM 4 N N . GLY A 2 A 4.000 2.000 3.000 1.00 13.00 102 X 1",
    "ATOM 5 C CA . GLY A 2 A 5.000 2.000 3.000 1.00 14.00 102 X 1",
    "HETATM 6 ZN ZN . ZN B . ? 9.000 9.000 9.000 1.00 20.00 201 X 1",
    "HETATM 7 O O . HOH C . ? 8.000 8.000 8.000 1.00 20.00 301 X 1",
]


def _doc(rows: list[str] = ROWS, tags: tuple[str, ...] = TAGS) -> str:
    return "data_t\nloop_\n" + "".join(f"_atom_site.{t}\n" for t in tags) + "\n".join(rows) + "\n"


def _sites(text: str, model: int = 1):
    return read_mmcif_sites(text.encode(), "t.cif", model)


def test_author_fields_are_preferred() -> None:
    s = _sites(_doc())
    assert s.chain_id.tolist() == [b"X"] * 7
    assert s.resseq.tolist() == [101, 101, 101, 102, 102, 201, 301]
    assert s.icode.tolist() == [b"", b"", b"", b"A", b"A", b"", b""]
    p = Protein.from_string(_doc(), name="t.cif")
    assert p.sequence() == "AG" and p.residue_index.tolist() == [101, 102]
    assert p.insertion_code.tolist() == ["", "A"]
    (zn,) = p.ligands  # water dropped
    assert zn.resname == "ZN" and zn.elements == ("ZN",) and zn.residue_number == 201


def test_label_fields_when_author_fields_are_absent() -> None:
    tags = tuple(t for t in TAGS if not t.startswith("auth_"))
    rows = [" ".join(r.split()[:14] + r.split()[16:]) for r in ROWS]
    s = _sites(_doc(rows, tags))
    assert s.chain_id.tolist()[:5] == [b"A"] * 5
    assert s.resseq.tolist()[:5] == [1, 1, 1, 2, 2]


def test_models() -> None:
    rows = ROWS[:3] + [r[: r.rindex(" ")] + " 2" for r in ROWS[:3]]
    rows = [r.replace("1.000 2.000", "7.000 2.000") if r.endswith(" 2") else r for r in rows]
    one, two = _sites(_doc(rows), 1), _sites(_doc(rows), 2)
    assert one.n_models == two.n_models == 2
    assert one.xyz[0, 0] == 1.0 and two.xyz[0, 0] == 7.0
    with pytest.raises(InputError, match="model 3"):
        _sites(_doc(rows), 3)
    # Errors in model 2 name the row of the whole _atom_site loop.
    rows[4] = rows[4].replace("2.000 3.000", "2.000 ?")
    _sites(_doc(rows), 1)
    with pytest.raises(ParseError, match=r"_atom_site row 5: missing value for _atom_site.Cartn_z"):
        _sites(_doc(rows), 2)


@pytest.mark.parametrize(
    ("edit", "pattern"),
    [
        (lambda rows: rows[:1] + [rows[1].replace("2.000 2.000", "? 2.000")] + rows[2:],
         r"t\.cif: _atom_site row 2: missing value for _atom_site\.Cartn_x"),
        (lambda rows: rows[:2] + [rows[2].replace("3.000 2.000", "3.0x0 2.000")] + rows[3:],
         r"t\.cif: _atom_site row 3: invalid _atom_site\.Cartn_x '3\.0x0'"),
        (lambda rows: rows[:3] + [rows[3].replace(" 102 ", " 1o2 ")] + rows[4:],
         r"t\.cif: _atom_site row 4: invalid residue number '1o2'"),
        (lambda rows: rows[:1] + [rows[1].replace("2.000 2.000", "nan 2.000")] + rows[2:],
         r"t\.cif: _atom_site row 2: invalid coordinates"),
        (lambda rows: rows[:1] + [rows[1].replace("2.000 2.000", "1e9 2.000")] + rows[2:],
         r"t\.cif: _atom_site row 2: invalid coordinates"),
        (lambda rows: rows[:-1] + [" ".join(rows[-1].split()[:-3])],
         r"t\.cif: invalid mmCIF"),
    ],
)
def test_bad_rows_name_the_row(edit, pattern: str) -> None:
    with pytest.raises(ParseError, match=pattern):
        Protein.from_string(_doc(edit(list(ROWS))), name="t.cif")


def test_structural_problems() -> None:
    no_x = tuple(t for t in TAGS if t != "Cartn_x")
    rows = [" ".join(r.split()[:9] + r.split()[10:]) for r in ROWS]
    with pytest.raises(ParseError, match="no _atom_site records"):
        Protein.from_string(_doc(rows, no_x), name="t.cif")
    no_chain = tuple(t for t in TAGS if t not in ("label_asym_id", "auth_asym_id"))
    rows = [" ".join(r.split()[:6] + r.split()[7:15] + r.split()[16:]) for r in ROWS]
    with pytest.raises(ParseError, match=r"lacks _atom_site\.auth_asym_id"):
        Protein.from_string(_doc(rows, no_chain), name="t.cif")
    with pytest.raises(ParseError, match="no _atom_site records"):
        Protein.from_string("data_x\n_cell.length_a 10\n", name="t.cif")
    with pytest.raises(ParseError, match="invalid mmCIF"):
        Protein.from_string("data_x\nloop_\n_atom_site.id\n'unterminated\n", name="t.cif",
                            fmt="mmcif")
    with pytest.raises(ParseError, match="not a text file|binary"):
        Protein.from_string(b"data_x\n\xff\xfe\x00junk", name="t.cif", fmt="mmcif")


def test_reader_matches_gemmi_on_a_real_entry() -> None:
    text = gzip.decompress((DATA / "1aki.cif.gz").read_bytes()).decode()
    s = _sites(text)
    block = gemmi.cif.read_string(text).sole_block()
    xs = [float(v) for v in block.find_values("_atom_site.Cartn_x")]
    assert len(s) == len(xs)
    np.testing.assert_allclose(s.xyz[:, 0], xs)
    structure = gemmi.make_structure_from_block(block)
    n = sum(len(r) for ch in structure[0] for r in ch)
    assert n == len(s)


@pytest.mark.parametrize(
    ("value", "token"),
    [("CA", "CA"), ("", "?"), ("O5'", '"O5\'"'), ('H"', "'H\"'"), ("A B", '"A B"'),
     ("?", '"?"'), (".", '"."'), ("_x", '"_x"'), ("#1", '"#1"')],
)
def test_cif_value_quoting(value: str, token: str) -> None:
    assert _cif_value(value) == token


def test_writer_quotes_atom_names_and_round_trips_ligands() -> None:
    p = Protein.from_string(_doc(), name="t.cif")
    lig = HetGroup("NAG", "X", 301, "", ("C1", "O5'", "C2\""), ("C", "O", "C"),
                   np.array([[1, 2, 3], [4, 5, 6], [7, 8, 9]], np.float32),
                   np.array([1.5, 2.5, 3.5], np.float32))
    p.ligands = (lig,)
    text = p.to_mmcif()
    q = Protein.from_string(text, name="w.cif")
    (g,) = q.ligands
    assert g.atom_names == lig.atom_names and g.elements == lig.elements
    np.testing.assert_allclose(g.positions, lig.positions, atol=1e-3)
    structure = gemmi.make_structure_from_block(gemmi.cif.read_string(text).sole_block())
    assert structure[0].count_atom_sites() == int(p.atom_mask.sum()) + 3


def test_format_mmcif_label_seq_ids() -> None:
    recs = [
        ("ATOM", 1, "CA", "ALA", "A", 5, "", 0.0, 0.0, 0.0, 1.0, 0.0, "C"),
        ("ATOM", 2, "CA", "GLY", "A", 5, "A", 1.0, 0.0, 0.0, 1.0, 0.0, "C"),
        ("ATOM", 3, "CA", "SER", "B", 1, "", 2.0, 0.0, 0.0, 1.0, 0.0, "C"),
    ]
    text = format_mmcif("x y", recs, {("A", False): 1, ("B", False): 2})
    block = gemmi.cif.read_string(text).sole_block()
    assert block.name == "x_y"
    assert list(block.find_values("_atom_site.label_seq_id")) == ["1", "2", "1"]
    assert list(block.find_values("_atom_site.pdbx_PDB_ins_code")) == ["?", "A", "?"]


def test_pdb_and_mmcif_agree_on_every_biotite_entry(shared_data: Path) -> None:
    """Every entry of the biotite test set that exists as both PDB and mmCIF reads to the same
    Protein (residues, chains, numbering, insertion codes, atoms to 1e-3 A, ligand groups)."""
    import warnings

    from tertiary.protein import ParseWarning

    folder = shared_data / "structure_testset" / "biotite" / "pdb"
    pairs = [(p, p.with_name(p.name.replace(".pdb.gz", ".cif.gz")))
             for p in sorted(folder.glob("*.pdb.gz"))]
    pairs = [(p, c) for p, c in pairs if c.exists()]
    assert len(pairs) >= 15
    for pdb, cif in pairs:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ParseWarning)
            a, b = Protein.from_file(pdb), Protein.from_file(cif)
        assert a.n_models == b.n_models, pdb.name
        np.testing.assert_array_equal(a.chain_id, b.chain_id, err_msg=pdb.name)
        np.testing.assert_array_equal(a.residue_index, b.residue_index, err_msg=pdb.name)
        np.testing.assert_array_equal(a.insertion_code, b.insertion_code, err_msg=pdb.name)
        np.testing.assert_array_equal(a.aatype, b.aatype, err_msg=pdb.name)
        np.testing.assert_array_equal(a.atom_mask, b.atom_mask, err_msg=pdb.name)
        np.testing.assert_allclose(a.atom_positions, b.atom_positions, atol=1e-3, err_msg=pdb.name)
        assert [(g.label, len(g)) for g in a.ligands] == [(g.label, len(g)) for g in b.ligands]
