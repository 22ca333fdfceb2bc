"""Vectorised fixed-column reader and a writer for the PDB format.

The reader gathers every ``ATOM`` / ``HETATM`` line of the requested model into one
``[M, 80]`` byte matrix and converts columns with numpy (the per-atom work runs in numpy's
compiled loops, not in Python). Fields are read by their fixed columns only, so legacy files
parse: columns 73-80 (segment id, old serial numbers, junk charges) are ignored except for a
valid element symbol in 77-78; a B-factor >= 100 touching the occupancy (``1.00150.66``) is
split by column; lines of 54-82 characters, missing ``END`` / ``TER``, blank chain ids and
blank lines are accepted. An element that is missing or invalid is inferred from the atom
name and its alignment in columns 13-16 (`` CA `` = carbon, ``CA  `` = calcium).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable

import numpy as np

from tertiary.atom_sites import ELEMENTS, AtomSites
from tertiary.errors import InputError, ParseError

_WIDTH = 80
_MIN_ATOM_LINE = 54  # coordinates end at column 54
_SPACE = 32
_MASK4, _MASK5, _MASK6 = (np.uint64((1 << (8 * n)) - 1) for n in (4, 5, 6))
_ATOM, _MODEL, _HETATM = (np.uint64(int.from_bytes(w, "little")) for w in (b"ATOM", b"MODEL", b"HETATM"))
_XYZ_FIELDS = (
    "x coordinate (columns 31-38)", "y coordinate (columns 39-46)", "z coordinate (columns 47-54)"
)
_OCC_B_FIELDS = ("occupancy (columns 55-60)", "B-factor (columns 61-66)")
#: x, y, z (%8.3f), occupancy, B-factor (%6.2f), residue number (%4d): (start, width, point).
_NUMBER_FIELDS = ((30, 8, 4), (38, 8, 4), (46, 8, 4), (54, 6, 3), (60, 6, 3), (22, 4, None))


def _line_table(buf: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start offsets and lengths (without ``\\r\\n``) of every line of ``buf``."""
    nl = np.flatnonzero(buf == 10)
    starts = np.concatenate(([0], nl + 1))
    ends = np.concatenate((nl, [len(buf)]))
    if starts[-1] == len(buf):  # file ends with a newline
        starts, ends = starts[:-1], ends[:-1]
    return starts, ends - starts


def _gather(buf: np.ndarray, starts: np.ndarray, lengths: np.ndarray, width: int) -> np.ndarray:
    """``[L, width]`` uint8 matrix of the first ``width`` bytes of each line, space padded."""
    cols = np.arange(width)
    idx = starts[:, None] + cols[None, :]
    np.minimum(idx, len(buf) - 1, out=idx)
    out = buf[idx]
    out[cols[None, :] >= lengths[:, None]] = _SPACE
    return out


def _gather_lines(
    buf: np.ndarray, line_starts: np.ndarray, lengths: np.ndarray, rows: np.ndarray
) -> np.ndarray:
    """``[len(rows), 80]`` matrix of lines ``rows`` (indices into the line table).

    Runs of adjacent lines of equal length (the common case: one block of ATOM lines) are
    copied as 2-D reshapes of the buffer; files with many irregular lines fall back to a
    gather with an index matrix.
    """
    n_lines = len(line_starts)
    nxt = np.append(line_starts[1:], len(buf) + 1)
    stride = (nxt - line_starts)[rows]
    length = lengths[rows]
    brk = np.flatnonzero(
        (np.diff(rows) != 1) | (np.diff(stride) != 0) | (np.diff(length) != 0)
    ) + 1
    bounds = np.concatenate(([0], brk, [len(rows)]))
    if len(bounds) > 65 or rows[-1] == n_lines - 1 and stride[-1] > lengths[rows[-1]] + 2:
        return _gather(buf, line_starts[rows], length, _WIDTH)
    out = np.full((len(rows), _WIDTH), _SPACE, dtype=np.uint8)
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        st, n, ln = int(stride[lo]), int(hi - lo), min(int(length[lo]), _WIDTH)
        s0 = int(line_starts[rows[lo]])
        block = buf[s0 : s0 + n * st]
        if len(block) < n * st:  # last line without a trailing newline
            block = np.concatenate((block, np.full(n * st - len(block), _SPACE, np.uint8)))
        out[lo:hi, :ln] = block.reshape(n, st)[:, :ln]
    return out


