import pytest
import torch

from tertiary.errors import ParseError
from tertiary.models.esm import Alphabet


def test_layout_and_encoding():
    a = Alphabet()
    assert len(a) == 33
    assert (a.cls_idx, a.padding_idx, a.eos_idx, a.unk_idx, a.mask_idx) == (0, 1, 2, 3, 32)
    assert a.encode("LAGW") == [0, 4, 5, 6, 22, 2]
    assert a.encode("mk") == a.encode("MK")  # lower case accepted
    assert a.encode("A<mask>C<unk>") == [0, 5, 32, 23, 3, 2]


def test_batch_is_right_padded_and_decodes():
    a = Alphabet()
    tokens = a.batch(["MKV", "A"])
    assert tokens.dtype == torch.long
    assert tokens.tolist() == [[0, 20, 15, 7, 2], [0, 5, 2, 1, 1]]
    assert a.decode(tokens[0]) == "MKV" and a.decode(tokens[1]) == "A"


@pytest.mark.parametrize(
    ("seq", "pattern"),
    [
        ("MKJ", r"seq: unknown residue letter 'J' at position 2"),
        ("MK*", r"'\*' at position 2"),
        ("MK V", r"' ' at position 2"),
        ("", r"seq: empty sequence"),
        ("M<foo>K", r"special token '<foo>' at position 1"),
        ("M<eos>K", r"special token '<eos>'"),
    ],
)
def test_bad_sequences_raise_parse_errors(seq, pattern):
    with pytest.raises(ParseError, match=pattern):
        Alphabet().encode(seq, name="seq")


def test_batch_errors_name_the_sequence():
    with pytest.raises(ParseError, match="P12345: unknown residue letter '1'"):
        Alphabet().batch(["MK", "M1"], names=["ok", "P12345"])
    with pytest.raises(ParseError, match="no sequences"):
        Alphabet().batch([])
