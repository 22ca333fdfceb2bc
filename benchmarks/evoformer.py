"""Evoformer stack speed / memory benchmark (tertiary, optionally against OpenFold on the same input).

Times the forward pass of an Evoformer stack at AlphaFold2's real width (c_m 256, c_z 128,
8 MSA heads x 32, 4 pair heads x 32, triangle-multiplication hidden 128, OPM hidden 32) for
several N_res, unchunked and chunked, and reports:

- median wall time and process CPU time over ``--repeats`` runs (after ``--warmup``; the first,
  untimed call also gives the output and the peak memory), synchronised on CUDA;
- peak memory above the inputs and weights: ``torch.cuda.max_memory_allocated`` on CUDA; on
  CPU the peak of live tensor storage counted by a ``TorchDispatchMode`` in a separate, untimed
  run (RSS is useless there: the allocator reuses freed pages);
- FLOP efficiency: matmul FLOPs counted analytically for the stack (see ``stack_flops``)
  divided by the time, relative to a measured dense-matmul peak on the same device / dtype.

With ``--openfold PATH`` (a source checkout of github.com/aqlaboratory/openfold; its CUDA
extension is not needed) OpenFold's EvoformerStack is built with the same dimensions, given
the same weights (converted by name), run on the same inputs in the same process, checked for
agreement with tertiary's output, and timed; ratios OpenFold time / tertiary time are printed.
OpenFold runs its pure-PyTorch path (``inplace_safe=False``; no DeepSpeed / LMA / FlashAttention).

Example (results as JSON in evoformer.json)::

    python benchmarks/evoformer.py --n-res 64 128 256 512 --chunk-size 64 --device cuda \\
        --openfold /tmp/openfold --json evoformer.json
"""

from __future__ import annotations

import argparse
import importlib
import json
import platform
import statistics
import sys
import time
import types
import weakref
from collections.abc import Callable
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from tertiary.models.alphafold.config import StackConfig
from tertiary.models.alphafold.evoformer import EvoformerStack
from tertiary.models.alphafold.weights import OPENFOLD_RENAMES

C_S = 384


def stack_cfg(args: argparse.Namespace) -> StackConfig:
    return StackConfig(
        no_blocks=args.blocks, c_m=args.c_m, c_z=args.c_z, c_hidden_msa_att=32, c_hidden_opm=32,
        c_hidden_mul=128, c_hidden_pair_att=32, no_heads_msa=8, no_heads_pair=4, transition_n=4,
    )  # fmt: skip


def stack_flops(cfg: StackConfig, n_res: int, n_seq: int) -> float:
    """Matmul / einsum FLOPs (2 per multiply-add) of one forward pass of the stack."""
    n, s, cm, cz = n_res, n_seq, cfg.c_m, cfg.c_z
    hm, hp = cfg.no_heads_msa * cfg.c_hidden_msa_att, cfg.no_heads_pair * cfg.c_hidden_pair_att
    row = 2 * s * n * cm * hm * 5 + 2 * n * n * cz * cfg.no_heads_msa + 2 * 2 * s * n * n * hm
    col = 2 * s * n * cm * hm * 5 + 2 * 2 * n * s * s * hm
    msa_tr = 2 * 2 * s * n * cm * cm * cfg.transition_n
    c = cfg.c_hidden_opm
    opm = 2 * 2 * s * n * cm * c + 2 * n * n * s * c * c + 2 * n * n * c * c * cz
    tri_mul = 2 * (2 * n * n * cz * cfg.c_hidden_mul * 5 + 2 * n * n * cz * cz + 2 * n**3 * cfg.c_hidden_mul)
    tri_att = 2 * (2 * n * n * cz * hp * 5 + 2 * n * n * cz * cfg.no_heads_pair + 2 * 2 * n**3 * hp)
    pair_tr = 2 * 2 * n * n * cz * cz * cfg.transition_n
    return float(cfg.no_blocks * (row + col + msa_tr + opm + tri_mul + tri_att + pair_tr) + 2 * n * cm * C_S)


