"""Metrics: TM-score vs tmtools / US-align values, lDDT, RMSD, GDT, AAR, Fmax, AUPR."""

from __future__ import annotations

import json
from pathlib import Path

import gemmi
import numpy as np
import pytest
import torch

from tertiary import metrics
from tertiary.errors import InputError

DATA = Path(__file__).resolve().parent / "data" / "geometry"


def ca_models(name: str) -> list[np.ndarray]:
    """CA coordinates [N, 3] of the amino acids of chain A in every model (gemmi)."""
    st = gemmi.read_structure(str(DATA / f"{name}.pdb.gz"))
    out = []
    for model in st:
        chain = model["A"]
        out.append(np.array([r["CA"][0].pos.tolist() for r in chain if r.het_flag == "A" and r.find_atom("CA", "*")]))
    return out


def rigid_motion(x: np.ndarray, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    q *= np.sign(np.linalg.det(q))
    return x @ q.T + rng.normal(size=3) * 30


# ------------------------------------------------------------------ TM-score


@pytest.mark.parametrize("entry", ["1l2y", "1gya"])
def test_tm_score_matches_tmtools_and_usalign(entry: str) -> None:
    tmtools = pytest.importorskip("tmtools")
    models = ca_models(entry)
    ref_json = json.loads((DATA / "tm_scores.json").read_text())[entry]
    assert len(models) == len(ref_json)
    seq = "A" * len(models[0])
    ours = metrics.tm_score(np.stack(models), np.stack([models[0]] * len(models)))
    given = metrics.tm_score(np.stack(models), np.stack([models[0]] * len(models)), superpose=False)
    tm_align = np.array(
        [tmtools.tm_align(m, models[0], seq, seq, [seq, seq]).tm_norm_chain2 for m in models]
    )
    # optimal superposition search: same result as TM-align with the identity alignment
    np.testing.assert_allclose(ours, tm_align, atol=1e-4)
    # US-align -se scores the models as deposited (NMR models are pre-superposed)
    np.testing.assert_allclose(given, ref_json, atol=0.01)
    assert ours[0] == pytest.approx(1.0)
    # the search is TM-score's heuristic, not a global optimum: for 1L2Y (d0 = 0.5 A) the
    # deposited superposition sometimes scores higher; on average the search is better
    assert ours.mean() > given.mean()


def test_tm_score_invariant_to_rigid_motion_and_mask() -> None:
    models = ca_models("1l2y")
    a, b = models[3], models[0]
    base = metrics.tm_score(a, b)
    assert metrics.tm_score(rigid_motion(a, 1), b) == pytest.approx(base, abs=1e-9)
    assert metrics.tm_score(torch.tensor(a), torch.tensor(b)) == pytest.approx(base, abs=1e-12)
    # masked residues are left out; garbage there does not matter
    mask = np.ones(len(a), dtype=bool)
    mask[-4:] = False
    junk = a.copy()
    junk[-4:] = np.nan
    assert metrics.tm_score(junk, b, mask) == pytest.approx(metrics.tm_score(a[:-4], b[:-4]), abs=1e-12)
    # normalising by a longer reference lowers the score proportionally to fewer residues
    assert metrics.tm_score(a, b, ref_length=40) < base


def test_tm_score_atom37_input_uses_ca() -> None:
    models = ca_models("1l2y")
    a37 = np.zeros((20, 37, 3))
    b37 = np.zeros((20, 37, 3))
    a37[:, 1], b37[:, 1] = models[5], models[0]
    a37[:, 0] = 1000.0  # other atoms must not matter
    m = np.zeros((20, 37))
    m[:, :2] = 1
    assert metrics.tm_score(a37, b37, m) == pytest.approx(metrics.tm_score(models[5], models[0]), abs=1e-12)


# ------------------------------------------------------------------ lDDT


def lddt_reference(pred, ref, mask, residue, cutoff=15.0) -> float:
    """Straightforward double loop over atom pairs (different residues for all-atom)."""
    num = 0.0
    count = 0
    n = len(pred)
    for i in range(n):
        for j in range(n):
            if i == j or not (mask[i] and mask[j]) or residue[i] == residue[j]:
                continue
            d_ref = np.linalg.norm(ref[i] - ref[j])
            if d_ref >= cutoff:
                continue
            diff = abs(np.linalg.norm(pred[i] - pred[j]) - d_ref)
            num += np.mean([diff < t for t in (0.5, 1.0, 2.0, 4.0)])
            count += 1
    return num / count


def test_lddt_ca_against_reference_loop() -> None:
    models = ca_models("1gya")
    a, b = models[4][:60], models[0][:60]
    mask = np.ones(60, dtype=bool)
    mask[::7] = False
    expected = lddt_reference(a, b, mask, np.arange(60))
    assert metrics.lddt(a, b, mask) == pytest.approx(expected, abs=1e-12)
    assert metrics.lddt(a, b, mask, chunk_size=7) == pytest.approx(expected, abs=1e-12)
    assert metrics.lddt(rigid_motion(a, 2), b, mask) == pytest.approx(expected, abs=1e-9)
    assert metrics.lddt(b, b) == 1.0


def test_lddt_all_atom_excludes_same_residue_pairs() -> None:
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(12, 37, 3)) * 4
    pred = ref + rng.normal(size=ref.shape) * 0.8
    mask = rng.random((12, 37)) < 0.3
    residue = np.repeat(np.arange(12), 37)
    expected = lddt_reference(pred.reshape(-1, 3), ref.reshape(-1, 3), mask.reshape(-1), residue)
    assert metrics.lddt(pred, ref, mask) == pytest.approx(expected, abs=1e-12)


