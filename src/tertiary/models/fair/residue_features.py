"""Residue-level node and edge features of FAIR's hierarchical encoder.

Nodes: six physico-chemical properties of the (soft) residue type, each expanded in radial
bases. Edges of the residue kNN graph (on CA): sinusoidal encoding of the residue-number offset
(16), RBF of the CA-CA distance (16 bases, 0-20 A), the neighbour direction in the local frame
(3) and the relative frame orientation as a quaternion (4). Designed residues also get an edge
to the ligand node with only the RBF part filled.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from tertiary.nn.primitives import gaussian

from .graphs import gather_nodes

# Residue order of the type channels: index 0 = masked / unknown, 1..20 = ARNDCQEGHILKMFPSTWYV.
_TYPES = "#ARNDCQEGHILKMFPSTWYV"
_HYDROPATHY = {"#": 0, "I": 4.5, "V": 4.2, "L": 3.8, "F": 2.8, "C": 2.5, "M": 1.9, "A": 1.8, "W": -0.9,
               "G": -0.4, "T": -0.7, "S": -0.8, "Y": -1.3, "P": -1.6, "H": -3.2, "N": -3.5, "D": -3.5,
               "Q": -3.5, "E": -3.5, "K": -3.9, "R": -4.5}  # Kyte-Doolittle
_VOLUME = {"#": 0, "G": 60.1, "A": 88.6, "S": 89.0, "C": 108.5, "D": 111.1, "P": 112.7, "N": 114.1, "T": 116.1,
           "E": 138.4, "V": 140.0, "Q": 143.8, "H": 153.2, "M": 162.9, "I": 166.7, "L": 166.7, "K": 168.6,
           "R": 173.4, "F": 189.9, "Y": 193.6, "W": 227.8}  # A^3
_CHARGE = {"R": 1, "K": 1, "D": -1, "E": -1, "H": 0.1}
_POLAR, _ACCEPTOR, _DONOR = set("RNDQEHKSTY"), set("DENQHSTY"), set("RKWNQHSTY")

RBF_DIM = 16
POSITIONAL_DIM = 16
EDGE_DIM = POSITIONAL_DIM + RBF_DIM + 3 + 4


def _property_table() -> torch.Tensor:
    rows = [
        [_HYDROPATHY[a], _VOLUME[a] / 100, _CHARGE.get(a, 0), float(a in _POLAR), float(a in _ACCEPTOR),
         float(a in _DONOR)]
        for a in _TYPES
    ]
    return torch.tensor(rows, dtype=torch.float32)


def _expand(x: torch.Tensor, lo: float, hi: float, stride: float) -> torch.Tensor:
    count = int((hi - lo) / stride)
    mu = torch.linspace(lo, hi, count, device=x.device)
    return gaussian(-(((x.unsqueeze(-1) - mu) / stride) ** 2))


class ResiduePropertyEmbedding(nn.Module):
    """Soft residue types ``[*, 21]`` -> expanded properties ``[*, 123]`` (no parameters)."""

    dim = 90 + 22 + 8 + 3

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("table", _property_table(), persistent=False)

    def forward(self, types: torch.Tensor) -> torch.Tensor:
        p = types @ self.table
        return torch.cat(
            [
                _expand(p[..., 0], -4.5, 4.5, 0.1),
                _expand(p[..., 1], 0.0, 2.2, 0.1),
                _expand(p[..., 2], -1.0, 1.0, 0.25),
                torch.sigmoid(p[..., 3:] * 6 - 3),
            ],
            dim=-1,
        )


def distance_rbf(d: torch.Tensor) -> torch.Tensor:
    """CA-CA distances ``[*]`` (A) -> ``[*, 16]`` Gaussians on 0..20 A (width 1.25 A)."""
    mu = torch.linspace(0.0, 20.0, RBF_DIM, device=d.device)
    return gaussian(-(((d.unsqueeze(-1) - mu) / (20.0 / RBF_DIM)) ** 2))


def positional_encoding(offset: torch.Tensor) -> torch.Tensor:
    """Residue-number offsets ``[*]`` -> ``[*, 16]`` (cos, sin of 8 frequencies)."""
    freq = torch.exp(
        torch.arange(0, POSITIONAL_DIM, 2, dtype=torch.float32, device=offset.device)
        * -(math.log(10000.0) / POSITIONAL_DIM)
    )
    angles = offset.unsqueeze(-1) * freq
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)


def local_frames(ca: torch.Tensor, res_mask: torch.Tensor) -> torch.Tensor:
    """Frames ``[B, R, 3, 3]`` (rows: bisector, normal, their cross product) from consecutive CA.

    The frame of residue i uses CA(i-1), CA(i), CA(i+1) in file order; the first and last residue
    of each complex (and padding) get a zero matrix, as in the released model.
    """
    u = F.normalize(ca[:, 1:] - ca[:, :-1], dim=-1)  # [B, R-1, 3]
    u2, u1 = u[:, :-1], u[:, 1:]
    n2 = F.normalize(torch.cross(u2, u1, dim=-1), dim=-1)
    o1 = F.normalize(u2 - u1, dim=-1)
    frames = torch.stack([o1, n2, torch.cross(o1, n2, dim=-1)], dim=-2)  # [B, R-2, 3, 3]
    frames = F.pad(frames, (0, 0, 0, 0, 1, 1))
    length = res_mask.sum(-1, keepdim=True)
    idx = torch.arange(ca.shape[1], device=ca.device)[None]
    inner = (idx >= 1) & (idx <= length - 2)
    return frames * inner[..., None, None]


def _quaternions(rot: torch.Tensor) -> torch.Tensor:
    """Rotation matrices ``[*, 3, 3]`` -> unit quaternions ``[*, 4]`` (x, y, z, w)."""
    diag = torch.diagonal(rot, dim1=-2, dim2=-1)
    rxx, ryy, rzz = diag.unbind(-1)
    magnitudes = 0.5 * torch.sqrt(torch.abs(1 + torch.stack([rxx - ryy - rzz, -rxx + ryy - rzz, -rxx - ryy + rzz], -1)))
    signs = torch.sign(
        torch.stack([rot[..., 2, 1] - rot[..., 1, 2], rot[..., 0, 2] - rot[..., 2, 0], rot[..., 1, 0] - rot[..., 0, 1]], -1)
    )
    w = torch.sqrt(F.relu(1 + diag.sum(-1, keepdim=True))) / 2.0
    return F.normalize(torch.cat([signs * magnitudes, w], -1), dim=-1)


def residue_edge_features(
    ca: torch.Tensor, res_mask: torch.Tensor, res_idx: torch.Tensor, neighbours: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Edge features of the residue kNN graph.

    Args:
        ca: ``[B, R, 3]`` CA coordinates the graph is built from (A).
        res_mask: ``[B, R]`` real residues.
        res_idx: ``[B, R]`` residue numbers (PDB numbering; differences are encoded).
        neighbours: ``[B, R, K]`` neighbour indices (centre i -> neighbour j).

    Returns:
        ``features [B, R, K, 39]`` and CA-CA distances ``[B, R, K]``.
    """
    ca_j = gather_nodes(ca, neighbours)
    dist = torch.norm(ca.unsqueeze(2) - ca_j, dim=-1)
    offset = gather_nodes(res_idx.unsqueeze(-1), neighbours).squeeze(-1) - res_idx.unsqueeze(-1)
    frames = local_frames(ca, res_mask)
    frames_j = gather_nodes(frames, neighbours)  # [B, R, K, 3, 3]
    direction = F.normalize((frames_j @ (ca_j - ca.unsqueeze(2)).unsqueeze(-1)).squeeze(-1), dim=-1)
    quat = _quaternions(frames.unsqueeze(2) @ frames_j.transpose(-1, -2))
    return torch.cat([positional_encoding(offset.to(ca.dtype)), distance_rbf(dist), direction, quat], -1), dist


def ligand_edge_features(ca: torch.Tensor, ligand_anchor: torch.Tensor) -> torch.Tensor:
    """Residue -> ligand-node edge features ``[B, R, 39]`` (only the distance RBF is non-zero).

    Args:
        ca: ``[B, R, 3]``.
        ligand_anchor: ``[B, 3]`` ligand node position (the released model uses the SUM of the
            ligand coordinates, not their mean).
    """
    rbf = distance_rbf(torch.norm(ca - ligand_anchor.unsqueeze(1), dim=-1))
    zeros = rbf.new_zeros(*rbf.shape[:-1], POSITIONAL_DIM)
    return torch.cat([zeros, rbf, rbf.new_zeros(*rbf.shape[:-1], 7)], -1)
