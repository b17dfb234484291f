"""Export the field-style test models (field_models.py) as issue #21 describes, one case each.

    PYTHONPATH=exporter:test/exporter /usr/bin/python3 test/exporter/field_cases.py OUT_DIR [CASE...]

Writes bundles under OUT_DIR/models/<case>, and OUT_DIR/results.json: per case, "ok" (the
exporter did what the case expects), "detail" (the error or what was checked) and, for
served cases, "reference": inputs and the user's own model's outputs (its own solve), which
test/exporter/field-models.test.ts compares with deq-serve's answers.
"""
from __future__ import annotations

import copy
import json
import os
import sys
import traceback

import torch
from torch import nn

import field_models as fm
from reference_solve import fixed_point
from deq_serve_export import ExportError, deq_transformer_lm, export_bundle

torch.set_num_threads(2)
OUT = sys.argv[1]
MODELS = os.path.join(OUT, "models")
CASES = {}


def case(fn):
    CASES[fn.__name__] = fn
    return fn




def tensor_bundle(name, inject, cell, head, **kw):
    kw.setdefault("task", "tensor")
    kw.setdefault("head_outputs", ["y"])
    kw.setdefault("parity_atol", 1e-4)
    kw.setdefault("solver", {"method": "broyden", "tol": 1e-6, "stop_mode": "rel", "max_iter": 60, "history": 8})
    return export_bundle(os.path.join(MODELS, name), inject, cell, head, name=name, **kw)


def expect_error(fn, *needles):
    try:
        fn()
    except ExportError as err:
        msg = str(err)
        missing = [n for n in needles if n not in msg]
        return {"ok": not missing, "detail": msg[:600] + (f" [missing: {missing}]" if missing else "")}
    except Exception as err:  # the wrong kind of failure
        return {"ok": False, "detail": f"{type(err).__name__}: {err}"[:600]}
    return {"ok": False, "detail": "exported without an error"}


@case
def locuslab_weightnorm():
    """A class named WeightNorm that is not PyTorch's: folded, served as the model runs."""
    torch.manual_seed(1)
    inj, cell, head = nn.Linear(6, 12), fm.LocusCell(), nn.Linear(12, 3)
    with torch.no_grad():  # training moved g; the model resets in forward, as locuslab/deq's does
        cell.lin.weight_g.mul_(0.8)
    cell.reset()
    tensor_bundle("locuslab-weightnorm", inj, cell, head, parity_inputs={"x": torch.randn(4, 6)})
    x = torch.randn(3, 6)
    with torch.no_grad():
        u = inj(x)
        y = head(fixed_point(lambda z: cell(z, u), torch.zeros(3, 12), tol=1e-7))
    return {"ok": True, "detail": "exported", "reference": {"inputs": {"x": x.tolist()}, "outputs": {"y": y.tolist()}}}


@case
def torchdeq_norm_in_place():
    """torchdeq-style norm left in place, .weight a non-leaf tensor: no deepcopy crash."""
    torch.manual_seed(2)
    model = fm.TorchdeqStyleModel()
    fm.reset_deq_norms(model)  # with autograd on: .weight has a grad_fn, as after a training step
    assert not model.f.lin.weight.is_leaf
    tensor_bundle("torchdeq-in-place", model.enc, model.f, model.dec, parity_inputs={"x": torch.randn(4, 6)})
    x = torch.randn(3, 6)
    with torch.no_grad():
        y = model(x)
    return {"ok": True, "detail": "exported", "reference": {"inputs": {"x": x.tolist()}, "outputs": {"y": y.tolist()}}}


def stale_torchdeq_model():
    """A trained torchdeq-style model loaded from a checkpoint: load_state_dict sets weight_g/v,
    but the stored .weight attribute is the one computed before, until forward resets it."""
    torch.manual_seed(3)
    model = fm.TorchdeqStyleModel()
    trained = copy.deepcopy(model.state_dict())
    with torch.no_grad():
        trained["f.lin.weight_g"] = trained["f.lin.weight_g"] * 1.6
        trained["f.lin.weight_v"] = trained["f.lin.weight_v"] + 0.3 * torch.randn_like(trained["f.lin.weight_v"])
    model.load_state_dict(trained)
    return model