def test_lddt_known_case() -> None:
    # 3 residues on a line 3 A apart; the last moves 1.5 A further: pairs (0,2) and (1,2) change
    # by 1.5 A -> scored 2/4 each; pair (0,1) perfect. Ordered pairs: 6, sum = 2*1 + 4*0.5 = 4.
    ref = np.array([[0.0, 0, 0], [3.0, 0, 0], [6.0, 0, 0]])
    pred = ref.copy()
    pred[2, 0] += 1.5
    assert metrics.lddt(pred, ref) == pytest.approx(4 / 6)
    per_res = metrics.lddt(pred, ref, per_residue=True)
    np.testing.assert_allclose(per_res, [0.75, 0.75, 0.5])
    # a pair beyond the inclusion radius in the reference is ignored
    far = np.array([[0.0, 0, 0], [3.0, 0, 0], [30.0, 0, 0]])
    moved = far.copy()
    moved[2, 0] += 10
    assert metrics.lddt(moved, far, per_residue=True)[:2].tolist() == [1.0, 1.0]


def test_lddt_scores_differentiable() -> None:
    g = torch.Generator().manual_seed(0)
    ref = torch.randn(10, 3, generator=g, dtype=torch.float64) * 3
    pred = (ref + 0.1 * torch.randn(10, 3, generator=g, dtype=torch.float64)).requires_grad_()
    num, cnt = metrics.lddt_scores(pred, ref, torch.ones(10))
    assert cnt.sum() == 90 and num.shape == (10,)


# ------------------------------------------------------------------ RMSD / GDT


def test_rmsd_known_values() -> None:
    models = ca_models("1l2y")
    a = models[0]
    assert metrics.rmsd(rigid_motion(a, 3), a) == pytest.approx(0.0, abs=1e-9)
    assert metrics.rmsd(a + np.array([1.0, 2.0, 2.0]), a, superpose=False) == pytest.approx(3.0)
    mask = np.zeros(20)
    mask[:4] = 1
    shifted = a.copy()
    shifted[4:] += 100
    assert metrics.rmsd(shifted, a, mask, superpose=False) == pytest.approx(0.0)
    # batched: one value per item, equal to the single calls
    batch = metrics.rmsd(np.stack(models[:3]), np.stack([a] * 3))
    assert batch.shape == (3,)
    assert batch[2] == pytest.approx(metrics.rmsd(models[2], a))


def test_gdt_hand_cases() -> None:
    models = ca_models("1gya")
    ref = models[0][:40]
    assert metrics.gdt_ts(rigid_motion(ref, 4), ref) == pytest.approx(1.0)
    assert metrics.gdt_ha(ref, ref) == pytest.approx(1.0)
    # half of the residues exact, the other half moved 100 A away: best is 20 of 40 at all cutoffs
    pred = ref.copy()
    pred[20:] += np.array([100.0, 0, 0])
    assert metrics.gdt_ts(pred, ref) == pytest.approx(0.5)
    assert metrics.gdt_ha(pred, ref) == pytest.approx(0.5)
    # a real NMR pair: HA <= TS, both in (0, 1], TS >= fraction within 8 A at TM's superposition
    ts, ha = metrics.gdt_ts(models[7], models[0]), metrics.gdt_ha(models[7], models[0])
    assert 0 < ha <= ts <= 1


# ------------------------------------------------------------------ AAR


