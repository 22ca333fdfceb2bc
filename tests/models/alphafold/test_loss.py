import math

import pytest
import torch

from tertiary.errors import ConfigError, InputError
from tertiary.geometry.rigid import Rigid, Rotation
from tertiary.models.alphafold.loss import LossConfig, alphafold_loss, fape


def _random_rigid(shape, g):
    q = torch.randn(*shape, 4, generator=g, dtype=torch.float64)
    return Rigid(Rotation(quats=q / q.norm(dim=-1, keepdim=True)), 5 * torch.randn(*shape, 3, generator=g, dtype=torch.float64))


def test_fape_is_zero_for_the_truth_and_invariant_to_global_motion():
    g = torch.Generator().manual_seed(0)
    frames = _random_rigid((6,), g)
    pts = 10 * torch.randn(9, 3, generator=g, dtype=torch.float64)
    fm, pm = torch.ones(6, dtype=torch.float64), torch.ones(9, dtype=torch.float64)
    assert float(fape(frames, frames, fm, pts, pts, pm, 10.0, eps=0.0)) == pytest.approx(0.0, abs=1e-12)
    pred_frames, pred_pts = _random_rigid((6,), g), 10 * torch.randn(9, 3, generator=g, dtype=torch.float64)
    base = fape(pred_frames, frames, fm, pred_pts, pts, pm, 10.0)
    move = _random_rigid((), g)
    moved = fape(Rigid.cat([move[None]] * 6, 0).compose(pred_frames), frames, fm,
                 move.apply(pred_pts), pts, pm, 10.0)
    assert float(moved) == pytest.approx(float(base), rel=1e-10)


def test_fape_clamp_bounds_the_error():
    g = torch.Generator().manual_seed(1)
    frames = _random_rigid((3,), g)
    pts = torch.zeros(4, 3, dtype=torch.float64)
    far = pts + 1000.0
    fm, pm = torch.ones(3, dtype=torch.float64), torch.ones(4, dtype=torch.float64)
    assert float(fape(frames, frames, fm, far, pts, pm, 10.0, clamp_distance=10.0)) == pytest.approx(1.0, rel=1e-4)
    assert float(fape(frames, frames, fm, far, pts, pm, 10.0)) > 100


def test_presets_and_errors():
    assert LossConfig.preset("finetuning_ptm").weights.tm == 0.1
    assert LossConfig.preset("initial_training").weights.violation == 0.0
    assert math.isclose(LossConfig.preset("finetuning").weights.violation, 1.0)
    with pytest.raises(ConfigError):
        LossConfig.preset("nope")
    with pytest.raises(InputError, match="lack"):
        alphafold_loss({}, {}, LossConfig())
    with pytest.raises(ConfigError, match="lacks"):
        LossConfig.from_openfold({"distogram": {}})
