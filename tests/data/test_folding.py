import pytest
import torch

from tertiary.data.folding import crop_indices, ground_truth_features
from tertiary.errors import InputError


def test_crops_are_sorted_unique_and_seeded():
    g = torch.Generator().manual_seed(0)
    ca = torch.cumsum(torch.randn(50, 3, generator=g), 0)
    mask = torch.ones(50)
    mask[10] = 0
    for mode in ("contiguous", "spatial"):
        a = crop_indices(ca, mask, 20, mode, torch.Generator().manual_seed(3))
        b = crop_indices(ca, mask, 20, mode, torch.Generator().manual_seed(3))
        assert torch.equal(a, b) and len(a) == 20 and torch.equal(a, torch.sort(torch.unique(a)).values)
    spatial = crop_indices(ca, mask, 20, "spatial", torch.Generator().manual_seed(4))
    assert 10 not in spatial.tolist()
    assert torch.equal(crop_indices(ca[:5], mask[:5], 20, "spatial", g), torch.arange(5))
    with pytest.raises(InputError):
        crop_indices(ca, mask, 20, "diagonal", g)
    with pytest.raises(InputError):
        crop_indices(ca, torch.zeros(50), 20, "spatial", g)


def test_shape_errors():
    with pytest.raises(InputError):
        ground_truth_features(torch.zeros(3, dtype=torch.long), torch.zeros(3, 14, 3), torch.zeros(3, 14))
