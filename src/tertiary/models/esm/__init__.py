"""ESM-2 protein language model: tokenizer, model, weights import / export.

>>> from tertiary.models.esm import Alphabet, load_esm
>>> model = load_esm("esm2_t33_650M_UR50D.pt")            # doctest: +SKIP
>>> tokens = Alphabet().batch(["MKTAYIAK", "MSEQ"])
>>> out = model(tokens, repr_layers=[33], return_contacts=True)  # doctest: +SKIP
"""

from tertiary.models.esm.alphabet import Alphabet
from tertiary.models.esm.config import TRAINED_MAX_RESIDUES, ESMConfig
from tertiary.models.esm.model import ESM2, TransformerLayer, insert_before_eos
from tertiary.models.esm.weights import (
    load_esm,
    load_fair_esm_checkpoint,
    load_hf,
    load_tertiary,
    save_esm,
)

__all__ = [
    "ESM2",
    "TRAINED_MAX_RESIDUES",
    "Alphabet",
    "ESMConfig",
    "TransformerLayer",
    "insert_before_eos",
    "load_esm",
    "load_fair_esm_checkpoint",
    "load_hf",
    "load_tertiary",
    "save_esm",
]
