"""tertiary.errors: every missing optional dependency gives one ``MissingDependencyError`` naming the
extra; ``one_line`` puts a message on one line."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from tertiary.errors import MissingDependencyError, TertiaryError



def _hide(monkeypatch: pytest.MonkeyPatch, *modules: str) -> None:
    for name in modules:
        monkeypatch.setitem(sys.modules, name, None)  # `import name` now raises ImportError


def _calls():
    from tertiary import ligand
    from tertiary.cli.plot_log import plot_run
    from tertiary.data.function import dssp_states
    from tertiary.models.fair.vina import require_vina
    from tertiary.relax.amber import _require_openmm
    from tertiary.train.tune import run_search

    z = np.zeros
    return {
        "vina": (("vina", "meeko"), require_vina),
        "relax": (("openmm", "pdbfixer"), _require_openmm),
        "hpo": (("optuna",), lambda: run_search({}, 1, Path("unused"))),
        "plots": (("matplotlib",), lambda: plot_run(Path("unused"), Path("unused.png"))),
        "function": (("mdtraj",), lambda: dssp_states(z((1, 37, 3)), z((1, 37), bool), z(1, int), np.array(["A"]))),
        "ligand": ((), lambda: ligand._require_rdkit()),
    }


@pytest.mark.parametrize("extra", ["vina", "relax", "hpo", "plots", "function", "ligand"])
def test_missing_optional_dependency(monkeypatch: pytest.MonkeyPatch, extra: str) -> None:
    modules, call = _calls()[extra]
    _hide(monkeypatch, *modules)
    if extra == "ligand":
        monkeypatch.setattr("tertiary.ligand.Chem", None)
    with pytest.raises(MissingDependencyError, match=rf"pip install 'tertiary\[{extra}\]'") as info:
        call()
    assert isinstance(info.value, TertiaryError) and isinstance(info.value, ImportError)
    assert "\n" not in str(info.value)


def test_one_line_joins_whitespace_and_names_empty_errors() -> None:
    from tertiary.errors import InputError, one_line

    assert one_line(InputError("bad file x.pdb:\n  line 3\tjunk  ")) == "bad file x.pdb: line 3 junk"
    assert one_line(KeyError()) == "KeyError"
    assert one_line("  two\n lines ") == "two lines"
    assert one_line("") == ""
