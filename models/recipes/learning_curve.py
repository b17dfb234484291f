"""Fit a learning curve and say how far a target perplexity is (issue #27's honest answer when
2 cores cannot train the Brown LM to the trigram).

Reads the per-epoch rows that train_brown_lm.py appends to its TRAINING.md (steps, validation
perplexity, wall minutes) and fits

    ppl(n) = a + b * n^(-c)        n = training tokens seen

the usual saturating power law of language-model learning curves: for each asymptote a on a grid
below the lowest perplexity, log(ppl - a) is linear in log n; the a with the least squared error in
log ppl wins. Leaving each point out in turn gives the spread. A constant learning rate (a long
--budget-min stopped early) keeps the curve free of the schedule's final descent.

    /usr/bin/python3 models/recipes/learning_curve.py RUN_DIR/TRAINING.md --tokens-per-step 4096 \
        --target 196 [--run 20261205-1550] [--skip 1] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import math

import numpy as np


def read_rows(path: str, run: str | None):
    rows = []
    for line in open(path):
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 13 or not cells[2].isdigit():
            continue
        if run and cells[0] != run:
            continue
        try:
            rows.append({"run": cells[0], "epoch": cells[1], "steps": int(cells[2]),
                         "val_ppl": float(cells[5]), "wall_min": float(cells[12])})
        except ValueError:  # hand-written rows ("see below", "-")
            continue
    return rows


def fit(n: np.ndarray, ppl: np.ndarray):
    """Least squares in log ppl over a grid of asymptotes; returns (a, b, c, rmse)."""
    best = None
    lo = float(ppl.min())
    for a in np.linspace(0.0, lo * 0.995, 400):
        X = np.stack([np.ones_like(n), -np.log(n)], 1)
        coef, *_ = np.linalg.lstsq(X, np.log(ppl - a), rcond=None)
        pred = a + np.exp(coef[0]) * n ** (-coef[1])
        if coef[1] <= 0:
            continue
        err = float(np.sqrt(np.mean((np.log(pred) - np.log(ppl)) ** 2)))
        if best is None or err < best[3]:
            best = (float(a), float(np.exp(coef[0])), float(coef[1]), err)
    return best


def tokens_to(target: float, a: float, b: float, c: float) -> float:
    return math.inf if target <= a else (b / (target - a)) ** (1.0 / c)


def finite(v):
    """JSON has no infinity: a target never reached is written as null."""
    if isinstance(v, dict):
        return {k: finite(x) for k, x in v.items()}
    if isinstance(v, list):
        return [finite(x) for x in v]
    if isinstance(v, (float, np.floating)):
        return float(v) if math.isfinite(v) else None
    return v


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("training_md")
    ap.add_argument("--tokens-per-step", type=int, required=True, help="context x batch of the run")
    ap.add_argument("--target", type=float, required=True, help="validation perplexity to reach")
    ap.add_argument("--run", default=None, help="run id (first column); default: every row")
    ap.add_argument("--skip", type=int, default=0, help="leave out the first N rows (warm-up transient)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    rows = read_rows(args.training_md, args.run)[args.skip:]
    if len(rows) < 4:
        raise SystemExit(f"{len(rows)} rows: a three-parameter fit needs at least 4")
    n = np.array([r["steps"] * args.tokens_per_step for r in rows], dtype=float)
    ppl = np.array([r["val_ppl"] for r in rows])
    a, b, c, rmse = fit(n, ppl)
    rate = n[-1] / rows[-1]["wall_min"]  # tokens per wall minute on this machine
    need = tokens_to(args.target, a, b, c)
    loo = []
    for i in range(len(rows)):
        keep = np.arange(len(rows)) != i
        la, lb, lc, _ = fit(n[keep], ppl[keep])
        loo.append({"left_out": i, "a": la, "tokens": tokens_to(args.target, la, lb, lc)})
    out = {"rows": len(rows), "fit": {"a": a, "b": b, "c": c, "rmse_log": rmse},
           "last": {"tokens": n[-1], "val_ppl": float(ppl[-1]), "wall_min": rows[-1]["wall_min"]},
           "target": args.target, "tokens_to_target": need,
           "wall_hours_to_target_here": need / rate / 60 if math.isfinite(need) else math.inf,
           "leave_one_out": loo}
    print(f"{len(rows)} points, last {ppl[-1]:.1f} after {n[-1] / 1e6:.2f}M tokens ({rows[-1]['wall_min']:.0f} min)")
    print(f"fit ppl = {a:.1f} + {b:.3g} n^-{c:.3f}   (rms error {rmse:.4f} in log ppl)")
    print(f"target {args.target}: " + (f"{need / 1e6:.1f}M tokens, {out['wall_hours_to_target_here']:.1f} h at this run's rate"
                                       if math.isfinite(need) else f"not reached (asymptote {a:.1f} >= target)"))
    spread = [x["a"] for x in loo]
    print(f"leave-one-out asymptote {min(spread):.1f} .. {max(spread):.1f}; tokens to target "
          + ", ".join("never" if not math.isfinite(x["tokens"]) else f"{x['tokens'] / 1e6:.0f}M" for x in loo))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(finite(out), fh, indent=1)


if __name__ == "__main__":
    main()