def _error_row(
    field: np.ndarray, lines: np.ndarray, source: str, what: str, parse: type
) -> ParseError:
    """ParseError for the first row of ``field`` that ``parse`` rejects."""
    for row, raw in enumerate(field):
        text = bytes(raw).decode("ascii", errors="replace")
        try:
            parse(text)
        except ValueError:
            return ParseError(f"{source}: line {int(lines[row])}: invalid {what} {text.strip()!r}")
    return ParseError(f"{source}: invalid {what}")  # pragma: no cover - parse succeeded row-wise


def _byte_mask(positions: Iterable[int]) -> int:
    """Integer with byte value 1 at the given byte positions (little-endian: byte 0 first)."""
    return sum(1 << (8 * p) for p in positions)


@functools.lru_cache(maxsize=16)
def _fixed_layout(fields: tuple[tuple[int, int, int | None], ...]) -> tuple[np.ndarray, ...]:
    """Per-field uint64 masks [K, 1] for :func:`_fixed_point`: every field is read as the 8-byte
    word that ends where the field ends, its bytes left of the field replaced by ``'0'``."""
    cols: dict[str, list[int]] = {k: [] for k in (
        "keep", "fill", "required", "filler_ok", "pair_mask", "point", "int_bytes", "frac_bytes",
        "frac_scale")}
    for _, width, dot in fields:
        if width > 8:
            raise ValueError("fixed-point fast path: fields of at most 8 bytes")
        pad = 8 - width
        end = 8 if dot is None else pad + dot  # integer part: bytes pad .. end-1
        cols["keep"].append(_byte_mask(range(pad, 8)) * 0xFF)
        cols["fill"].append(_byte_mask(range(pad)) * 0x30)
        cols["required"].append(
            _byte_mask([end - 1] + ([] if dot is None else list(range(end + 1, 8))))
        )
        cols["filler_ok"].append(_byte_mask(range(pad, end - 1)))
        cols["pair_mask"].append(_byte_mask(range(pad + 1, end)))
        cols["point"].append(0 if dot is None else _byte_mask([end]))
        # Removing the point: integer digits move one byte up (one decimal place down).
        cols["int_bytes"].append(0 if dot is None else _byte_mask(range(end)) * 0xFF)
        cols["frac_bytes"].append(_byte_mask(range(8 if dot is None else end + 1, 8)) * 0xFF
                                  if dot is not None else (1 << 64) - 1)
        cols["frac_scale"].append(10 ** (0 if dot is None else 7 - end))
    out = [np.array(v, np.uint64)[:, None] for v in cols.values()]
    out[-1] = out[-1].astype(np.float64)
    return tuple(out)


_M16, _M32 = np.uint64(0x00FF00FF00FF00FF), np.uint64(0x0000FFFF0000FFFF)
_LOW32 = np.uint64(0xFFFFFFFF)
_S8, _S16, _S32 = np.uint64(8), np.uint64(16), np.uint64(32)
_MUL10, _MUL100, _MUL10K = np.uint64(10), np.uint64(100), np.uint64(10000)