def matmul_peak(device: torch.device, dtype: torch.dtype, clock: str = "wall") -> float:
    """Measured dense matmul throughput (FLOP/s) on this device and dtype (best of 5; ``clock``
    ``cpu`` divides by process CPU time instead of wall time)."""
    size = 8192 if device.type == "cuda" else 1024
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    best = float("inf")
    for _ in range(5):
        _sync(device)
        t, c = time.perf_counter(), time.process_time()
        for _ in range(3):
            a @ b
        _sync(device)
        spent = (time.process_time() - c) if clock == "cpu" else (time.perf_counter() - t)
        best = min(best, spent / 3)
    return 2 * size**3 / best


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class LiveTensorBytes(TorchDispatchMode):
    """Counts the bytes of tensor storages created by operators while they are alive; ``peak``."""

    def __init__(self) -> None:
        super().__init__()
        self.live = 0
        self.peak = 0
        self._refs: dict[int, list[int]] = {}  # storage pointer -> [tensors alive, bytes]

    def _release(self, key: int) -> None:
        entry = self._refs.get(key)
        if entry is None:
            return
        entry[0] -= 1
        if entry[0] == 0:
            self.live -= entry[1]
            del self._refs[key]

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor) and t.device.type == "cpu":
                storage = t.untyped_storage()
                key = storage.data_ptr()
                if key not in self._refs:
                    self._refs[key] = [0, storage.nbytes()]
                    self.live += storage.nbytes()
                    self.peak = max(self.peak, self.live)
                self._refs[key][0] += 1
                weakref.finalize(t, self._release, key)
        return out


def measure(
    fn: Callable[[], torch.Tensor], device: torch.device, warmup: int, repeats: int
) -> tuple[torch.Tensor, dict[str, float]]:
    """Run ``fn`` once (output + peak memory), ``warmup - 1`` more times, then ``repeats`` timed
    calls in all (``warmup=0``: the first call is one of them; on CPU it runs under the
    live-tensor counter, whose per-operator overhead is negligible at these sizes).

    Returns the output of the first call and ``seconds`` (median wall), ``min_seconds``,
    ``cpu_seconds`` (median process CPU time: on a shared CPU it is far less noisy than wall
    time) and ``peak_bytes`` above the pre-call level (CUDA: max allocated; CPU: peak of live
    tensor storage created inside ``fn``, counted in the first call).
    """
    t, c = time.perf_counter(), time.process_time()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        out = fn()
        _sync(device)
        peak = float(torch.cuda.max_memory_allocated(device) - base)
    else:
        with LiveTensorBytes() as counter:
            out = fn()
        peak = float(counter.peak)
    wall, cpu = [], []
    if warmup == 0:  # the first call is timed too (the CPU counter's per-operator cost is small here)
        wall.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    for _ in range(max(0, warmup - 1)):
        fn()
    _sync(device)
    for _ in range(repeats - len(wall)):
        t, c = time.perf_counter(), time.process_time()
        fn()
        _sync(device)
        wall.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    stats = {"seconds": statistics.median(wall), "min_seconds": min(wall),
             "cpu_seconds": statistics.median(cpu), "peak_bytes": peak}  # fmt: skip
    return out, stats


