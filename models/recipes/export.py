"""Export a trained DEQ (inject, cell, head) as a deq-serve bundle, format v1.

See docs/bundle-format.md. Usage (from a recipe):

    from export import export_bundle
    export_bundle(out_dir, inject, cell, head, parity_inputs=x[:3], name=..., task=...,
                  solver={...}, provenance={...}, labels=..., preprocess=...)

What it does
  * deep-copies the modules, puts them in eval mode and folds weight norm /
    spectral norm / parametrizations into plain weights;
  * exports inject.onnx, cell.onnx, head.onnx with torch.onnx.export (opset 17,
    dynamic batch axis; for language models also a dynamic sequence axis);
  * solves each parity input with the PyTorch reference Broyden at tol 1e-5 (rel)
    and writes parity.json (input, z_star_norm, z_star, head outputs);
  * estimates the spectral radius of J_f at z* (power iteration, mean over the
    parity inputs) into provenance.spectral_radius;
  * writes manifest.json with the sha256 of every file, then re-reads the graphs
    and runs onnx.checker + onnx.shape_inference (strict) on them.

Per-sample shapes in the manifest omit the batch dim; a symbolic dim is -1.
"""
from __future__ import annotations

import copy
import hashlib
import json
import os
import sys
from typing import Dict, List, Optional, Sequence

import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from deq import broyden, spectral_radius  # noqa: E402

OPSET = 17
PARITY_RESTART = 10.0  # restart Broyden from its best iterate when the residual grows 10x
PARITY_SOLVER = {"method": "broyden", "tol": 1e-5, "stop_mode": "rel", "max_iter": 200, "history": 30}


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fold_norms(module: nn.Module) -> nn.Module:
    """Return an eval-mode deep copy with weight/spectral norm folded into plain weights."""
    # weight_norm leaves a computed (non-leaf) `weight` attribute that deepcopy refuses;
    # refresh it as a detached tensor first (the pre-hook recomputes it on every forward).
    with torch.no_grad():
        for sub in module.modules():
            for hook in list(getattr(sub, "_forward_pre_hooks", {}).values()):
                if type(hook).__name__ == "WeightNorm":
                    setattr(sub, hook.name, hook.compute_weight(sub).detach())
    m = copy.deepcopy(module).eval()
    for sub in m.modules():
        # old-style hooks: torch.nn.utils.weight_norm / spectral_norm
        for hook in list(getattr(sub, "_forward_pre_hooks", {}).values()):
            cls = type(hook).__name__
            if cls == "WeightNorm":
                torch.nn.utils.remove_weight_norm(sub, hook.name)
            elif cls == "SpectralNorm":
                torch.nn.utils.remove_spectral_norm(sub, hook.name)
        # new-style parametrizations
        if hasattr(sub, "parametrizations"):
            import torch.nn.utils.parametrize as P
            for name in list(sub.parametrizations.keys()):
                P.remove_parametrizations(sub, name, leave_parametrized=True)
    for p in m.parameters():
        p.requires_grad_(False)
    return m


def _round(xs, nd=7):
    return [float(f"{float(v):.{nd}g}") for v in xs]


def _io(name, dtype, shape):
    return {"name": name, "dtype": dtype, "shape": [int(s) for s in shape]}


def _dtype(t: torch.Tensor) -> str:
    return {torch.float32: "float32", torch.int64: "int64", torch.int32: "int32"}[t.dtype]


class _HeadWrap(nn.Module):
    """Head returning a tuple in a fixed output-name order."""

    def __init__(self, head, names):
        super().__init__()
        self.head, self.names = head, list(names)

    def forward(self, *args):
        out = self.head(*args)
        if isinstance(out, dict):
            return tuple(out[n] for n in self.names)
        if isinstance(out, (tuple, list)):
            return tuple(out)
        return out


def _head_outputs(head, names, z, extra) -> Dict[str, torch.Tensor]:
    out = head(z, *extra) if extra else head(z)
    if isinstance(out, dict):
        return {n: out[n] for n in names}
    if isinstance(out, (tuple, list)):
        return dict(zip(names, out))
    return {names[0]: out}