def _fixed_point(
    mat: np.ndarray, fields: tuple[tuple[int, int, int | None], ...]
) -> tuple[np.ndarray, np.ndarray]:
    """Fast path for right-aligned fixed-point fields (``%8.3f``, ``%6.2f``, ``%4d``) of every
    row of the C-contiguous uint8 matrix ``mat`` [M, W].

    ``fields``: ``(start column (0-based), width <= 8, position of the point in the field or
    None for integers)``; every field must end at column 8 or later. Returns the values [M, K]
    float64 (an exact integer divided by a power of ten, hence equal to Python's ``float()`` of
    the text) and ``ok`` [M, K]: False where the text is not ``[spaces][-]digits[.digits]`` with
    the point in its place and a digit before it (such fields must go through the general
    parser, which also reports errors).

    Each field is loaded as one little-endian 8-byte word per row ("SIMD within a register")
    and all work is done on [K, M] arrays, so that numpy runs long inner loops: per-element
    indexing and operations along short rows are what makes a numpy parser slow.
    """
    keep, fill, required, filler_ok, pair_mask, point, int_bytes, frac_bytes, frac_scale = (
        _fixed_layout(fields)
    )
    m, k = len(mat), len(fields)
    if min(start + width for start, width, _ in fields) < 8:  # room for the 8-byte windows
        mat = np.concatenate((np.full((m, 8), _SPACE, np.uint8), mat), axis=1)
        fields = tuple((start + 8, width, dot) for start, width, dot in fields)
    mat = np.ascontiguousarray(mat)
    words = np.empty((k, m), "<u8")
    for f, (start, width, _) in enumerate(fields):
        if m:
            words[f] = np.ndarray(
                (m,), "<u8", buffer=mat, offset=start + width - 8, strides=(mat.strides[0],)
            )
    words &= keep
    words |= fill
    block = words.view(np.uint8)  # byte 0 of a word = the first character of the window
    digits = block - np.uint8(48)
    is_digit = digits <= 9
    is_minus = block == 45
    dw = is_digit.view("<u8")
    mw = is_minus.view("<u8")
    fw = ((block == _SPACE) | is_minus).view("<u8")
    pw = (block == 46).view("<u8")
    ok = (dw & required) == required
    ok &= ((dw | fw) & filler_ok) == filler_ok
    ok &= (pw & point) == point
    # Inside the integer part, a space or '-' never follows a digit or a '-'.
    ok &= (((dw | mw) << _S8) & fw & pair_mask) == 0
    digits *= is_digit
    x = digits.view("<u8").astype(np.uint64)
    x = (x & int_bytes) << _S8 | (x & frac_bytes)  # drop the point byte
    x = (x & _M16) * _MUL10 + (x >> _S8 & _M16)
    x = (x & _M32) * _MUL100 + (x >> _S16 & _M32)
    x = (x & _LOW32) * _MUL10K + (x >> _S32)
    values = x.astype(np.float64) / frac_scale
    np.negative(values, out=values, where=(mw & filler_ok) != 0)
    return values.T, ok.T


def _to_float(
    mat: np.ndarray, lo: int, hi: int, n: int, lines: np.ndarray, source: str, what: str,
    blank: tuple[float, ...] | None = None,
) -> np.ndarray:
    """``n`` consecutive fields of width ``(hi - lo) / n`` in columns ``lo:hi`` (0-based, end
    exclusive) parsed as float64 ``[M, n]``; ``blank[k]`` (if given) replaces empty fields k.
    General (slow) path: numpy's string-to-float conversion, with errors naming the line."""
    width = (hi - lo) // n
    field = np.ascontiguousarray(mat[:, lo:hi])
    strings = field.view(f"S{width}")
    empty = None
    if blank is not None:
        empty = np.strings.strip(strings) == b""
        if empty.any():
            strings = np.where(empty, b"0", strings)
    try:
        values = strings.astype(np.float64)
    except ValueError:
        rows = field.reshape(len(field), n, width)
        for k in range(n):
            try:
                np.ascontiguousarray(rows[:, k]).view(f"S{width}").astype(np.float64)
            except ValueError:
                raise _error_row(rows[:, k], lines, source, what[k], float) from None
        raise  # pragma: no cover - one of the fields failed above
    if empty is not None:
        values = np.where(empty, np.asarray(blank), values)
    return values


