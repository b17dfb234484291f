"""Language-model half of the PyTorch side of `deq-serve bench compare` (bench_torch.py
dispatches here when the manifest's task is "language-model"; not run by hand).

Builds the recipe's own modules (train_brown_lm.py: Inject, Cell, Head) and loads the
bundle's weights from its ONNX graphs. The graphs keep the LayerNorm and bias names; the
Linear weights are stored transposed under anonymous names (onnx::MatMul_k), so they are
matched to the modules in the order the graph first uses them, which is the order of
the forward pass, and every shape is checked. The tied embedding is stored three times
(inject's table, and the head's shortlist and tail halves, transposed; fp16 in the
shipped bundle): the copies must be equal, else loading stops.

At start-up the parity cases of parity.json are run with parity.json's own solver
settings (as the exporter made them from the trained checkpoint); loading stops when the
target log-probabilities differ by more than the manifest's parity atol, so a benchmark
never runs on mis-loaded weights.

Commands (JSON lines, see bench_torch.py):
  {"cmd": "run", "batch": B, "threads": T, "ids": "<int32 file>", "tokens": N,
   "context": C, "stride": S, "bos": id}
    -> {"ms_per_sample": ms per window, "windows": W, "nfe": [..W], "logprobs": [..N]}

Windows are the recipe's windows_plan over the first N ids (the sliding windows of
src/pipelines/text-scoring.ts); logprobs[i] is log p(id i) from the window that scores
it. The head computes what the bundle's head graph computes for target_logprobs (the
full two-level log-softmax, then the targets' entries), not the recipe's training
shortcut that skips the tail softmax, so both sides do the same work.
"""
from __future__ import annotations

import json
import os
import sys
import time

import numpy as np
import onnx
from onnx import numpy_helper
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from train_brown_lm import Cell, Head, Inject, windows_plan  # noqa: E402
from deq import solve  # noqa: E402

PARITY_RESTART = 10.0  # as the exporter's parity solve and deq-serve's restart guard


def graph_weights(path):
    """(named initializers, anonymous MatMul weights in order of first use by a node)."""
    g = onnx.load(path).graph
    inits = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    # fp16-stored initializers feed a Cast whose output carries the original name
    alias = {n.output[0]: n.input[0] for n in g.node if n.op_type == "Cast" and n.input[0] in inits}
    named = {}
    for k, v in inits.items():
        named[k] = torch.from_numpy(v.astype(np.float32))
    for out, src in alias.items():
        named[out] = named[src]
    order = []
    for n in g.node:
        for i in n.input:
            if n.op_type == "MatMul" and i.startswith("onnx::MatMul_") and i in named and i not in order:
                order.append(i)
    return named, [named[k] for k in order]


def copy(param, value, what):
    if tuple(param.shape) != tuple(value.shape):
        raise SystemExit(f"bench_torch_lm: {what}: graph has shape {tuple(value.shape)}, module wants {tuple(param.shape)}")
    with torch.no_grad():
        param.copy_(value)