@case
def stale_weight_fails_parity():
    """A deliberately stale .weight: the graphs use what the model computes; the modules as they
    stand compute something else, so parity must FAIL (nothing written), naming the stale weight."""
    model = stale_torchdeq_model()
    r = expect_error(lambda: tensor_bundle("stale-weight", model.enc, model.f, model.dec,
                                           parity_inputs={"x": torch.randn(4, 6)}),
                     "PARITY FAIL", "cell.lin.weight", "reset_norm")
    r["written"] = os.path.exists(os.path.join(MODELS, "stale-weight"))
    r["ok"] = r["ok"] and not r["written"]
    return r


@case
def stale_weight_with_reference():
    """The same checkpoint with reference= the model's own forward (which resets its norms):
    the bundle matches the model as it runs."""
    model = stale_torchdeq_model()
    with torch.no_grad():
        tensor_bundle("stale-weight-reference", model.enc, model.f, model.dec,
                      parity_inputs={"x": torch.randn(4, 6)}, reference=model)
    x = torch.randn(3, 6)
    with torch.no_grad():
        y = model(x)
    return {"ok": True, "detail": "exported", "reference": {"inputs": {"x": x.tolist()}, "outputs": {"y": y.tolist()}}}


@case
def unknown_computed_weight_refused():
    """A weight held as a plain attribute that no recognized norm explains is refused."""
    torch.manual_seed(4)
    cell = fm.TorchdeqStyleCell()
    del cell.lin._deq_norm  # an unknown mechanism now computes lin.weight
    return expect_error(lambda: tensor_bundle("unknown-computed", nn.Linear(6, 12), cell, nn.Linear(12, 3),
                                              parity_inputs={"x": torch.randn(4, 6)}),
                        "lin.weight", "computed outside the module's parameters")


@case
def batchnorm_head_and_dropout_inject():
    """Modules in training mode (as after training): the bundle and parity use eval mode."""
    torch.manual_seed(5)
    inj, cell, head = fm.TwoOutInject().eval(), fm.UVCell().eval(), fm.BatchNormHead().eval()
    args = dict(parity_inputs={"x": torch.randn(4, 6)}, inject_outputs=("u", "v"), state_shape=[8])
    tensor_bundle("batchnorm-head", inj, cell, head, **args)  # eval-mode modules, as the docs say
    inj.train(), cell.train(), head.train()
    tensor_bundle("batchnorm-head-train", inj, cell, head, **args)  # left in training mode after training
    modes = [m.training for m in (inj, cell, head)]
    x = torch.randn(3, 6)
    inj.eval(), cell.eval(), head.eval()
    with torch.no_grad():
        u, v = inj(x)
        y = head(fixed_point(lambda z: cell(z, u, v), torch.zeros(3, 8), tol=1e-7))
    return {"ok": modes == [True, True, True], "detail": f"exported; caller's training flags after export {modes}",
            "reference": {"inputs": {"x": x.tolist()}, "outputs": {"y": y.tolist()}}}


@case
def list_state():
    """MDEQ-style: a list state and a list injection; the head is a method of the model
    (MDEQClsNet.predict) with BatchNorm. The cell and head receive lists; the bundle stores the state flat."""
    torch.manual_seed(6)
    net = fm.MultiResNet().eval()
    tensor_bundle("list-state", net.downsample, net.fullstage, net.predict,
                  parity_inputs={"x": torch.randn(3, 1, 8, 8)},
                  state_shape=[[4, 8, 8], [6, 4, 4]], inject_outputs=("x_hi", "x_lo"))
    x = torch.randn(2, 1, 8, 8)
    with torch.no_grad():
        u = net.downsample(x)

        def f(flat):
            zs = [flat[:, :256].reshape(-1, 4, 8, 8), flat[:, 256:].reshape(-1, 6, 4, 4)]
            out = net.fullstage(zs, u)
            return torch.cat([out[0].flatten(1), out[1].flatten(1)], 1)

        z = fixed_point(f, torch.zeros(2, 256 + 96), tol=2e-6)
        y = net.predict([z[:, :256].reshape(-1, 4, 8, 8), z[:, 256:].reshape(-1, 6, 4, 4)])
    return {"ok": True, "detail": "exported", "reference": {"inputs": {"x": x.tolist()}, "outputs": {"y": y.tolist()}}}