def _to_int(
    mat: np.ndarray, lo: int, hi: int, lines: np.ndarray, source: str, what: str
) -> np.ndarray:
    field = np.ascontiguousarray(mat[:, lo:hi])
    try:
        return field.view(f"S{hi - lo}").ravel().astype(np.int64)
    except ValueError:
        pass
    # Hybrid-36 numbers (``A000`` = 10000, written by tools for residue numbers > 9999).
    width = hi - lo
    decode = functools.partial(hybrid36_decode, width)
    out = np.empty(len(field), np.int64)
    for row, raw in enumerate(field):
        try:
            out[row] = decode(bytes(raw).decode("ascii", errors="replace"))
        except ValueError:
            raise _error_row(field, lines, source, what, decode) from None
    return out


_DIGITS36_UPPER = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_HY36_MAX4 = 10**4 + 2 * 26 * 36**3  # first value that does not fit 4 hybrid-36 characters


def hybrid36_encode(width: int, value: int) -> str:
    """``value`` right-aligned in ``width`` characters: decimal when it fits, else hybrid-36
    (inverse of :func:`hybrid36_decode`)."""
    if value < 10**width:
        return f"{value:{width}d}"
    value -= 10**width
    block = 26 * 36 ** (width - 1)
    if value < block:
        digits, alphabet = value + 10 * 36 ** (width - 1), _DIGITS36_UPPER
    elif value < 2 * block:
        digits, alphabet = value - block + 10 * 36 ** (width - 1), _DIGITS36_UPPER.lower()
    else:
        raise InputError(f"number {value + 10**width} does not fit {width} hybrid-36 characters")
    out = ""
    for _ in range(width):
        digits, r = divmod(digits, 36)
        out = alphabet[r] + out
    return out


def hybrid36_decode(width: int, text: str) -> int:
    """Integer of a PDB number field: decimal, or hybrid-36 for values beyond the decimal
    range (``A000`` -> 10000, ``a000`` -> 10000 + 26 * 36**3 for width 4).

    Raises:
        ValueError: neither form.
    """
    s = text.strip()
    if not s or len(text) > width:
        raise ValueError(text)
    if s[0] in "-0123456789":
        return int(s)
    if len(s) != width or not s.isalnum() or not s.isascii():
        raise ValueError(text)
    if s[0].isupper() and s[1:] == s[1:].upper():
        return int(s, 36) - 10 * 36 ** (width - 1) + 10**width
    if s[0].islower() and s[1:].lower() == s[1:]:
        return int(s, 36) + 16 * 36 ** (width - 1) + 10**width
    raise ValueError(text)