def randomise(module: torch.nn.Module, seed: int) -> None:
    """Non-zero weights everywhere (AlphaFold's zero 'final' inits would make updates vanish)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(module.named_parameters()):
            if name.endswith("weight") and p.dim() == 1:  # LayerNorm scale
                p.copy_(1 + 0.1 * torch.randn(p.shape, generator=g))
            elif p.dim() >= 2:
                p.copy_(torch.randn(p.shape, generator=g) / p.shape[-1] ** 0.5)
            else:
                p.copy_(0.05 * torch.randn(p.shape, generator=g))


def import_openfold(path: Path) -> types.ModuleType:
    """OpenFold's evoformer module from a source checkout, without its package __init__ (which
    pulls the data pipeline's dependencies) and without its CUDA attention extension."""
    pkg = types.ModuleType("openfold")
    pkg.__path__ = [str(path / "openfold")]  # type: ignore[attr-defined]
    sys.modules.setdefault("openfold", pkg)
    if "attn_core_inplace_cuda" not in sys.modules:  # only used on OpenFold's inplace (CUDA) path
        stub = types.ModuleType("attn_core_inplace_cuda")

        def forward_(t: torch.Tensor, rows: int, cols: int) -> None:
            t.copy_(torch.softmax(t, dim=-1))

        stub.forward_ = forward_  # type: ignore[attr-defined]
        sys.modules["attn_core_inplace_cuda"] = stub
    return importlib.import_module("openfold.model.evoformer")