@case
def list_state_inject_first():
    """MDEQ as upstream writes it: `downsample` returns one tensor, MDEQNet._forward appends zeros for
    the lower resolutions. With inject_to="first" the exporter builds that list: downsample -> fullstage
    -> predict, nothing else named."""
    torch.manual_seed(6)
    net = fm.MultiResNet().eval()
    tensor_bundle("list-state-inject-first", net.downsample.conv, net.fullstage, net.predict,
                  parity_inputs={"x": torch.randn(3, 1, 8, 8)}, state_shape=[[4, 8, 8], [6, 4, 4]],
                  inject_to="first")
    x = torch.randn(2, 1, 8, 8)
    with torch.no_grad():
        u = [net.downsample.conv(x), torch.zeros(2, 6, 4, 4)]

        def f(flat):
            zs = [flat[:, :256].reshape(-1, 4, 8, 8), flat[:, 256:].reshape(-1, 6, 4, 4)]
            out = net.fullstage(zs, u)
            return torch.cat([out[0].flatten(1), out[1].flatten(1)], 1)

        z = fixed_point(f, torch.zeros(2, 256 + 96), tol=2e-6)
        y = net.predict([z[:, :256].reshape(-1, 4, 8, 8), z[:, 256:].reshape(-1, 6, 4, 4)])
    return {"ok": True, "detail": "exported", "reference": {"inputs": {"x": x.tolist()}, "outputs": {"y": y.tolist()}}}


@case
def list_state_no_head():
    """Without a head, each element of a list state is an output of its own."""
    torch.manual_seed(6)
    inj, cell = fm.MultiResInject().eval(), fm.MultiResCell().eval()
    m = tensor_bundle("list-state-no-head", inj, cell, None, parity_inputs={"x": torch.randn(2, 1, 8, 8)},
                      state_shape=[[4, 8, 8], [6, 4, 4]], inject_outputs=("x_hi", "x_lo"))
    outs = {o["name"]: (o["offset"], o["shape"]) for o in m["state_outputs"]}
    want = {"z0": (0, [4, 8, 8]), "z1": (256, [6, 4, 4])}
    return {"ok": outs == want, "detail": f"state_outputs {outs}"}


@case
def channels_first_sequence():
    """DEQ-Transformer-style (B, d, T) state: seq_axis=1, no transposes by hand, state_pad works."""
    torch.manual_seed(7)
    inj, cell, head = fm.ChannelsFirstInject().eval(), fm.CausalConvCell().eval(), fm.ChannelsFirstHead().eval()
    m = tensor_bundle("channels-first", inj, cell, head, parity_inputs={"tokens": torch.randint(0, 11, (3, 7))},
                      seq_dynamic=True, seq_axis=1, state_pad="right", head_outputs=["logits"])
    tokens = torch.randint(0, 11, (2, 5))
    with torch.no_grad():
        u = inj(tokens)
        y = head(fixed_point(lambda z: cell(z, u), torch.zeros(2, 6, 5), tol=1e-7))
    return {"ok": m["state"] == {"shape": [-1, 6], "pad": "right"}, "detail": f"state {m['state']}",
            "reference": {"inputs": {"tokens": tokens.tolist()}, "outputs": {"logits": y.tolist()}}}