def _column_str(mat: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """Columns ``lo:hi`` as stripped byte strings."""
    return np.strings.strip(np.ascontiguousarray(mat[:, lo:hi]).view(f"S{hi - lo}").ravel())


def infer_element(raw_name: bytes, resname: bytes = b"") -> bytes:
    """Element symbol (upper case) from a 4-character PDB atom-name field.

    The element is right-justified in columns 13-14: `` CA `` (col 13 blank) is carbon,
    ``CA  `` is calcium, ``1HG2`` (col 13 a digit) is hydrogen. Four-character names starting
    with ``H`` (``HG21``) are hydrogens of old-style files.
    """
    name = raw_name.ljust(4)
    c0, c1 = name[:1], name[1:2]
    if c0 in b" 0123456789":
        return c1.upper() if c1.strip() and c1.upper().decode() in ELEMENTS else b""
    two = name[:2].upper()
    if c0 in b"Hh" and name[3:4].strip():
        return b"H"
    if two.decode(errors="replace") in ELEMENTS and resname.strip() not in _AMINO_NAMES:
        return two
    return c0.upper() if c0.upper().decode(errors="replace") in ELEMENTS else b""


_AMINO_NAMES = frozenset(
    b"ALA ARG ASN ASP CYS GLN GLU GLY HIS ILE LEU LYS MET PHE PRO SER THR TRP TYR VAL".split()
)


@functools.lru_cache(maxsize=1)
def _element_tables() -> tuple[np.ndarray, np.ndarray]:
    """Element symbol (S2, stripped, upper case) and validity of every 2-byte value of columns
    77-78 read as a little-endian uint16."""
    symbols = np.zeros(1 << 16, dtype="S2")
    valid = np.zeros(1 << 16, dtype=bool)
    printable = range(32, 127)
    for a in printable:
        for b in printable:
            sym = bytes((a, b)).strip().upper()
            code = a | (b << 8)
            symbols[code] = sym
            valid[code] = sym != b"" and sym.decode() in ELEMENTS
    return symbols, valid


def _elements(mat: np.ndarray, names_raw: np.ndarray, resnames: np.ndarray) -> np.ndarray:
    """Element column: columns 77-78 when they hold a valid symbol, else inferred."""
    raw = np.ascontiguousarray(mat[:, 76:78]).view("<u2").ravel()
    symbols, valid = _element_tables()
    out = symbols[raw]
    ok = valid[raw]
    if ok.all():
        return out
    bad = np.flatnonzero(~ok)
    keys = np.char.add(names_raw[bad], resnames[bad])
    ukeys, kinv = np.unique(keys, return_inverse=True)
    inferred = np.array([infer_element(k[:4], k[4:]) for k in ukeys], dtype="S2")
    out[bad] = inferred[kinv.reshape(-1)]
    return out


def read_pdb_sites(data: bytes, source: str, model: int = 1) -> AtomSites:
    """Atom records of model ``model`` (1-based ordinal of MODEL records) of PDB text."""
    nul = data.find(b"\x00")
    if nul >= 0:  # text files never hold NUL bytes: binary data or a corrupted file
        line = data.count(b"\n", 0, nul) + 1
        raise ParseError(
            f"{source}: line {line}: binary data (NUL byte at offset {nul}), not a PDB text file"
        )
    buf = np.frombuffer(data, dtype=np.uint8)
    starts, lengths = _line_table(buf)
    # The first 8 bytes at every line start as one little-endian word (overlapping windows of
    # the buffer padded with newlines), compared with record names under a byte mask.
    padded = data + b"\n" * 8
    windows = np.ndarray((len(data),), "<u8", buffer=padded, strides=(1,))
    heads = windows[starts] if len(data) else np.zeros(0, np.uint64)
    het_rec = (heads & _MASK6) == _HETATM
    is_atom = het_rec | ((heads & _MASK4) == _ATOM)
    atom_lines = np.flatnonzero(is_atom)
    if len(atom_lines) == 0:
        raise ParseError(f"{source}: no ATOM/HETATM records (not a PDB file, or empty)")
    model_lines = np.flatnonzero((heads & _MASK5) == _MODEL)
    n_models = max(1, len(model_lines))
    if len(model_lines):
        # Atoms before the first MODEL record (none in valid files) count as model 1.
        ordinal = np.maximum(np.searchsorted(model_lines, atom_lines, side="right"), 1)
        if model > n_models:
            raise InputError(f"{source}: model {model} requested, the file has {n_models}")
        atom_lines = atom_lines[ordinal == model]
    elif model != 1:
        raise InputError(f"{source}: model {model} requested, the file has 1")

    line_len = lengths[atom_lines]
    mat = _gather_lines(buf, starts, lengths, atom_lines)
    lines = atom_lines + 1
    mat[mat == 13] = _SPACE  # CR of CRLF line ends
    mat[mat == 9] = _SPACE
    short = line_len < _MIN_ATOM_LINE
    if short.any():
        row = int(np.flatnonzero(short)[0])
        raise ParseError(
            f"{source}: line {int(lines[row])}: ATOM/HETATM record too short "
            f"({int(line_len[row])} characters; coordinates need {_MIN_ATOM_LINE}): truncated?"
        )
    control = (mat < _SPACE) | (mat > 126)
    if control.any():
        row = int(np.flatnonzero(control.any(axis=1))[0])
        raise ParseError(
            f"{source}: line {int(lines[row])}: non-text byte in an ATOM/HETATM record "
            "(binary data or a corrupted file)"
        )

    # Numbers: the fast fixed-point path, then the general parser for rows it did not accept
    # (other layouts, blank occupancy / B-factor, errors).
    values, ok = _fixed_point(mat, _NUMBER_FIELDS)
    xyz, occ_b, resseq = values[:, :3], values[:, 3:5], values[:, 5].astype(np.int64)
    slow = ~ok.all(axis=1)
    if slow.any():
        sub, sub_lines = mat[slow], lines[slow]
        xyz[slow] = _to_float(sub, 30, 54, 3, sub_lines, source, _XYZ_FIELDS)
        occ_b[slow] = _to_float(sub, 54, 66, 2, sub_lines, source, _OCC_B_FIELDS, blank=(1.0, 0.0))
        resseq[slow] = _to_int(sub, 22, 26, sub_lines, source, "residue number (columns 23-26)")

    names_raw = np.ascontiguousarray(mat[:, 12:16]).view("S4").ravel()
    resname = _column_str(mat, 17, 20)
    return AtomSites(
        source=source,
        record=lines.astype(np.int64),
        record_kind="line",
        model=model,
        n_models=n_models,
        het=het_rec[atom_lines],
        atom_name=np.strings.strip(names_raw),
        altloc=_column_str(mat, 16, 17),
        resname=resname,
        chain_id=_column_str(mat, 21, 22),
        resseq=resseq,
        icode=_column_str(mat, 26, 27),
        xyz=xyz,
        occupancy=occ_b[:, 0].astype(np.float32),
        b_factor=occ_b[:, 1].astype(np.float32),
        element=_elements(mat, names_raw, resname),
    )


def _pdb_atom_name(name: str, element: str) -> str:
    """Atom name aligned in columns 13-16 (one-letter elements start in column 14)."""
    if len(name) >= 4 or len(element) == 2:
        return f"{name:<4s}"[:4]
    return f" {name:<3s}"


def format_atom_lines(
    records: Iterable[tuple[str, int, str, str, str, int, str, float, float, float, float, float, str]],
) -> list[str]:
    """PDB ``ATOM`` / ``HETATM`` lines (80 columns) from tuples ``(record, serial, name,
    resname, chain, resseq, icode, x, y, z, occupancy, b_factor, element)``.

    Raises:
        InputError: a value does not fit its fixed-width PDB field (chain ids longer than one
            character, residue numbers below -999 or beyond the hybrid-36 range (numbers
            above 9999 are written as hybrid-36: ``A000`` = 10000), coordinates outside
            -999.999..9999.999); write mmCIF for such structures.
    """
    out = []
    for rec, serial, name, resname, chain, resseq, icode, x, y, z, occ, b, elem in records:
        if len(chain) > 1:
            raise InputError(f"chain id {chain!r} is longer than one character: write mmCIF")
        if not -999 <= resseq < _HY36_MAX4:
            raise InputError(f"residue number {resseq} does not fit the PDB format: write mmCIF")
        if not all(-999.999 <= v <= 9999.999 for v in (x, y, z)):
            raise InputError(f"coordinates {(x, y, z)} do not fit the PDB format: write mmCIF")
        out.append(
            f"{rec:<6s}{serial % 100000:5d} {_pdb_atom_name(name, elem)} {resname:>3s} "
            f"{chain or ' ':1s}{hybrid36_encode(4, resseq)}{icode or ' ':1s}   "
            f"{x:8.3f}{y:8.3f}{z:8.3f}"
            f"{occ:6.2f}{min(max(b, -99.99), 999.99):6.2f}          {elem:>2s}  "
        )
    return out