def test_aar() -> None:
    assert metrics.aar("ACDE", "ACDF") == 0.75
    assert metrics.aar("ACDE", "ACDF", mask=np.array([0, 0, 0, 1])) == 0.0
    np.testing.assert_allclose(metrics.aar(["AC", "DE"], ["AC", "DF"]), [1.0, 0.5])
    np.testing.assert_allclose(metrics.aar(torch.tensor([[1, 2, 3]]), np.array([[1, 2, 4]])), [2 / 3])


# ------------------------------------------------------------------ Fmax / AUPR


def fmax_reference(scores: np.ndarray, labels: np.ndarray, thresholds) -> float:
    """Protein-centric Fmax by looping over thresholds and proteins."""
    best = 0.0
    for t in thresholds:
        precisions, recalls = [], []
        for s, y in zip(scores, labels):
            if y.sum() == 0:
                continue
            predicted = s >= t
            tp = (predicted & y).sum()
            if predicted.sum() > 0:
                precisions.append(tp / predicted.sum())
            recalls.append(tp / y.sum())
        if not precisions:
            continue
        p, r = np.mean(precisions), np.mean(recalls)
        if p + r > 0:
            best = max(best, 2 * p * r / (p + r))
    return best


def aupr_reference(scores: np.ndarray, labels: np.ndarray) -> float:
    """Average precision without ties: mean precision at the rank of each positive."""
    order = np.argsort(-scores)
    y = labels[order]
    hits = np.cumsum(y)
    return float(np.mean([hits[k] / (k + 1) for k in range(len(y)) if y[k]]))


def test_fmax_aupr_hand_case() -> None:
    scores = np.array([[0.9, 0.5, 0.1], [0.8, 0.3, 0.7]])
    labels = np.array([[1, 0, 0], [0, 0, 1]])
    # best threshold 0.7: P = (1 + 1/2) / 2, R = 1 -> F = 6/7
    assert metrics.fmax(scores, labels) == pytest.approx(6 / 7)
    # ranking 1,0,1,0,0,0 -> AP = (1/1 + 2/3) / 2
    assert metrics.aupr(scores, labels) == pytest.approx(5 / 6)


def test_fmax_aupr_against_reference_loops() -> None:
    rng = np.random.default_rng(0)
    labels = rng.random((40, 25)) < 0.15
    labels[0] = False  # an unlabeled protein (skipped, CAFA)
    scores = np.clip(labels * 0.3 + rng.random((40, 25)) * 0.8, 0, 1)
    exact = metrics.fmax(scores, labels)
    assert exact == pytest.approx(fmax_reference(scores, labels, np.unique(scores)), abs=1e-12)
    grid = np.linspace(0, 1, 101)
    assert metrics.fmax(scores, labels, grid) == pytest.approx(fmax_reference(scores, labels, grid), abs=1e-12)
    assert metrics.fmax(torch.tensor(scores), torch.tensor(labels)) == pytest.approx(exact)
    assert metrics.aupr(scores, labels) == pytest.approx(aupr_reference(scores.ravel(), labels.ravel()), abs=1e-12)
    # ties: rounded scores, exact Fmax still equals the threshold loop
    coarse = np.round(scores, 1)
    assert metrics.fmax(coarse, labels) == pytest.approx(fmax_reference(coarse, labels, np.unique(coarse)), abs=1e-12)


# ------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    "call",
    [
        lambda: metrics.rmsd(np.zeros((5, 3)), np.zeros((6, 3))),
        lambda: metrics.rmsd(np.zeros((5, 3)), np.zeros((5, 3)), np.zeros(5)),
        lambda: metrics.lddt(np.zeros((5, 37, 3)), np.zeros((5, 37, 3)), np.zeros((5, 36))),
        lambda: metrics.tm_score(np.zeros((5, 2)), np.zeros((5, 2))),
        lambda: metrics.tm_score(np.full((5, 3), np.nan), np.zeros((5, 3))),
        lambda: metrics.gdt_ts(np.zeros((0, 3)), np.zeros((0, 3))),
        lambda: metrics.lddt(np.zeros((1, 3)), np.zeros((1, 3))),
        lambda: metrics.aar("ACD", "AC"),
        lambda: metrics.aar("ACD", "ACD", mask=np.zeros(3)),
        lambda: metrics.fmax(np.zeros((2, 3)), np.zeros((2, 3))),
        lambda: metrics.fmax(np.zeros((2, 3)), np.full((2, 3), 2)),
        lambda: metrics.aupr(np.zeros((2, 3)), np.zeros((2, 4))),
    ],
)
def test_bad_inputs_raise_input_error(call) -> None:
    with pytest.raises(InputError):
        call()
