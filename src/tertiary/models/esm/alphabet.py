"""The ESM-2 (``"ESM-1b"``) alphabet and tokenizer.

Token layout (ids are fixed by the released checkpoints)::

    <cls>0 <pad>1 <eos>2 <unk>3 L4 A5 G6 V7 S8 E9 R10 T11 I12 D13 P14 K15 Q16 N17 F18 Y19 M20
    H21 W22 C23 X24 B25 U26 Z27 O28 .29 -30 <null_1>31 <mask>32

A sequence becomes ``<cls> residues <eos>``; a batch is right-padded with ``<pad>``. Special
tokens may appear inside a sequence string written out in full (``"MK<mask>LV"``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import torch

from tertiary.errors import ParseError

_SPECIALS_HEAD = ("<cls>", "<pad>", "<eos>", "<unk>")
_RESIDUES = "LAGVSERTIDPKQNFYMHWCXBUZO.-"
_SPECIALS_TAIL = ("<null_1>", "<mask>")
_SPECIAL_RE = re.compile(r"<[^<>]*>")


class Alphabet:
    """Tokenizer of ESM-2: sequence strings <-> token ids.

    Letters are upper-cased before lookup; any other character (digits, ``*``, spaces, ``J``)
    is a :class:`ParseError` naming the sequence and position.
    """

    def __init__(self) -> None:
        self.tokens: tuple[str, ...] = (*_SPECIALS_HEAD, *_RESIDUES, *_SPECIALS_TAIL)
        self.index: dict[str, int] = {tok: i for i, tok in enumerate(self.tokens)}
        self.cls_idx = self.index["<cls>"]
        self.padding_idx = self.index["<pad>"]
        self.eos_idx = self.index["<eos>"]
        self.unk_idx = self.index["<unk>"]
        self.mask_idx = self.index["<mask>"]

    def __len__(self) -> int:
        return len(self.tokens)

    def encode(self, sequence: str, name: str = "sequence") -> list[int]:
        """Token ids of ``<cls> sequence <eos>``.

        Args:
            sequence: one-letter residues, optionally with ``<mask>``-style special tokens.
            name: how error messages refer to this sequence (e.g. its FASTA header).
        """
        if not isinstance(sequence, str):
            raise ParseError(f"{name}: expected a string, got {type(sequence).__name__}")
        ids = [self.cls_idx]
        pos = 0
        for special in _SPECIAL_RE.finditer(sequence):
            ids.extend(self._encode_letters(sequence, pos, special.start(), name))
            tok = special.group()
            if tok not in self.index or tok in ("<cls>", "<eos>", "<pad>"):
                raise ParseError(
                    f"{name}: special token {tok!r} at position {special.start()} is not allowed inside a sequence"
                )
            ids.append(self.index[tok])
            pos = special.end()
        ids.extend(self._encode_letters(sequence, pos, len(sequence), name))
        if len(ids) == 1:
            raise ParseError(f"{name}: empty sequence")
        ids.append(self.eos_idx)
        return ids

    def _encode_letters(self, sequence: str, start: int, end: int, name: str) -> list[int]:
        out = []
        for i in range(start, end):
            idx = self.index.get(sequence[i].upper())
            if idx is None:
                raise ParseError(
                    f"{name}: unknown residue letter {sequence[i]!r} at position {i} "
                    f"(allowed: {_RESIDUES} and <mask>, <unk>)"
                )
            out.append(idx)
        return out

    def batch(self, sequences: Sequence[str], names: Sequence[str] | None = None) -> torch.Tensor:
        """Right-padded token batch ``[B, N_tok]`` (int64) with ``N_tok = longest + 2``."""
        if len(sequences) == 0:
            raise ParseError("no sequences to tokenize")
        if names is not None and len(names) != len(sequences):
            raise ParseError(f"{len(names)} names for {len(sequences)} sequences")
        encoded = [
            self.encode(seq, names[i] if names is not None else f"sequence {i}") for i, seq in enumerate(sequences)
        ]
        out = torch.full((len(encoded), max(map(len, encoded))), self.padding_idx, dtype=torch.long)
        for i, ids in enumerate(encoded):
            out[i, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        return out

    def decode(self, ids: Sequence[int] | torch.Tensor) -> str:
        """Residue string of one token row; BOS / EOS / padding are dropped."""
        skip = {self.cls_idx, self.eos_idx, self.padding_idx}
        values = ids.tolist() if isinstance(ids, torch.Tensor) else list(ids)
        return "".join(self.tokens[i] for i in values if i not in skip)