@case
def deq_transformer_adapter():
    """locuslab/deq's DEQTransformerLM (by its names and signatures): deq_transformer_lm(model) names
    inject, f and head; the reference is the model's own time-first forward with its own solve."""
    torch.manual_seed(15)
    lm = fm.DEQTransformerLMLike().train()  # as left by training: dropout must be off in parity and export
    inject, cell, head = deq_transformer_lm(lm)
    tokens, targets = torch.randint(0, 13, (3, 6)), torch.randint(0, 13, (3, 6))
    tensor_bundle("deq-transformer-like", inject, cell, head, parity_inputs={"tokens": tokens},
                  parity_extra={"targets": targets}, state_shape=[lm.d_model, -1], seq_axis=1, seq_dynamic=True,
                  state_pad="right", head_outputs=["nll"],
                  reference=lambda x, y: lm(x.t(), y.t(), None)[0].t())
    lm.eval()
    x, y = torch.randint(0, 13, (2, 5)), torch.randint(0, 13, (2, 5))
    with torch.no_grad():
        nll = lm(x.t(), y.t(), None)[0].t()
    return {"ok": True, "detail": "exported",
            "reference": {"inputs": {"tokens": x.tolist(), "targets": y.tolist()}, "outputs": {"nll": nll.tolist()}}}


@case
def sequence_without_state_shape():
    """A channels-first model exported without seq_axis/state_shape: the error names state_shape."""
    torch.manual_seed(8)

    class WideInject(nn.Module):  # u has 12 channels, the state 6
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(11, 12)

        def forward(self, tokens):
            return self.emb(tokens).transpose(1, 2)

    class Cell(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.proj = nn.Conv1d(6, 6, 1), nn.Conv1d(12, 6, 1)

        def forward(self, z, u):
            return torch.tanh(self.conv(z) + self.proj(u))

    return expect_error(lambda: tensor_bundle("no-state-shape", WideInject(), Cell(), None,
                                              parity_inputs={"tokens": torch.randint(0, 11, (2, 5))},
                                              seq_dynamic=True),
                        "state_shape", "seq_axis")


@case
def float32_floor():
    """A cell whose float32 residual floor is above 1e-5 (abs): the parity tol is raised above it."""
    torch.manual_seed(9)
    cell = fm.BigStateCell().eval()
    m = tensor_bundle("float32-floor", None, cell, None, parity_inputs={"u": torch.randn(3, 4096)},
                      state_shape=[4096], state_outputs={"first": (0, [8])},
                      solver={"method": "anderson", "tol": 1e-3, "stop_mode": "abs", "max_iter": 50, "history": 5})
    with open(os.path.join(MODELS, "float32-floor", "parity.json")) as fh:
        tol = json.load(fh)["solver"]["tol"]
    note = m["provenance"].get("parity_tol", "")
    return {"ok": tol > 1e-5 and "float32 residual floor" in note, "detail": f"parity tol {tol}; {note}"}


@case
def invalid_graph_leaves_bundle_intact():
    """A graph that fails onnx.checker: nothing is written, the previous bundle stays whole."""
    import deq_serve_export.export as ex
    torch.manual_seed(10)
    inj, cell, head = nn.Linear(6, 8), fm.UVCell(), nn.Linear(8, 2)

    class C(nn.Module):
        def __init__(self):
            super().__init__()
            self.c = cell

        def forward(self, z, u):
            return self.c(z, u, u)

    args = dict(parity_inputs={"x": torch.randn(2, 6)})
    tensor_bundle("intact", inj, C(), head, **args)
    folder = os.path.join(MODELS, "intact")
    before = {f: open(os.path.join(folder, f), "rb").read() for f in sorted(os.listdir(folder))}
    real = ex.check_onnx

    def broken(path):
        raise ValueError("checker says no")  # stands in for a graph onnx.checker rejects

    ex.check_onnx = broken
    try:
        r = expect_error(lambda: tensor_bundle("intact", inj, C(), head, description="a second export", **args),
                         "not a valid ONNX graph")
    finally:
        ex.check_onnx = real
    after = {f: open(os.path.join(folder, f), "rb").read() for f in sorted(os.listdir(folder))}
    leftovers = [f for f in os.listdir(MODELS) if f.startswith(".")]
    r["ok"] = r["ok"] and before == after and not leftovers
    r["detail"] += f" | bundle unchanged: {before == after}; temp folders left: {leftovers}"
    return r


def image_classifier(name, **kw):
    torch.manual_seed(11)
    inj = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.Flatten())
    cell, head = fm.UVCell(d=32), nn.Linear(32, 10)

    class C(nn.Module):
        def __init__(self):
            super().__init__()
            self.c = cell

        def forward(self, z, u):
            return self.c(z, u, u)

    args = dict(parity_inputs={"image": torch.randn(2, 1, 4, 4)}, task="image-classification",
                head_outputs=["logits"], labels=[str(i) for i in range(10)],
                preprocess={"kind": "image", "width": 4, "height": 4, "channels": 1, "mean": [0.5], "std": [0.25]})
    args.update(kw)
    return lambda: tensor_bundle(name, inj, C(), head, **args)


