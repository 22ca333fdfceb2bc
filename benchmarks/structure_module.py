"""Structure module speed / memory benchmark (tertiary, optionally against OpenFold on the same input).

Times the forward pass of the AlphaFold2 structure module at the published width (c_s 384,
c_z 128, IPA 12 heads x 16, 4 query/key points, 8 value points, 8 shared-weight layers) for
several N_res, and reports median wall / CPU time and peak memory (same measurement as
``evoformer.py``). With ``--openfold PATH`` OpenFold's ``StructureModule`` gets the same weights
(mapped with ``StructureModule.openfold_key_map``) and inputs, its atom14 positions are compared
with tertiary's and time / memory ratios are printed. OpenFold's structure module imports its
data-pipeline helpers, which need ``dm-tree`` and ``modelcif``; when they are not installed, put
stand-ins on ``PYTHONPATH`` (see docs/alphafold.md). OpenFold's code is only measured.

Example::

    python benchmarks/structure_module.py --n-res 128 256 --openfold /tmp/openfold --clock cpu
"""

from __future__ import annotations

import argparse
import importlib
import json
import platform
import sys
from pathlib import Path

import torch

from tertiary.models.alphafold.config import StructureModuleConfig
from tertiary.models.alphafold.structure import StructureModule

sys.path.insert(0, str(Path(__file__).resolve().parent))
from evoformer import import_openfold, matmul_peak, measure, randomise  # noqa: E402


def build_openfold(path: Path, cfg: StructureModuleConfig, ours: StructureModule) -> torch.nn.Module:
    import_openfold(path)
    module = importlib.import_module("openfold.model.structure_module")
    of = module.StructureModule(
        c_s=cfg.c_s, c_z=cfg.c_z, c_ipa=cfg.c_ipa, c_resnet=cfg.c_resnet, no_heads_ipa=cfg.no_heads_ipa,
        no_qk_points=cfg.no_qk_points, no_v_points=cfg.no_v_points, dropout_rate=0.0, no_blocks=cfg.no_blocks,
        no_transition_layers=cfg.no_transition_layers, no_resnet_blocks=cfg.no_resnet_blocks,
        no_angles=cfg.no_angles, trans_scale_factor=cfg.trans_scale_factor, epsilon=cfg.epsilon, inf=cfg.inf,
    )  # fmt: skip
    key_map = ours.openfold_key_map(openfold_prefix="")
    mine = ours.state_dict()
    of.load_state_dict({k: mine[key_map[k]] for k in of.state_dict()})
    return of


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n-res", type=int, nargs="+", default=[64, 128, 256, 512])
    p.add_argument("--chunk-size", type=int, default=64, help="IPA chunk size of the chunked runs")
    p.add_argument("--modes", nargs="+", choices=["plain", "chunked"], default=["plain", "chunked"])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--clock", choices=["wall", "cpu"], default="wall")
    p.add_argument("--openfold", type=Path, help="OpenFold source checkout to compare with")
    p.add_argument("--json", type=Path, help="write results here")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    cfg = StructureModuleConfig()
    ours = StructureModule(cfg).eval()
    randomise(ours, 0)
    theirs = build_openfold(args.openfold, cfg, ours).to(device).eval() if args.openfold else None
    ours = ours.to(device)
    peak = matmul_peak(device, torch.float32, args.clock)
    env = {"device": str(device), "device_name": torch.cuda.get_device_name(device) if device.type == "cuda"
           else platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
           "torch": torch.__version__, "matmul_peak_tflops": peak / 1e12, "clock": args.clock}  # fmt: skip
    print(json.dumps(env))
    print(f"{'impl':<10} {'N_res':>5} {'chunk':>5} {'wall_ms':>10} {'cpu_ms':>10} {'peak_MiB':>9} {'maxdiff_A':>9}")
    rows = []
    for n in args.n_res:
        g = torch.Generator().manual_seed(n)
        s = torch.randn(n, cfg.c_s, generator=g).to(device)
        z = torch.randn(n, n, cfg.c_z, generator=g).to(device)
        aatype = torch.randint(0, 20, (n,), generator=g).to(device)
        mask = torch.ones(n, device=device)
        reference = None
        chunks = [c for c, mode in ((None, "plain"), (args.chunk_size, "chunked")) if mode in args.modes]
        for chunk in chunks:
            impls = [("tertiary", lambda c=chunk: ours(s, z, aatype, mask=mask, chunk_size=c)["positions"])]
            if theirs is not None and chunk is None:  # OpenFold's structure module has no chunking
                impls.append(("openfold", lambda: theirs({"single": s, "pair": z}, aatype, mask=mask)["positions"]))
            for name, fn in impls:
                with torch.no_grad():
                    out, stats = measure(fn, device, args.warmup, args.repeats)
                diff = 0.0 if reference is None else float((out - reference).abs().max())
                reference = out if reference is None else reference
                rows.append({"impl": name, "n_res": n, "chunk_size": chunk, **stats, "max_abs_diff_A": diff})
                print(f"{name:<10} {n:>5} {str(chunk):>5} {stats['seconds'] * 1e3:>10.1f} "
                      f"{stats['cpu_seconds'] * 1e3:>10.1f} {stats['peak_bytes'] / 2**20:>9.0f} {diff:>9.1e}", flush=True)  # fmt: skip
    key = "cpu_seconds" if args.clock == "cpu" else "seconds"
    for r in rows:
        mine = next((x for x in rows if x["impl"] == "tertiary" and x["n_res"] == r["n_res"] and x["chunk_size"] is None), None)
        if r["impl"] == "openfold" and mine:
            print(f"OpenFold / tertiary  N_res {r['n_res']:>4}: time x{r[key] / mine[key]:.2f} ({args.clock}), "
                  f"peak memory x{r['peak_bytes'] / max(mine['peak_bytes'], 1.0):.2f}")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps({"env": env, "results": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
