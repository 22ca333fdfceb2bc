"""mmCIF ``_atom_site`` reading (through gemmi's CIF parser) and writing.

Author fields are preferred (``auth_asym_id``, ``auth_seq_id``, ``auth_comp_id``,
``auth_atom_id``) so that chains and residue numbers match the PDB-format file of the same
entry; label fields are the fallback when author fields are absent.
"""

from __future__ import annotations

from collections.abc import Iterable

import gemmi
import numpy as np

from tertiary.atom_sites import AtomSites
from tertiary.errors import InputError, ParseError

# Output column -> tags tried in order.
_COLUMNS: dict[str, tuple[str, ...]] = {
    "group": ("group_PDB",),
    "x": ("Cartn_x",),
    "y": ("Cartn_y",),
    "z": ("Cartn_z",),
    "atom_name": ("auth_atom_id", "label_atom_id"),
    "altloc": ("label_alt_id", "auth_alt_id"),
    "resname": ("auth_comp_id", "label_comp_id"),
    "chain_id": ("auth_asym_id", "label_asym_id"),
    "resseq": ("auth_seq_id", "label_seq_id"),
    "icode": ("pdbx_PDB_ins_code",),
    "occupancy": ("occupancy",),
    "b_factor": ("B_iso_or_equiv",),
    "element": ("type_symbol",),
    "model": ("pdbx_PDB_model_num",),
}
_REQUIRED = ("x", "y", "z", "atom_name", "resname", "chain_id", "resseq")
_NULL = {"?", "."}  # CIF null tokens (written quoted when they are real values)


def _column(block: gemmi.cif.Block, tags: tuple[str, ...]) -> np.ndarray | None:
    """Values ([n] str array) of the first tag present, unquoted; the null tokens ``?`` and
    ``.`` read as ``""``. Raw tokens come from gemmi in one call; only quoted tokens (rare)
    are unquoted one by one."""
    for tag in tags:
        col = block.find_values(f"_atom_site.{tag}")
        if col is not None and len(col):
            arr = np.array(list(col), dtype=str)
            arr[(arr == "?") | (arr == ".")] = ""
            first = arr.astype("U1")
            quoted = np.flatnonzero((first == "'") | (first == '"') | (first == ";"))
            if len(quoted):
                arr = arr.astype(object)
                for i in quoted.tolist():
                    arr[i] = gemmi.cif.as_string(arr[i])
                arr = arr.astype(str)
            return arr
    return None


def _floats(
    values: np.ndarray, source: str, tag: str, default: float | None, rows: np.ndarray
) -> np.ndarray:
    """Floats of one column ([n] str); ``rows`` are the 0-based ``_atom_site`` rows."""
    null = values == ""
    if null.any():
        if default is None:
            row = int(rows[int(np.flatnonzero(null)[0])])
            raise ParseError(f"{source}: _atom_site row {row + 1}: missing value for {tag}")
        values = np.where(null, str(default), values)
    try:
        return values.astype(np.float64)
    except ValueError:
        for row, v in zip(rows.tolist(), values.tolist()):
            try:
                float(v)
            except ValueError:
                raise ParseError(
                    f"{source}: _atom_site row {row + 1}: invalid {tag} {v!r}"
                ) from None
        raise


def _encode(values: np.ndarray) -> np.ndarray:
    """str array -> UTF-8 byte-string array."""
    if not len(values):
        return np.array([], "S1")
    try:
        return values.astype("S")
    except UnicodeEncodeError:
        return np.char.encode(values, "utf-8")