@case
def manifest_values_validated():
    """Bad manifest values are refused at export, before anything is written."""
    results = {}
    for label, kw, needle in (
            ("scalar mean", {"preprocess": {"kind": "image", "width": 4, "height": 4, "channels": 1, "mean": 0.5,
                                            "std": [0.25]}}, "preprocess.mean"),
            ("channels 3 on a 1-channel input", {"preprocess": {"kind": "image", "width": 4, "height": 4, "channels": 3,
                                                                "mean": [0.5] * 3, "std": [0.25] * 3}}, "channels"),
            ("5 labels for 10 logits", {"labels": ["a", "b", "c", "d", "e"]}, "5 labels for 10 logits")):
        r = expect_error(image_classifier("bad-manifest", **kw), "deq-serve would refuse this manifest", needle)
        results[label] = r
    good = image_classifier("good-manifest")
    good()
    written = os.path.exists(os.path.join(MODELS, "bad-manifest"))
    ok = all(r["ok"] for r in results.values()) and not written
    return {"ok": ok, "detail": json.dumps({k: v["detail"][:200] for k, v in results.items()}) + f" | written: {written}"}


@case
def upstream_export_pitfalls():
    """layer_norm with a shape from z.size() and no weight, and a bool + bool causal mask, export
    under PyTorch 1.13 without rewriting the model (the exporter applies known rewrites)."""
    torch.manual_seed(12)
    inj, cell, head = fm.ChannelsFirstInject().eval(), fm.CausalAttentionCell().eval(), fm.ChannelsFirstHead().eval()
    tensor_bundle("pitfalls", inj, cell, head, parity_inputs={"tokens": torch.randint(0, 11, (3, 7))},
                  seq_dynamic=True, seq_axis=1, state_pad="right", head_outputs=["logits"])
    tokens = torch.randint(0, 11, (2, 5))
    with torch.no_grad():
        u = inj(tokens)
        y = head(fixed_point(lambda z: cell(z, u), torch.zeros(2, 6, 5), tol=1e-6))
    return {"ok": True, "detail": "exported",
            "reference": {"inputs": {"tokens": tokens.tolist()}, "outputs": {"logits": y.tolist()}}}


