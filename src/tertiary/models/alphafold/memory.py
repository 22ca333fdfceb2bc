"""Rough peak-memory estimate of one AlphaFold2 forward pass, to warn before running out of memory.

The estimate counts the persistent activations (MSA, extra MSA and pair representations with a
few working copies) plus the largest transient tensor of any module (attention logits, triangle
projections, outer products), each for the given ``chunk_size``. It is an order-of-magnitude
guide (within ~2x of measured peaks for the Evoformer benchmark), not an allocator model.
"""

from __future__ import annotations

from tertiary.models.alphafold.config import AlphaFoldConfig, StackConfig, TemplateConfig

CHUNK_CANDIDATES = (256, 128, 64, 32, 16, 8, 4, 1)


def _c(n: int, chunk: int | None) -> int:
    return n if chunk is None else min(n, chunk)


def _stack_transient(cfg: StackConfig, n_res: int, n_seq: int, chunk: int | None, global_col: bool) -> int:
    """Elements of the largest temporary tensor inside one block of a stack."""
    n2 = n_res * n_res
    row_att = _c(n_seq, chunk) * cfg.no_heads_msa * n2 * 2  # logits + combined bias
    col_att = 0 if global_col else _c(n_res, chunk) * cfg.no_heads_msa * n_seq * n_seq * 2
    tri_att = _c(n_res, chunk) * cfg.no_heads_pair * n2 * 2
    tri_mul = 3 * n2 * cfg.c_hidden_mul + _c(n_res, chunk) * n_res * (cfg.c_hidden_mul + 2 * cfg.c_z)
    opm = _c(n_res, chunk) * n_res * cfg.c_hidden_opm**2 * 2
    transition = _c(n_res, chunk) * n_res * cfg.c_z * cfg.transition_n * 2
    msa_transition = _c(n_seq, chunk) * n_res * cfg.c_m * cfg.transition_n * 2
    return max(row_att, col_att, tri_att, tri_mul, opm, transition, msa_transition)


def _template_elements(cfg: TemplateConfig, n_res: int, n_templ: int, chunk: int | None) -> tuple[int, int]:
    """(persistent, transient) elements of the template embedding (templates run one at a time)."""
    n2 = n_res * n_res
    persistent = n_templ * n2 * cfg.c_t + n2 * cfg.pair_c_in
    tri_att = _c(n_res, chunk) * cfg.no_heads * n2 * 2
    tri_mul = 3 * n2 * cfg.c_hidden_tri_mul + _c(n_res, chunk) * n_res * (cfg.c_hidden_tri_mul + 2 * cfg.c_t)
    transition = _c(n_res, chunk) * n_res * cfg.c_t * cfg.pair_transition_n * 2
    pointwise = _c(n_res, chunk) * n_res * n_templ * cfg.no_heads_pointwise * cfg.c_hidden_pointwise * 3
    return persistent, max(tri_att, tri_mul, transition, pointwise)


def estimate_peak_bytes(
    config: AlphaFoldConfig,
    n_res: int,
    n_seq: int,
    n_extra: int,
    chunk_size: int | None = None,
    bytes_per_element: int = 4,
    n_params: int | None = None,
    n_templates: int | None = None,
) -> int:
    """Approximate peak bytes of an inference forward pass (``n_seq`` cluster rows, ``n_extra``
    extra rows, ``n_templates`` templates for template models, default ``data.max_templates``)."""
    c = config
    persistent = 6 * n_res * n_res * c.c_z + 4 * n_seq * n_res * c.c_m + 3 * n_extra * n_res * c.c_e
    transient = max(
        _stack_transient(c.evoformer, n_res, n_seq, chunk_size, global_col=False),
        _stack_transient(c.extra_msa, n_res, n_extra, chunk_size, global_col=True),
    )
    if c.template.enabled:
        n_templ = c.data.max_templates if n_templates is None else n_templates
        t_persistent, t_transient = _template_elements(c.template, n_res, n_templ, chunk_size)
        persistent += t_persistent
        transient = max(transient, t_transient)
    params = n_params if n_params is not None else 95_000_000
    return (persistent + transient) * bytes_per_element + params * 4


def suggest_chunk_size(
    config: AlphaFoldConfig, n_res: int, n_seq: int, n_extra: int, available_bytes: int, bytes_per_element: int = 4
) -> int | None:
    """Largest chunk size whose estimate fits in 80% of ``available_bytes`` (None if unchunked fits)."""
    budget = 0.8 * available_bytes
    if estimate_peak_bytes(config, n_res, n_seq, n_extra, None, bytes_per_element) <= budget:
        return None
    for chunk in CHUNK_CANDIDATES:
        if estimate_peak_bytes(config, n_res, n_seq, n_extra, chunk, bytes_per_element) <= budget:
            return chunk
    return CHUNK_CANDIDATES[-1]
