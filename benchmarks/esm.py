"""Forward time of tertiary's ESM-2 against fair-esm on the same weights and batch.

Both models are built in this process with the same seeded random weights (fair-esm receives
tertiary's weights through ``fair_state_dict``), run on the same padded batch of random
sequences, and timed alternately (median of ``--repeats`` after ``--warmup`` runs). Prints both
times, the speed ratio and the largest absolute difference of the outputs at non-pad positions,
and writes them as JSON with ``--json``.

fair-esm is a benchmark-only dependency: ``pip install fair-esm`` (or put its source on
``PYTHONPATH``). Example::

    python benchmarks/esm.py --preset esm2_t12_35M_UR50D --lengths 250 320 400 480 --threads 2
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

from tertiary.models.esm import ESM2, Alphabet, ESMConfig
from tertiary.models.esm.weights import fair_state_dict


def _fair_model(config: ESMConfig, state: dict[str, torch.Tensor]) -> torch.nn.Module:
    # this file is itself called esm.py: keep its folder off the path so "import esm" finds fair-esm
    here = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != here]
    try:
        import esm  # fair-esm
        import esm.model.esm2
    except ImportError:
        sys.exit("fair-esm is not installed: pip install fair-esm (benchmark-only dependency)")
    model = esm.model.esm2.ESM2(
        num_layers=config.num_layers,
        embed_dim=config.embed_dim,
        attention_heads=config.attention_heads,
        alphabet=esm.data.Alphabet.from_architecture("ESM-1b"),
        token_dropout=config.token_dropout,
    )
    model.load_state_dict(state, strict=True)
    return model.eval()


def _random_batch(lengths: list[int], seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    letters = "LAGVSERTIDPKQNFYMHWC"
    seqs = ["".join(letters[i] for i in torch.randint(len(letters), (n,), generator=gen).tolist()) for n in lengths]
    return Alphabet().batch(seqs)


def _time(fn, repeats: int) -> list[float]:  # type: ignore[no-untyped-def]
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="esm2_t12_35M_UR50D", choices=ESMConfig.presets())
    parser.add_argument("--lengths", type=int, nargs="+", default=[250, 320, 400, 480], help="residues per sequence")
    parser.add_argument("--contacts", action="store_true", help="also return attentions + contacts")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None, help="write results here")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    config = ESMConfig.preset(args.preset)
    ours = ESM2(config, seed=args.seed).eval()
    fair = _fair_model(config, {k: v.clone() for k, v in fair_state_dict(ours).items()})
    tokens = _random_batch(args.lengths, args.seed)
    last = config.num_layers
    kwargs = {"repr_layers": [last], "return_contacts": args.contacts}

    with torch.inference_mode():
        run_ours = lambda: ours(tokens, **kwargs)  # noqa: E731
        run_fair = lambda: fair(tokens, **kwargs)  # noqa: E731
        for _ in range(args.warmup):
            run_ours(), run_fair()
        t_ours, t_fair = [], []
        for _ in range(args.repeats):  # alternate so that machine load hits both alike
            t_fair += _time(run_fair, 1)
            t_ours += _time(run_ours, 1)
        a, b = run_ours(), run_fair()

    valid = tokens != config.padding_idx
    diffs = {
        "logits": (a["logits"] - b["logits"])[valid].abs().max().item(),
        f"representations_{last}": (a["representations"][last] - b["representations"][last])[valid].abs().max().item(),
    }
    if args.contacts:
        diffs["attentions"] = (a["attentions"] - b["attentions"]).abs().max().item()
        diffs["contacts"] = max(
            (a["contacts"][i, :n, :n] - b["contacts"][i, :n, :n]).abs().max().item() for i, n in enumerate(args.lengths)
        )
    med_ours, med_fair = statistics.median(t_ours), statistics.median(t_fair)
    result = {
        "preset": args.preset,
        "batch_lengths": args.lengths,
        "contacts": args.contacts,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "fair_esm_s": med_fair,
        "tertiary_s": med_ours,
        "speedup": med_fair / med_ours,
        "all_fair_esm_s": t_fair,
        "all_tertiary_s": t_ours,
        "max_abs_diff": diffs,
    }
    print(f"ESM-2 {args.preset}, batch {args.lengths}, contacts={args.contacts}, threads={result['threads']}")
    print(f"  fair-esm  {med_fair:8.3f} s   (median of {args.repeats})")
    print(f"  tertiary  {med_ours:8.3f} s")
    print(f"  speed-up  {result['speedup']:8.2f}x")
    for k, v in diffs.items():
        print(f"  max |diff| {k}: {v:.2e}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=1)
    return result


if __name__ == "__main__":
    main()