@case
def tuple_state():
    """A torchdeq-style tuple state (z, h): the cell receives and returns a tuple."""
    torch.manual_seed(13)

    class TupleCell(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(5, 5), nn.Linear(3, 5)
            with torch.no_grad():
                self.a.weight.mul_(0.3), self.b.weight.mul_(0.3)

        def forward(self, zs, u):
            z, h = zs
            if not isinstance(zs, tuple):
                raise TypeError(f"expected a tuple state, got {type(zs).__name__}")
            return torch.tanh(self.a(z) + self.b(h) + u), torch.tanh(0.5 * h + z[:, :3])

    cell = TupleCell().eval()
    m = tensor_bundle("tuple-state", None, cell, None, parity_inputs={"u": torch.randn(3, 5)},
                      state_shape=([5], [3]))
    outs = [(o["name"], o["offset"], o["shape"]) for o in m["state_outputs"]]
    return {"ok": outs == [("z0", 0, [5]), ("z1", 5, [3])], "detail": f"state_outputs {outs}"}


@case
def tuple_injection():
    """deq-zoo's DEQ-INR: inject returns a tuple of chunks (x_map(x).chunk(2)) and f(z, u) indexes
    the tuple; only inject, f and head are named (no state_shape glue beyond the state's size, no
    inject_outputs)."""
    torch.manual_seed(14)

    class Injection(nn.Module):
        def __init__(self):
            super().__init__()
            self.x_map = nn.Linear(2, 12)

        def forward(self, x):
            return torch.sin(self.x_map(x)).chunk(2, dim=-1)

    class MFN(nn.Module):
        def __init__(self):
            super().__init__()
            self.z_map = nn.Linear(6, 6)
            with torch.no_grad():
                self.z_map.weight.mul_(0.4)

        def forward(self, z, u):
            if not isinstance(u, tuple):
                raise TypeError(f"expected the injection tuple, got {type(u).__name__}")
            return self.z_map(z + u[0]) * u[1]

    inj, cell, head = Injection().eval(), MFN().eval(), nn.Linear(6, 1).eval()
    tensor_bundle("tuple-injection", inj, cell, head, parity_inputs={"x": torch.rand(4, 2) * 2 - 1}, state_shape=[6])
    x = torch.rand(3, 2) * 2 - 1
    with torch.no_grad():
        u = inj(x)
        y = head(fixed_point(lambda z: cell(z, u), torch.zeros(3, 6), tol=2e-6))
    return {"ok": True, "detail": "exported", "reference": {"inputs": {"x": x.tolist()}, "outputs": {"y": y.tolist()}}}


@case
def pytorch_hook_norms():
    """PyTorch's own hook-style weight_norm and spectral_norm still fold (recognized by behaviour too)."""
    import warnings
    torch.manual_seed(14)

    class Cell(nn.Module):
        def __init__(self):
            super().__init__()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # torch 2.x deprecates the hook style
                self.a = nn.utils.weight_norm(nn.Linear(8, 8))
                self.b = nn.utils.spectral_norm(nn.Linear(8, 8))

        def forward(self, z, u):
            return torch.tanh(0.5 * self.b(z) + 0.1 * self.a(z) + u)

    tensor_bundle("torch-hook-norms", None, Cell().eval(), None, parity_inputs={"u": torch.randn(3, 8)},
                  state_shape=[8])
    return {"ok": True, "detail": "exported"}


@case
def history_in_stability_search():
    """When no iteration cap helps, the stability check searches Broyden's / Anderson's history
    too, and states the memory it costs. run_solver is replaced by one that converges only with
    history >= 32, as a conv DEQ's Broyden did (issue #21: history 8 stalled, 64 converged)."""
    import io
    import contextlib
    import deq_serve_export.export as ex
    real, calls = ex.run_solver, []

    def fake(settings, f, z0, restart=0.0):
        calls.append(dict(settings))
        ok = settings["method"] == "broyden" and settings.get("history", 8) >= 32
        return {"converged": torch.tensor([ok])}

    ex.run_solver = fake
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            report = ex.stability_check({"method": "broyden", "tol": 1e-3, "stop_mode": "rel", "max_iter": 30,
                                         "history": 8}, [(None, None)] * 2, 0.92, n_state=6272)
    finally:
        ex.run_solver = real
    best = report["suggestion"]
    text = err.getvalue()
    ok = best is not None and best["method"] == "broyden" and best["history"] == 32 and "MiB per sample" in text
    return {"ok": ok, "detail": f"suggestion {best}; warning: {text[-400:]}"}


def main(names):
    os.makedirs(MODELS, exist_ok=True)
    results = {}
    for name in names or list(CASES):
        try:
            results[name] = CASES[name]()
        except Exception as err:
            results[name] = {"ok": False, "detail": f"{type(err).__name__}: {err}\n{traceback.format_exc()[-1500:]}"}
        print(f"{name}: {'ok' if results[name]['ok'] else 'FAILED'} - {results[name]['detail'][:300]}", file=sys.stderr)
    with open(os.path.join(OUT, "results.json"), "w") as fh:
        json.dump(results, fh)


if __name__ == "__main__":
    main(sys.argv[2:])