def store_fp16(path: str, min_elements: int) -> None:
    """Rewrite large float32 initializers of an ONNX file as float16 + Cast(to=float32)."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    model = onnx.load(path)
    g = model.graph
    casts = []
    for init in list(g.initializer):
        if init.data_type != TensorProto.FLOAT:
            continue
        arr = numpy_helper.to_array(init)
        if arr.size < min_elements:
            continue
        half = numpy_helper.from_array(arr.astype(np.float16), init.name + "_fp16")
        g.initializer.remove(init)
        g.initializer.append(half)
        casts.append(helper.make_node("Cast", [half.name], [init.name], to=TensorProto.FLOAT,
                                      name=init.name + "_to_fp32"))
    if casts:
        nodes = casts + list(g.node)
        del g.node[:]
        g.node.extend(nodes)
        onnx.save(model, path)


def check_onnx(path: str) -> None:
    import onnx
    model = onnx.load(path)
    onnx.checker.check_model(model, full_check=True)
    onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)


def export_bundle(
    out_dir: str,
    inject: nn.Module,
    cell: nn.Module,
    head: nn.Module,
    *,
    parity_inputs: torch.Tensor,
    name: str,
    task: str,
    description: str = "",
    version: str = "1",
    solver: Optional[dict] = None,
    provenance: Optional[dict] = None,
    labels: Optional[Sequence[str]] = None,
    preprocess: Optional[dict] = None,
    tokenizer: Optional[dict] = None,
    vocab: Optional[List[str]] = None,
    parity_extra: Optional[Dict[str, torch.Tensor]] = None,
    head_outputs: Sequence[str] = ("logits",),
    output_roles: Optional[Dict[str, str]] = None,
    parity_outputs: Optional[Sequence[str]] = None,
    parity_atol: float = 1e-3,
    parity_tol: float = PARITY_SOLVER["tol"],
    parity_cases: Optional[int] = None,
    include_z_star: bool = True,
    seq_dynamic: Optional[bool] = None,
    spectral_iters: int = 60,
    fp16_min_elements: int = 0,
) -> dict:
    """Write a v1 bundle into out_dir and return the manifest dict.

    parity_inputs: [N, ...] model inputs (float images, or int64 tokens [N, T]).
    parity_extra:  extra head inputs per case, e.g. {"targets": int64 [N, T]} (LM).
    head_outputs:  names of the head outputs, in the order the head returns them.
    parity_tol:    rel residual both the reference solve and the runtime's parity check reach.
                   The logits of two solves that stop anywhere below it differ by up to about
                   tol * |z*| / (1 - rho) amplified by the head, so a model whose spectral
                   radius is near 1 needs a tighter one than the default to meet parity_atol.
    parity_cases:  if set, parity_inputs are candidates: keep the first parity_cases whose
                   reference solve reaches the parity tol (others are skipped and counted in
                   provenance.parity_selection); useful for models that are not contractions.
    fp16_min_elements: if > 0, float32 weights with at least this many elements are
                   stored as float16 with a Cast to float32 in front (halves e.g. a
                   large embedding). The caller should round those weights to fp16
                   in the modules first, so the parity vectors match. Off by default.
    """
    assert task in ("image-classification", "language-model"), task
    is_lm = task == "language-model"
    if seq_dynamic is None:
        seq_dynamic = is_lm
    os.makedirs(out_dir, exist_ok=True)
    inject_m, cell_m, head_m = fold_norms(inject), fold_norms(cell), fold_norms(head)

    solver = dict(solver or {"method": "broyden", "tol": 1e-3, "stop_mode": "rel",
                             "max_iter": 30, "history": 8})
    provenance = dict(provenance or {})
    provenance.setdefault("framework", f"torch {torch.__version__.split('a')[0]}")
    extra_names = list((parity_extra or {}).keys())
    head_outputs = list(head_outputs)

    # parity inputs: a batched tensor [N, ...] or a list of [1, ...] tensors (cases may differ in length)
    if isinstance(parity_inputs, torch.Tensor):
        case_x = [parity_inputs[i:i + 1] for i in range(parity_inputs.shape[0])]
    else:
        case_x = list(parity_inputs)
    case_extra = {}
    for k, v in (parity_extra or {}).items():
        case_extra[k] = [v[i:i + 1] for i in range(v.shape[0])] if isinstance(v, torch.Tensor) else list(v)
    x_ex = case_x[0]
    with torch.no_grad():
        u_ex = inject_m(x_ex)
    z_ex = torch.zeros_like(u_ex)
    extra_ex = [case_extra[k][0] for k in extra_names]
    with torch.no_grad():
        h_ex = _head_outputs(head_m, head_outputs, z_ex, extra_ex)

    def dyn(t: torch.Tensor, seq_axis: bool) -> Dict[int, str]:
        d = {0: "batch"}
        if seq_dynamic and seq_axis and t.dim() >= 2:
            d[1] = "seq"
        return d

    x_name = "tokens" if is_lm else "x"
    files = {"inject": "inject.onnx", "cell": "cell.onnx", "head": "head.onnx"}
    export_kw = dict(opset_version=OPSET, do_constant_folding=True, export_params=True)

    with torch.no_grad():
        torch.onnx.export(inject_m, (x_ex,), os.path.join(out_dir, files["inject"]),
                          input_names=[x_name], output_names=["u"],
                          dynamic_axes={x_name: dyn(x_ex, True), "u": dyn(u_ex, True)}, **export_kw)
        torch.onnx.export(cell_m, (z_ex, u_ex), os.path.join(out_dir, files["cell"]),
                          input_names=["z", "u"], output_names=["z_next"],
                          dynamic_axes={"z": dyn(z_ex, True), "u": dyn(u_ex, True),
                                        "z_next": dyn(z_ex, True)}, **export_kw)
        head_in = ["z"] + extra_names
        dax = {"z": dyn(z_ex, True)}
        for k, t in zip(extra_names, extra_ex):
            dax[k] = dyn(t, True)
        for k, t in h_ex.items():
            dax[k] = dyn(t, True)
        torch.onnx.export(_HeadWrap(head_m, head_outputs), tuple([z_ex] + extra_ex),
                          os.path.join(out_dir, files["head"]), input_names=head_in,
                          output_names=head_outputs, dynamic_axes=dax, **export_kw)

    def per_sample_shape(t: torch.Tensor) -> List[int]:
        s = list(t.shape[1:])
        if seq_dynamic and t.dim() >= 2:
            s[0] = -1
        return s

    # ---- parity: reference Broyden at tight tolerance
    psolver = {**PARITY_SOLVER, "tol": parity_tol}
    cands = []
    for i in range(len(case_x)):
        xi = case_x[i]
        with torch.no_grad():
            u = inject_m(xi)
            shape = u.shape

            def f(zf, u=u, shape=shape):
                return cell_m(zf.view(shape), u).reshape(1, -1)

            res = broyden(f, torch.zeros(1, u[0].numel()), max_iter=psolver["max_iter"],
                          tol=psolver["tol"], stop_mode=psolver["stop_mode"],
                          m=psolver["history"], restart=PARITY_RESTART)
            z_star = res["result"].view(shape)
            extra_i = [case_extra[k][i] for k in extra_names]
            outs = _head_outputs(head_m, head_outputs, z_star, extra_i)
        rho = float(spectral_radius(lambda z, u=u: cell_m(z, u), z_star, n_iters=spectral_iters)[0])
        rel = float(res["rel"][0])
        case = {"input": {"dtype": _dtype(xi), "shape": list(xi.shape[1:]),
                          "data": _round(xi.flatten()) if xi.is_floating_point() else [int(v) for v in xi.flatten()]}}
        if extra_names:
            case["extra_inputs"] = {k: {"dtype": _dtype(t), "shape": list(t.shape[1:]),
                                        "data": [int(v) for v in t.flatten()] if not t.is_floating_point() else _round(t.flatten())}
                                    for k, t in zip(extra_names, extra_i)}
        case["z_star_norm"] = float(z_star.norm())
        case["solver_nstep"] = int(res["nstep"][0])
        case["solver_rel_residual"] = rel
        if include_z_star:
            case["z_star"] = _round(z_star.flatten())
        case["outputs"] = {}
        for k in (parity_outputs or head_outputs):
            t = outs[k]
            case["outputs"][k] = [int(v) for v in t.flatten()] if not t.is_floating_point() else _round(t.flatten())
        cands.append((rel < psolver["tol"], rel, rho, case))
        if parity_cases and sum(c[0] for c in cands) >= parity_cases:
            break
    if parity_cases:
        # keep candidates whose reference solve reached the parity tol (in input order); if too
        # few did, fill up with the lowest-residual others and say so.
        ok = [c for c in cands if c[0]]
        bad = sorted([c for c in cands if not c[0]], key=lambda c: c[1])
        chosen = (ok + bad)[:parity_cases]
        provenance["parity_selection"] = (
            f"kept {len(chosen)} of {len(cands)} candidate inputs tried; {len(cands) - len(ok)} tried "
            f"candidate(s) whose reference Broyden solve did not reach rel {psolver['tol']} were skipped"
            + ("" if len(ok) >= parity_cases else " (too few converged: some cases kept anyway)"))
        provenance["spectral_radius_all_candidates"] = round(sum(c[2] for c in cands) / len(cands), 4)
    else:
        chosen = cands
    cases = [c[3] for c in chosen]
    radii = [c[2] for c in chosen]
    worst_rel = max(c[1] for c in chosen)
    if worst_rel > psolver["tol"]:
        print(f"WARNING: parity solve reached only rel residual {worst_rel:.3g} "
              f"(target {psolver['tol']})", file=sys.stderr)
    parity = {"solver": {k: psolver[k] for k in ("method", "tol", "stop_mode", "max_iter", "history")},
              "cases": cases}
    with open(os.path.join(out_dir, "parity.json"), "w") as fh:
        json.dump(parity, fh, separators=(",", ":"))
    provenance["spectral_radius"] = round(sum(radii) / len(radii), 4)
    provenance["spectral_radius_max"] = round(max(radii), 4)

    if fp16_min_elements > 0:
        for g in files.values():
            store_fp16(os.path.join(out_dir, g), fp16_min_elements)

    # ---- manifest
    graphs = {
        "inject": {"file": files["inject"], "sha256": sha256_file(os.path.join(out_dir, files["inject"])),
                   "inputs": [_io(x_name, _dtype(x_ex), per_sample_shape(x_ex))],
                   "outputs": [_io("u", "float32", per_sample_shape(u_ex))]},
        "cell": {"file": files["cell"], "sha256": sha256_file(os.path.join(out_dir, files["cell"])),
                 "inputs": [_io("z", "float32", per_sample_shape(z_ex)),
                            _io("u", "float32", per_sample_shape(u_ex))],
                 "outputs": [_io("z_next", "float32", per_sample_shape(z_ex))]},
        "head": {"file": files["head"], "sha256": sha256_file(os.path.join(out_dir, files["head"])),
                 "inputs": [_io("z", "float32", per_sample_shape(z_ex))]
                 + [_io(k, _dtype(t), per_sample_shape(t)) for k, t in zip(extra_names, extra_ex)],
                 "outputs": [_io(k, _dtype(h_ex[k]), per_sample_shape(h_ex[k])) for k in head_outputs]},
    }
    manifest = {
        "format": "deq-bundle",
        "format_version": 1,
        "name": name,
        "version": version,
        "task": task,
        "description": description,
        "graphs": graphs,
        "state": {"shape": per_sample_shape(u_ex)},
        "solver": solver,
    }
    if preprocess is not None:
        manifest["preprocess"] = preprocess
    if tokenizer is not None:
        tok = dict(tokenizer)
        vf = tok.get("vocab_file", "vocab.json")
        tok["vocab_file"] = vf
        if vocab is not None:
            with open(os.path.join(out_dir, vf), "w") as fh:
                json.dump(list(vocab), fh, ensure_ascii=False)
        tok["sha256"] = sha256_file(os.path.join(out_dir, vf))
        manifest["tokenizer"] = tok
    if labels is not None:
        manifest["labels"] = list(labels)
    manifest["outputs"] = output_roles or {k: k for k in head_outputs}
    manifest["provenance"] = provenance
    manifest["parity"] = {"file": "parity.json", "sha256": sha256_file(os.path.join(out_dir, "parity.json")),
                          "atol": parity_atol}
    with open(os.path.join(out_dir, "manifest.json"), "w") as fh:
        json.dump(manifest, fh, indent=2)
        fh.write("\n")

    for g in files.values():
        check_onnx(os.path.join(out_dir, g))
    return manifest