def build(bundle, manifest):
    inj, inj_mm = graph_weights(os.path.join(bundle, "inject.onnx"))
    cel, cel_mm = graph_weights(os.path.join(bundle, "cell.onnx"))
    hed, hed_mm = graph_weights(os.path.join(bundle, "head.onnx"))
    V, de = inj["emb.weight"].shape
    context, d = inj["pos"].shape
    ff = cel["ff1.bias"].shape[0]
    heads = heads_from_command(manifest)

    inject = Inject(V, de, d, context)
    copy(inject.emb.weight, inj["emb.weight"], "inject emb.weight")
    copy(inject.pos, inj["pos"], "inject pos")
    if len(inj_mm) != 1:
        raise SystemExit(f"bench_torch_lm: inject graph has {len(inj_mm)} MatMul weights, expected 1 (inp)")
    copy(inject.inp.weight, inj_mm[0].t(), "inject inp.weight")

    cell = Cell(d, heads, ff)
    # forward order of the cell's Linear layers: qkv, proj, ff1, ff2
    linears = ("qkv", "proj", "ff1", "ff2")
    if len(cel_mm) != len(linears):
        raise SystemExit(f"bench_torch_lm: cell graph has {len(cel_mm)} MatMul weights, expected {len(linears)}")
    weights = dict(zip((f"{n}.weight" for n in linears), (w.t() for w in cel_mm)))
    for name, p in cell.named_parameters():
        if name not in cel and name not in weights:
            raise SystemExit(f"bench_torch_lm: cell graph has no weight for {name}")
        copy(p, cel[name] if name in cel else weights[name], f"cell {name}")

    head = Head(inject.emb, d, de)  # tied, as in the recipe
    K = head.K
    copy(head.ln.weight, hed["head.ln.weight"], "head ln.weight")
    copy(head.ln.bias, hed["head.ln.bias"], "head ln.bias")
    copy(head.out1.bias, hed["head.out1.bias"], "head out1.bias")
    # forward order of log_probs: out1 (h -> de+1), E[:K]^T, out2 (h -> de), E[K:]^T
    if len(hed_mm) != 4:
        raise SystemExit(f"bench_torch_lm: head graph has {len(hed_mm)} MatMul weights, expected 4")
    out1, emb_short, out2, emb_tail = hed_mm
    copy(head.out1.weight, out1.t(), "head out1.weight")
    copy(head.out2.weight, out2.t(), "head out2.weight")
    emb = torch.cat([emb_short.t(), emb_tail.t()], 0)
    if tuple(emb.shape) != (V, de) or not torch.equal(emb, inject.emb.weight.detach()):
        raise SystemExit("bench_torch_lm: the head's embedding copies differ from inject's (the recipe ties them)")
    # the output bias is stored as two Add constants, shortlist then tail (names onnx::Add_k)
    adds = sorted((k for k in hed if k.startswith("onnx::Add_")), key=lambda k: int(k.rsplit("_", 1)[1]))
    bias = torch.cat([hed[k].flatten() for k in adds])
    if len(adds) != 2 or hed[adds[0]].numel() != K:
        raise SystemExit(f"bench_torch_lm: head bias constants {[tuple(hed[k].shape) for k in adds]}, expected [{K}] and [{V - K}]")
    copy(head.bias, bias, "head bias")
    return inject.eval(), cell.eval(), head.eval()


def heads_from_command(manifest):
    """Attention heads are not visible in the weights' shapes; the recipe command records them."""
    cmd = manifest.get("provenance", {}).get("command", "").split()
    if "--heads" in cmd:
        return int(cmd[cmd.index("--heads") + 1])
    return 4  # the recipe's default