def build_openfold(module: types.ModuleType, cfg: StackConfig, tertiary_stack: EvoformerStack) -> torch.nn.Module:
    of = module.EvoformerStack(
        c_m=cfg.c_m, c_z=cfg.c_z, c_hidden_msa_att=cfg.c_hidden_msa_att, c_hidden_opm=cfg.c_hidden_opm,
        c_hidden_mul=cfg.c_hidden_mul, c_hidden_pair_att=cfg.c_hidden_pair_att, c_s=C_S,
        no_heads_msa=cfg.no_heads_msa, no_heads_pair=cfg.no_heads_pair, no_blocks=cfg.no_blocks,
        transition_n=cfg.transition_n, msa_dropout=0.0, pair_dropout=0.0, no_column_attention=False,
        opm_first=False, fuse_projection_weights=False, blocks_per_ckpt=None, inf=cfg.inf, eps=cfg.eps,
    )  # fmt: skip
    ours = tertiary_stack.state_dict()
    theirs = {}
    for key in of.state_dict():
        mine = key
        for pattern, repl in OPENFOLD_RENAMES:
            mine = pattern.sub(repl, mine)
        theirs[key] = ours[mine]
    of.load_state_dict(theirs)
    return of


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n-res", type=int, nargs="+", default=[64, 128, 256, 512])
    p.add_argument("--n-seq", type=int, default=32)
    p.add_argument("--blocks", type=int, default=4)
    p.add_argument("--c-m", type=int, default=256)
    p.add_argument("--c-z", type=int, default=128)
    p.add_argument("--chunk-size", type=int, default=64, help="chunk size of the chunked runs")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32",
                   help="bfloat16 = autocast around the forward pass")  # fmt: skip
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--openfold", type=Path, help="OpenFold source checkout to compare with")
    p.add_argument("--skip-unchunked-above", type=int, default=10**9,
                   help="do not run unchunked variants above this N_res (memory)")  # fmt: skip
    p.add_argument("--modes", nargs="+", choices=["plain", "chunked"], default=["plain", "chunked"])
    p.add_argument("--openfold-max-n-res", type=int, default=10**9, help="run OpenFold only up to this N_res")
    p.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                   help="time used for TFLOP/s and ratios: wall (default) or process CPU time "
                        "(use 'cpu' on a shared machine; threads' CPU time is summed)")  # fmt: skip
    p.add_argument("--json", type=Path, help="write results here")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dtype = torch.bfloat16 if args.dtype == "bfloat16" else torch.float32
    cfg = stack_cfg(args)
    torch.manual_seed(0)
    ours = EvoformerStack(cfg, C_S).eval()
    randomise(ours, 0)
    of_module = import_openfold(args.openfold) if args.openfold else None
    theirs = build_openfold(of_module, cfg, ours).to(device).eval() if of_module else None
    ours = ours.to(device)
    peak = matmul_peak(device, dtype, args.clock)
    env = {"device": str(device), "device_name": torch.cuda.get_device_name(device) if device.type == "cuda"
           else platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
           "torch": torch.__version__, "dtype": args.dtype, "matmul_peak_tflops": peak / 1e12, "clock": args.clock}  # fmt: skip
    print(json.dumps(env))
    rows = []
    header = (f"{'impl':<10} {'N_res':>5} {'chunk':>5} {'wall_ms':>10} {'cpu_ms':>10} {'peak_MiB':>9} {'TFLOP/s':>8} "
              f"{'eff%':>6} {'maxdiff':>8}")  # fmt: skip
    print(header)
    for n in args.n_res:
        g = torch.Generator().manual_seed(n)
        m = torch.randn(args.n_seq, n, cfg.c_m, generator=g).to(device)
        z = torch.randn(n, n, cfg.c_z, generator=g).to(device)
        msa_mask = torch.ones(args.n_seq, n, device=device)
        pair_mask = torch.ones(n, n, device=device)
        flops = stack_flops(cfg, n, args.n_seq)
        reference: torch.Tensor | None = None
        for chunk in (None, args.chunk_size):
            if (chunk is None and (n > args.skip_unchunked_above or "plain" not in args.modes)) or (
                chunk is not None and "chunked" not in args.modes
            ):
                continue
            impls: list[tuple[str, Callable[[], torch.Tensor]]] = [
                ("tertiary", lambda c=chunk: ours(m, z, msa_mask, pair_mask, chunk_size=c)[1]),
            ]
            if theirs is not None and n <= args.openfold_max_n_res:
                impls.append(("openfold", lambda c=chunk: theirs(
                    m, z, msa_mask, pair_mask, chunk_size=c, inplace_safe=False, _mask_trans=False)[1]))
            for name, fn in impls:
                with torch.no_grad(), torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
                    out, stats = measure(fn, device, args.warmup, args.repeats)
                    out = out.float()
                    if reference is None:
                        reference = out
                    diff = float((out - reference).abs().max())
                    del out
                seconds = stats["cpu_seconds"] if args.clock == "cpu" else stats["seconds"]
                row = {"impl": name, "n_res": n, "chunk_size": chunk, **stats, "clock": args.clock,
                       "flops": flops, "tflops": flops / seconds / 1e12, "efficiency": flops / seconds / peak,
                       "max_abs_diff_vs_tertiary_unchunked": diff}  # fmt: skip
                rows.append(row)
                print(f"{name:<10} {n:>5} {str(chunk):>5} {stats['seconds'] * 1e3:>10.1f} {stats['cpu_seconds'] * 1e3:>10.1f} "
                      f"{stats['peak_bytes'] / 2**20:>9.0f} {row['tflops']:>8.3f} {100 * row['efficiency']:>6.1f} {diff:>8.1e}",
                      flush=True)  # fmt: skip
    ratios = []
    for r in rows:
        if r["impl"] != "openfold":
            continue
        mine = next((x for x in rows if x["impl"] == "tertiary" and x["n_res"] == r["n_res"]
                     and x["chunk_size"] == r["chunk_size"]), None)  # fmt: skip
        if mine:
            ratios.append({"n_res": r["n_res"], "chunk_size": r["chunk_size"],
                           "speedup": r["seconds"] / mine["seconds"],
                           "speedup_min": r["min_seconds"] / mine["min_seconds"],
                           "speedup_cpu": r["cpu_seconds"] / mine["cpu_seconds"],
                           "memory_ratio": r["peak_bytes"] / max(mine["peak_bytes"], 1.0)})  # fmt: skip
    for q in ratios:
        print(f"OpenFold / tertiary  N_res {q['n_res']:>4} chunk {str(q['chunk_size']):>4}: "
              f"wall time x{q['speedup']:.2f} (median) x{q['speedup_min']:.2f} (min), CPU time x{q['speedup_cpu']:.2f}, "
              f"peak memory x{q['memory_ratio']:.2f}")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps({"env": env, "config": vars(cfg), "args": {k: str(v) for k, v in vars(args).items()},
                                         "results": rows, "ratios": ratios}, indent=1))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