def read_mmcif_sites(data: bytes, source: str, model: int = 1) -> AtomSites:
    """Atom records of model ``model`` (1-based ordinal) of mmCIF text."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ParseError(f"{source}: not a text file (byte {exc.start} is not UTF-8)") from exc
    if "\x00" in text:
        raise ParseError(f"{source}: binary data (NUL byte) in an mmCIF file")
    try:
        doc = gemmi.cif.read_string(text)
    except (RuntimeError, ValueError) as exc:
        raise ParseError(f"{source}: invalid mmCIF: {' '.join(str(exc).split())}") from exc
    block = next((b for b in doc if b.find_values("_atom_site.Cartn_x") is not None), None)
    if block is None or not len(block.find_values("_atom_site.Cartn_x")):
        raise ParseError(f"{source}: no _atom_site records (not a coordinate mmCIF file)")
    cols = {key: _column(block, tags) for key, tags in _COLUMNS.items()}
    missing = [f"_atom_site.{_COLUMNS[k][0]}" for k in _REQUIRED if cols[k] is None]
    if missing:
        raise ParseError(f"{source}: mmCIF _atom_site lacks {', '.join(missing)}")
    n = len(cols["x"])
    if any(v is not None and len(v) != n for v in cols.values()):
        raise ParseError(f"{source}: _atom_site columns have different lengths (truncated?)")

    model_ids = cols["model"] if cols["model"] is not None else np.full(n, "1")
    uniq_models = list(dict.fromkeys(np.unique(model_ids, return_index=True)[1].tolist()))
    uniq_models = [model_ids[i] for i in sorted(uniq_models)]  # order of first appearance
    if model > len(uniq_models):
        raise InputError(f"{source}: model {model} requested, the file has {len(uniq_models)}")
    keep = np.flatnonzero(model_ids == uniq_models[model - 1])

    def sel(key: str, default: str = "") -> np.ndarray:
        values = cols[key]
        if values is None:
            return np.full(len(keep), default)
        return values[keep]

    xyz = np.stack(
        [_floats(sel(k), source, f"_atom_site.Cartn_{k}", None, keep) for k in ("x", "y", "z")],
        axis=1,
    )
    het = sel("group", "ATOM") == "HETATM"
    # Non-polymer groups have no label_seq_id ('.'): number them 0 (each is its own
    # label_asym_id); a polymer residue needs a number.
    resseq_raw = sel("resseq")
    resseq_raw = np.where((resseq_raw == "") & het, "0", resseq_raw)
    try:
        resseq = resseq_raw.astype(np.int64)
    except ValueError:
        raw = resseq_raw.tolist()
        bad = next(i for i, v in enumerate(raw) if not v.lstrip("-").isdigit())
        what = "missing residue number" if not raw[bad] else "invalid residue number"
        raise ParseError(
            f"{source}: _atom_site row {int(keep[bad]) + 1}: {what} {raw[bad]!r}"
        ) from None
    return AtomSites(
        source=source,
        record=keep.astype(np.int64) + 1,
        record_kind="_atom_site row",
        model=model,
        n_models=len(uniq_models),
        het=het,
        atom_name=_encode(sel("atom_name")),
        altloc=_encode(sel("altloc")),
        resname=_encode(sel("resname")),
        chain_id=_encode(sel("chain_id")),
        resseq=resseq,
        icode=_encode(sel("icode")),
        xyz=xyz,
        occupancy=_floats(sel("occupancy", "1"), source, "_atom_site.occupancy", 1.0, keep).astype(
            np.float32
        ),
        b_factor=_floats(sel("b_factor", "0"), source, "_atom_site.B_iso_or_equiv", 0.0, keep).astype(
            np.float32
        ),
        element=np.strings.upper(_encode(sel("element"))),
    )


def _cif_value(value: str) -> str:
    """A CIF token for ``value`` (quoted when needed, ``?`` when empty)."""
    if value == "":
        return "?"
    if any(c in value for c in " \t'\"#") or value[0] in "_$;[]" or value in _NULL:
        return f'"{value}"' if '"' not in value else f"'{value}'"
    return value


def format_mmcif(
    name: str,
    records: Iterable[tuple[str, int, str, str, str, int, str, float, float, float, float, float, str]],
    entity_of_chain: dict[tuple[str, bool], int],
) -> str:
    """An mmCIF document with one ``_atom_site`` loop.

    Args:
        name: data block name.
        records: ``(record, serial, name, resname, chain, resseq, icode, x, y, z, occupancy,
            b_factor, element)`` tuples, as for :func:`tertiary.pdb_io.format_atom_lines`.
        entity_of_chain: entity id for each (chain id, is-hetero) pair.
    """
    block = "".join(c if c.isalnum() or c in "_-." else "_" for c in name) or "structure"
    lines = [
        f"data_{block}",
        "#",
        "loop_",
        *(
            f"_atom_site.{tag}"
            for tag in (
                "group_PDB", "id", "type_symbol", "label_atom_id", "label_alt_id",
                "label_comp_id", "label_asym_id", "label_entity_id", "label_seq_id",
                "pdbx_PDB_ins_code", "Cartn_x", "Cartn_y", "Cartn_z", "occupancy",
                "B_iso_or_equiv", "auth_seq_id", "auth_comp_id", "auth_asym_id",
                "auth_atom_id", "pdbx_PDB_model_num",
            )
        ),
    ]
    label_seq: dict[str, int] = {}
    previous: tuple[str, int, str] | None = None
    for rec, serial, atom, resname, chain, resseq, icode, x, y, z, occ, b, elem in records:
        if not chain:
            raise InputError("mmCIF needs a chain id for every residue (got an empty one)")
        het = rec == "HETATM"
        if (chain, resseq, icode) != previous and not het:
            label_seq[chain] = label_seq.get(chain, 0) + 1
        previous = (chain, resseq, icode)
        atom_tok, res_tok, chain_tok = _cif_value(atom), _cif_value(resname), _cif_value(chain)
        lines.append(
            f"{rec} {serial} {elem or '?'} {atom_tok} . {res_tok} {chain_tok} "
            f"{entity_of_chain[(chain, het)]} {'.' if het else label_seq[chain]} {_cif_value(icode)} "
            f"{x:.3f} {y:.3f} {z:.3f} {occ:.2f} {b:.2f} {resseq} {res_tok} {chain_tok} "
            f"{atom_tok} 1"
        )
    lines.append("#")
    return "\n".join(lines) + "\n"