class LanguageModel:
    def __init__(self, bundle, manifest, method, kw, peer=None):
        self.inject, self.cell, self.head = build(bundle, manifest)
        self.method, self.kw = method, kw
        # bench_torch.py's --peer: compiled modules and/or torchdeq's solver (None: eager, deq.py's solver)
        self.peer = peer
        self.solver = peer.solve if peer else solve
        self.head_logprobs = self._head_logprobs

    def wrap_modules(self):
        """The modules as the peer runs them (torch.compile): after the parity check, which runs
        them eager, so each run shape's compilation falls in the first run that meets it."""
        if self.peer:
            self.inject, self.cell = self.peer.module(self.inject, "inject"), self.peer.module(self.cell, "cell")
            self.head_logprobs = self.peer.module(self._head_logprobs, "head")

    def solve(self, x, method, kw):
        """z* for a batch of windows x [B, L] (z0 = 0), flattened per window like deq-serve's state."""
        u = self.inject(x)
        shape = u.shape

        def f(zf):
            return self.cell(zf.view(shape), u).reshape(shape[0], -1)

        out = self.solver(method, f, torch.zeros(shape[0], u[0].numel()), **kw)
        return out["result"].view(shape), out["nstep"]

    def _head_logprobs(self, z, y):
        # the bundle head's target_logprobs: full log-softmax, then the targets' entries
        return self.head.log_probs(z).gather(-1, y.unsqueeze(-1)).squeeze(-1)

    def target_logprobs(self, z, y):
        return self.head_logprobs(z, y)

    def parity(self, bundle, manifest):
        """Max |Δ target_logprobs| over parity.json's cases, solved with parity.json's solver."""
        with open(os.path.join(bundle, manifest["parity"]["file"])) as fh:
            par = json.load(fh)
        s = par["solver"]
        kw = dict(max_iter=s["max_iter"], tol=s["tol"], stop_mode=s["stop_mode"])
        if s["method"] == "broyden":
            kw.update(m=s.get("history", 8), restart=PARITY_RESTART)
        worst = 0.0
        with torch.no_grad():
            for c in par["cases"]:
                # The exporter writes named inputs (one here: the tokens); older bundles one "input".
                t = next(iter(c["inputs"].values())) if "inputs" in c else c["input"]
                x = torch.tensor(t["data"], dtype=torch.long).view(1, *t["shape"])
                y = torch.tensor(c["extra_inputs"]["targets"]["data"], dtype=torch.long).view(1, -1)
                z, _ = self.solve(x, s["method"], kw)
                got = self.target_logprobs(z, y).flatten()
                ref = torch.tensor(c["outputs"]["target_logprobs"])
                worst = max(worst, float((got - ref).abs().max()))
        return worst, len(par["cases"])

    def run(self, cmd):
        ids = torch.from_numpy(np.fromfile(cmd["ids"], dtype=np.int32).astype(np.int64))[: cmd["tokens"]]
        plan = windows_plan(len(ids), int(cmd["context"]), int(cmd["stride"]))
        bos = int(cmd["bos"])
        B = int(cmd["batch"])
        # inputs are built before the clock starts, as deq-serve builds each request before timing it
        batches = []
        for i in range(0, len(plan), B):
            chunk = [p for p in plan[i:i + B] if p[1] == plan[i][1]]
            L = chunk[0][1]
            x = torch.stack([torch.cat([torch.tensor([bos]), ids[a:a + L - 1]]) for a, _, _ in chunk])
            y = torch.stack([ids[a:a + L] for a, _, _ in chunk])
            batches.append((chunk, x, y))
        if sum(len(c) for c, _, _ in batches) != len(plan):
            raise SystemExit("bench_torch_lm: windows of mixed lengths in one batch (only the last window may be short)")
        nfe, lps = [], []
        with torch.no_grad():
            start = time.perf_counter()
            for _, x, y in batches:
                z, nstep = self.solve(x, self.method, self.kw)
                lps.append(self.target_logprobs(z, y))
                nfe.append(nstep)
            ms = (time.perf_counter() - start) * 1000 / len(plan)
        logprobs = torch.zeros(len(ids))
        for (chunk, _, _), lp in zip(batches, lps):
            for j, (a, L, off) in enumerate(chunk):
                logprobs[a + off:a + L] = lp[j, off:]
        out = {"ms_per_sample": ms, "windows": len(plan), "nfe": torch.cat(nfe).tolist(), "logprobs": logprobs.tolist()}
        if self.peer and self.peer.name == "compile":
            out["compile_s"] = self.peer.take_compile_s()
        return out


def load(bundle, manifest, method, kw, peer=None):
    """The LM side: modules with the bundle's weights, checked against parity.json; returns (run, ready fields)."""
    lm = LanguageModel(bundle, manifest, method, kw, peer)
    worst, cases = lm.parity(bundle, manifest)
    atol = float(manifest["parity"].get("atol", 1e-3))
    if not worst <= atol:
        raise SystemExit(f"bench_torch_lm: the weights loaded from the ONNX graphs miss parity.json: "
                         f"max |Δ target_logprobs| {worst:.3g} > atol {atol}")
    lm.wrap_modules()
    return lm.run, {"parity_cases": cases, "parity_max_abs_diff": worst}
