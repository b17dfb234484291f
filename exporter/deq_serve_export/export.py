"""Export a PyTorch DEQ as a deq-serve bundle (format v1, docs/reference/bundle-format.md).

A bundle is up to three ONNX graphs and a manifest:

  inject(x...) -> u...     optional; without it the cell takes the raw model inputs
  cell(z, u...) -> z_next  required; z has the manifest's state shape
  head(z, extra...) -> y   optional; without it the outputs are z* or named slices of it

export_bundle() folds weight/spectral norm into plain weights, exports the graphs (opset 17,
dynamic batch axis, optional dynamic sequence axis), solves every parity input to a tight
tolerance with the bundle's own solver method, records whether each reference solve
converged (no input is ever dropped for being hard), estimates the spectral radius of J_f at
z*, runs the manifest's default solver on the parity inputs to warn when it fails where
another solver succeeds, writes parity.json and manifest.json (sha256 of every file), and
checks every graph with onnx.checker and strict shape inference. docs/guides/export-your-deq.md walks
through it.
"""
from __future__ import annotations

import contextlib
import copy
import hashlib
import inspect
import json
import os
import shutil
import sys
import tempfile
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch
from torch import nn

from . import layout, norms, rewrites
from .manifest_check import manifest_problems
from .solvers import anderson, broyden, fixed_point, residuals, spectral_radius

OPSET = 17
PARITY_TOL = 1e-5  # the default reference tolerance; raised above a measured float32 floor
PARITY_MIN_ITER = 200
PARITY_RESTART = 10.0  # Broyden restarts from its best iterate when the residual grows 10x (as the TS runtime)
TASKS = ("image-classification", "language-model", "tensor")
HISTORY_SEARCH = (16, 32, 64)  # the stability check's memory sizes, after the default
DEFAULT_SOLVER = {"method": "broyden", "tol": 1e-3, "stop_mode": "rel", "max_iter": 30, "history": 8}

Inputs = Union[torch.Tensor, Sequence[torch.Tensor], Mapping[str, Union[torch.Tensor, Sequence[torch.Tensor]]]]


class ExportError(RuntimeError):
    """The model cannot be exported as asked; the message says what to change."""


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fold_norms(module: nn.Module) -> nn.Module:
    """Return an eval-mode copy with every weight norm folded into plain weights (norms.py).

    Handles torch.nn.utils.weight_norm / spectral_norm hooks, torch.nn.utils.parametrize
    parametrizations, locuslab/deq's WeightNorm and torchdeq's apply_norm norms, each refreshed
    first so the folded weight is the one the model computes when it runs. A weight computed
    by something else (a plain tensor attribute) is refused with ExportError; a norm computed
    inside forward() (e.g. torch.linalg.matrix_norm(W, ord=2)) does not export: move it into a
    parametrization (docs/guides/export-your-deq.md). The caller's module is left as it was.
    """
    return _fold(module)[0]


def _fold(module: nn.Module):
    try:
        return norms.fold(module)
    except norms.FoldError as err:
        raise ExportError(str(err)) from None


def _round(xs, nd=7):
    return [float(f"{float(v):.{nd}g}") for v in xs]


def _io(name, dtype, shape):
    return {"name": name, "dtype": dtype, "shape": [int(s) for s in shape]}


def _dtype(t: torch.Tensor) -> str:
    try:
        return {torch.float32: "float32", torch.int64: "int64"}[t.dtype]
    except KeyError:
        raise ExportError(f"tensors must be float32 or int64 (got {t.dtype}); cast them in the model") from None


def _data(t: torch.Tensor):
    return _round(t.flatten()) if t.is_floating_point() else [int(v) for v in t.flatten()]


def _tensor_json(t: torch.Tensor) -> dict:
    return {"dtype": _dtype(t), "shape": list(t.shape[1:]), "data": _data(t)}


class _Tupled(nn.Module):
    """A module whose outputs come back as a tuple in a fixed name order (for ONNX output names).

    The wrapped module sits under `attr`, which prefixes the exported node names; "head" keeps
    the head graph byte-identical to the one the recipes' former export.py wrote."""

    def __init__(self, inner, names, attr="inner"):
        super().__init__()
        self.attr, self.names = attr, list(names)
        setattr(self, attr, inner)

    def forward(self, *args):
        return _as_tuple(getattr(self, self.attr)(*args), self.names)


class _Method(nn.Module):
    """A method of one of the caller's modules (MDEQ's `model.predict`) as a module: the
    exporter folds a copy of the owner and calls the same method on the copy."""

    def __init__(self, owner: nn.Module, method: str):
        super().__init__()
        self.owner, self.method = owner, method

    def forward(self, *args):
        return getattr(self.owner, self.method)(*args)


def _as_module(obj, role: str) -> Optional[nn.Module]:
    if obj is None or isinstance(obj, nn.Module):
        return obj
    owner = getattr(obj, "__self__", None)
    if isinstance(owner, nn.Module) and callable(obj):
        return _Method(owner, obj.__name__)
    raise ExportError(f"{role} must be a torch.nn.Module or a method of one, such as model.predict "
                      f"(got {type(obj).__name__}): the exporter copies its owner to fold norms")


def _one_input_after_z(cell: nn.Module) -> bool:
    """Whether the cell's signature takes exactly one argument after z (and no *args)."""
    fn = getattr(cell.owner, cell.method) if isinstance(cell, _Method) else cell.forward
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return False
    if any(p.kind == p.VAR_POSITIONAL for p in params):
        return False
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    required_after_z = [p for p in positional[1:] if p.default is p.empty]
    return len(positional) >= 2 and len(required_after_z) == 1


def _as_tuple(out, names) -> Tuple[torch.Tensor, ...]:
    if isinstance(out, dict):
        return tuple(out[n] for n in names)
    if isinstance(out, (tuple, list)):
        return tuple(out)
    return (out,)


def _cases(inputs: Inputs, default_name: str) -> Tuple[List[str], List[Dict[str, torch.Tensor]]]:
    """Normalizes parity inputs to (names, [ {name: [1, ...] tensor} per case ])."""
    named = dict(inputs) if isinstance(inputs, Mapping) else {default_name: inputs}
    names = list(named)
    per: Dict[str, List[torch.Tensor]] = {}
    for k, v in named.items():
        per[k] = [v[i:i + 1] for i in range(v.shape[0])] if isinstance(v, torch.Tensor) else list(v)
    counts = {len(v) for v in per.values()}
    if len(counts) != 1:
        raise ExportError(f"every parity input needs the same number of cases (got {dict((k, len(v)) for k, v in per.items())})")
    n = counts.pop()
    if n == 0:
        raise ExportError("parity_inputs is empty: give at least one input case")
    return names, [{k: per[k][i] for k in names} for i in range(n)]


def _solver_fn(method: str):
    return {"broyden": broyden, "anderson": anderson, "fixed-point": fixed_point}[method]


def run_solver(settings: dict, f, z0: torch.Tensor, restart: float = 0.0) -> dict:
    """Runs one of the reference solvers with manifest-style settings; adds `converged` per sample."""
    method = settings["method"]
    kw = dict(max_iter=int(settings["max_iter"]), tol=float(settings["tol"]), stop_mode=settings["stop_mode"])
    if method == "broyden":
        kw.update(m=int(settings.get("history", 8)), restart=restart)
    elif method == "anderson":
        kw.update(m=int(settings.get("history", 6)), lam=float(settings.get("anderson_lambda", 1e-4)),
                  beta=float(settings.get("anderson_beta", 1.0)))
    elif method == "fixed-point":
        kw.update(damping=float(settings.get("damping", 1.0)))
    else:
        raise ExportError(f"unknown solver method {method!r} (broyden, anderson, fixed-point)")
    res = _solver_fn(method)(f, z0, **kw)
    lowest = res["lowest"]
    res["converged"] = torch.isfinite(lowest) & (lowest < kw["tol"])
    return res


def parity_solver_for(solver: dict, parity_tol: float = PARITY_TOL) -> dict:
    """The parity solve: the bundle's own method and method settings, at a tolerance tight enough
    that two converged solves agree to well under the parity atol, with room to get there."""
    s = {k: v for k, v in solver.items() if k in ("method", "stop_mode", "history", "anderson_lambda",
                                                    "anderson_beta", "damping")}
    s["tol"] = min(float(solver["tol"]), parity_tol)
    s["max_iter"] = max(int(solver["max_iter"]), PARITY_MIN_ITER)
    return s


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


def _export(module, args, path, in_names, out_names, dyn):
    # Export in eval mode, and say so: torch.onnx.export sets the training flag of everything
    # under `module` back to module's own when it returns, so a wrapper left in training mode
    # would switch a BatchNorm or dropout inside it back to training for the parity solve.
    module.eval()
    kw = {}
    if "dynamo" in _export_params():
        kw["dynamo"] = False  # the TorchScript exporter: dynamic_axes as given (torch >= 2.5 has both)
    try:
        with rewrites.layer_norm_rewrite():
            torch.onnx.export(module, tuple(args), path, input_names=list(in_names), output_names=list(out_names),
                              dynamic_axes=dyn, opset_version=OPSET, do_constant_folding=True, export_params=True,
                              training=torch.onnx.TrainingMode.EVAL, **kw)
        rewrites.bool_add_to_or(path)
    except Exception as err:  # torch raises many types; name the graph and the usual causes
        raise ExportError(
            f"torch.onnx.export failed for {os.path.basename(path)}: {err}\n"
            "Common causes: a norm computed inside forward() (use torch.nn.utils.parametrize or "
            "parametrizations.spectral_norm, which fold_norms removes), data-dependent Python control "
            "flow, or an iterative solver inside the module (export the single cell f(z, x), not the "
            "DEQ layer). See docs/guides/export-your-deq.md.") from err
    finally:
        module.eval()


def _export_params():
    import inspect
    try:
        return inspect.signature(torch.onnx.export).parameters
    except (TypeError, ValueError):
        return {}


@contextlib.contextmanager
def _eval_mode(*modules):
    """The caller's modules in eval mode for the reference solve; their own flags restored after."""
    saved = [(m, m.training) for mod in modules if mod is not None for m in mod.modules()]
    try:
        for mod in modules:
            if mod is not None:
                mod.eval()
        yield
    finally:
        for m, flag in saved:
            m.training = flag


def _floor(cell, u, z: torch.Tensor, stop_mode: str) -> Optional[float]:
    """The float32 residual floor at z: how far one float32 evaluation of f is from the same
    evaluation in float64, in the stop mode's measure. A solve cannot resolve a residual
    below it. None when the cell does not run in float64."""
    try:
        c64 = copy.deepcopy(cell).double()
        with torch.no_grad():
            f32 = cell(z, *u).double()
            f64 = c64(z.double(), *[t.double() if t.is_floating_point() else t for t in u])
    except Exception:
        return None
    d = float((f32 - f64).norm())
    return d if stop_mode == "abs" else d / (float(f64.norm()) + 1e-9)


def _ceil_1sig(x: float) -> float:
    """x rounded up to one significant digit (a readable tolerance)."""
    import math
    e = math.floor(math.log10(x))
    return float(f"{math.ceil(x / 10 ** e)}e{e}")


def _write_atomically(out_dir: str, fill) -> None:
    """fill(tmp_dir) writes and checks the whole bundle in a fresh folder next to out_dir; only
    then does it replace out_dir (two renames), so no half-written or unchecked bundle is ever
    where the server looks. A failure leaves out_dir as it was."""
    out_dir = os.path.abspath(out_dir)
    parent = os.path.dirname(out_dir)
    os.makedirs(parent, exist_ok=True)
    if os.path.exists(out_dir) and (not os.path.isdir(out_dir) or (
            os.listdir(out_dir) and not os.path.exists(os.path.join(out_dir, "manifest.json")))):
        raise ExportError(f"{out_dir} exists and is not a bundle (no manifest.json): refusing to replace it")
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(out_dir)}.tmp-", dir=parent)
    try:
        fill(tmp)
        os.chmod(tmp, 0o755)
        if os.path.exists(out_dir):
            # Files of the folder's own (a TRAINING.md) stay; the old bundle's graphs and json go.
            for entry in os.listdir(out_dir):
                if not os.path.exists(os.path.join(tmp, entry)) and not entry.endswith(".onnx") \
                        and entry not in ("manifest.json", "parity.json"):
                    os.rename(os.path.join(out_dir, entry), os.path.join(tmp, entry))
            old = tempfile.mkdtemp(prefix=f".{os.path.basename(out_dir)}.old-", dir=parent)
            os.rename(out_dir, os.path.join(old, "bundle"))
            os.rename(tmp, out_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _max_dev(a: Dict[str, torch.Tensor], b: Dict[str, torch.Tensor]) -> Tuple[float, str]:
    worst, name = 0.0, ""
    for k in a:
        if k not in b or tuple(a[k].shape) != tuple(b[k].shape):
            return float("inf"), k
        d = float((a[k].double() - b[k].double()).abs().max()) if a[k].numel() else 0.0
        if not d <= worst:  # NaN counts as the worst
            worst, name = (d if d == d else float("inf")), k
    return worst, name


def export_bundle(
    out_dir: str,
    inject: Optional[nn.Module],
    cell: nn.Module,
    head: Optional[nn.Module],
    *,
    parity_inputs: Inputs,
    name: str,
    task: str,
    description: str = "",
    version: str = "1",
    solver: Optional[dict] = None,
    parity_solver: Optional[dict] = None,
    provenance: Optional[dict] = None,
    labels: Optional[Sequence[str]] = None,
    preprocess: Optional[dict] = None,
    tokenizer: Optional[dict] = None,
    vocab: Optional[List[str]] = None,
    parity_extra: Optional[Dict[str, torch.Tensor]] = None,
    inject_outputs: Sequence[str] = ("u",),
    inject_to: Optional[str] = None,
    state_shape: Optional[Sequence] = None,
    state_outputs: Optional[Mapping[str, Tuple[int, Sequence[int]]]] = None,
    head_outputs: Sequence[str] = ("logits",),
    output_roles: Optional[Dict[str, str]] = None,
    parity_outputs: Optional[Sequence[str]] = None,
    parity_atol: float = 1e-3,
    parity_tol: Optional[float] = None,
    parity_cases: Optional[int] = None,
    include_z_star: bool = True,
    seq_dynamic: Optional[bool] = None,
    seq_axis: int = 0,
    state_pad: Optional[str] = None,
    reference: Optional[Callable[..., object]] = None,
    spectral_iters: int = 60,
    fp16_min_elements: int = 0,
    strict: bool = False,
) -> dict:
    """Write a bundle into out_dir and return the manifest dict (see docs/guides/export-your-deq.md).

    inject, cell, head: modules, or methods of modules (e.g. MDEQ's model.predict as the head);
                   inject and head are optional (None: the cell takes the raw inputs / the
                   outputs are z*).
    parity_inputs: model inputs [N, ...]: one tensor (named "x", or "tokens" for a language
                   model), or {name: tensor} for several named inputs (float32 or int64). A list
                   of [1, ...] tensors per case is accepted where cases differ in length.
    parity_extra:  extra head inputs per case, e.g. {"targets": int64 [N, T]} (LM).
    inject_outputs: names of inject's outputs, in the order it returns them; the cell is
                   called as cell(z, *inject_outputs), or cell(z, *inputs) without inject. When
                   inject returns a list (MDEQ's x_list), the cell gets it as one list argument.
    inject_to:     "first": with a list state, inject's single output is the injection of the
                   state's first element and the cell receives the list [u, 0, ..., 0], zeros
                   of the other elements' shapes (MDEQ: `downsample` injects only the highest
                   resolution, MDEQNet._forward appends zeros for the rest).
    state_shape:   per-sample shape of z (-1 = the sequence axis); defaults to the shape of
                   inject's single output. Required without inject or with several outputs.
                   A list (or tuple) of shapes makes the state a list (tuple) of tensors: the
                   cell and head receive that structure, the bundle stores it flat.
    seq_axis:      per-sample axis of the sequence in the state and in inject's outputs (1 for
                   a channels-first (B, d, T) state); the bundle stores it first.
    state_outputs: without a head: {name: (offset, shape)} slices of the flattened z*;
                   default one output "z_star" of the state's shape (one per element, "z0",
                   "z1", ..., for a list state).
    solver:        the manifest's default solver (method, tol, stop_mode, max_iter, history...).
    parity_solver: the reference solve; default: the solver's method and settings at
                   tol min(solver.tol, parity_tol), max_iter >= 200.
    parity_tol:    the reference solve's tolerance; default 1e-5, raised above the cell's
                   measured float32 residual floor when the solve stalls there.
    reference:     your model as it runs, reference(*inputs, *extra) -> outputs (a tensor, a
                   tuple in output order, or a dict by name): parity records its outputs.
                   Default: your inject, cell and head themselves (not the exporter's folded
                   copy), in eval mode, solved with the parity solver.
    parity_cases:  if set, only the first parity_cases inputs are used (in order; none is
                   left out for being hard, and provenance.parity_selection says so).
    strict:        raise ExportError when a reference solve, or the default solver, does not
                   converge on a parity input (else warn); nothing is written then.
    state_pad:     "right" declares the cell causal along the sequence axis (state.pad in the
                   manifest), so deq-serve may right-pad windows of different lengths into one
                   solve; checked on the first parity input (check_causal) before anything is written.

    Everything is checked before out_dir changes: the graphs (onnx.checker), the manifest
    (the server's JSON Schema and its cross-field checks), and parity of the exported graphs'
    PyTorch copy against your model within parity_atol (ExportError otherwise). The bundle is
    written into a temporary folder next to out_dir, which then replaces out_dir.
    """
    if task not in TASKS:
        raise ExportError(f"task must be one of {', '.join(TASKS)} (got {task!r}); a model that is not an "
                          "image classifier or a language model is a 'tensor' model")
    if task != "tensor" and (inject is None or head is None):
        raise ExportError(f"a {task} bundle needs inject and head graphs; use task='tensor' for f(z, x) without them")
    is_lm = task == "language-model"
    if seq_dynamic is None:
        seq_dynamic = is_lm
    inject, cell, head = _as_module(inject, "inject"), _as_module(cell, "cell"), _as_module(head, "head")
    kind, shapes = layout.parse_state_shape(state_shape, seq_axis)
    if seq_axis < 0 and shapes is not None and kind == "tensor":
        seq_axis += len(shapes[0])
    if seq_axis != 0 and kind != "tensor":
        raise ExportError("seq_axis applies to a single-tensor state, not to a list or tuple state")
    if kind != "tensor" and any(-1 in s for s in shapes):
        raise ExportError(f"a {kind}-valued state is stored flat, so its shapes must be fixed (got {shapes}); "
                          "a sequence model's state is one tensor")
    if seq_axis != 0 and shapes is None and inject is None:
        raise ExportError("seq_axis needs state_shape (in your layout, e.g. [d, -1]) or an inject graph")
    stale: List[str] = []  # "graph.path.weight (...)": weights the model recomputes when it runs

    def folded(role, mod):
        if mod is None:
            return None
        m, notes = _fold(mod)
        stale.extend(f"{role}.{n}" for n in notes)
        return m

    inject_m, cell_m, head_m = folded("inject", inject), folded("cell", cell), folded("head", head)

    solver = dict(solver or DEFAULT_SOLVER)
    auto_tol = parity_tol is None and parity_solver is None
    psolver = dict(parity_solver) if parity_solver else parity_solver_for(solver, PARITY_TOL if parity_tol is None else parity_tol)
    provenance = dict(provenance or {})
    provenance.setdefault("framework", f"torch {torch.__version__.split('+')[0]}")
    extra_names = list((parity_extra or {}).keys())
    head_outputs = list(head_outputs)
    inject_outputs = list(inject_outputs)

    in_names, cases_in = _cases(parity_inputs, "tokens" if is_lm else "x")
    if parity_extra:
        extra_names, cases_extra = _cases(parity_extra, "")
        if len(cases_extra) != len(cases_in):
            raise ExportError("parity_extra needs one entry per parity input case")
    else:
        cases_extra = [{} for _ in cases_in]
    n_candidates = len(cases_in)
    if parity_cases:
        cases_in, cases_extra = cases_in[:parity_cases], cases_extra[:parity_cases]
    provenance["parity_selection"] = (
        f"{len(cases_in)} of {n_candidates} candidate inputs used, the first {len(cases_in)} in order"
        + (" (parity_cases cap)" if len(cases_in) < n_candidates else "")
        + "; none left out for being hard to solve")

    # The same adapters wrap the exporter's folded copies (exported) and the caller's own
    # modules (the reference): the user's modules receive their own state structure and layout.
    def adapt(inj, cel, hed, lay):
        if lay is None and not pack_u:
            return inj, cel, hed
        lay = lay or layout.StateLayout(shapes)
        move = lay.moved and inj is not None
        return ((layout.InjectAdapter(inj, lay.seq_axis) if move else inj),
                layout.CellAdapter(cel, lay, move, pack_u and (list if inject_to == "first" else type(raw)),
                                   zero_rest=inject_to == "first"),
                (layout.HeadAdapter(hed, lay) if hed is not None else None))

    def injected_by(inj, xs: Dict[str, torch.Tensor]) -> Tuple[torch.Tensor, ...]:
        if inj is None:
            return tuple(xs[k] for k in in_names)
        return _as_tuple(inj(*[xs[k] for k in in_names]), inject_outputs)

    def seq_len(xs: Dict[str, torch.Tensor]) -> Optional[int]:
        first = xs[in_names[0]]
        return int(first.shape[1]) if seq_dynamic and first.dim() >= 2 else None

    x_ex, extra_ex = cases_in[0], [cases_extra[0][k] for k in extra_names]
    with torch.no_grad():
        raw = inject_m(*[x_ex[k] for k in in_names]) if inject_m is not None else None
    # A list of injections (MDEQ's x_list), or a tuple for a cell that takes one injection argument
    # (deq-zoo's DEQ-INR: u = injection(x) is a tuple of chunks, f(z, u) indexes it): the cell
    # receives the list (tuple) as one argument.
    if inject_to not in (None, "first"):
        raise ExportError(f"inject_to must be None or 'first' (got {inject_to!r})")
    if inject_to == "first":
        if kind != "list" or inject_m is None or not isinstance(raw, torch.Tensor):
            raise ExportError("inject_to='first' needs a list state_shape and an inject that returns one tensor "
                              "(the first element's injection)")
        if list(raw.shape[1:]) != list(shapes[0]):
            raise ExportError(f"inject_to='first': inject's output has per-sample shape {list(raw.shape[1:])}, "
                              f"the state's first element {list(shapes[0])}")
    pack_u = (inject_to == "first" or isinstance(raw, list)
              or (isinstance(raw, tuple) and len(raw) > 1 and _one_input_after_z(cell)))
    if isinstance(raw, (list, tuple)) and len(raw) > 1 and list(inject_outputs) == ["u"]:
        inject_outputs = [f"u{i}" for i in range(len(raw))]  # the default name, numbered per element
    cell_arg_names = inject_outputs if inject_m is not None else in_names
    if shapes is None:
        with torch.no_grad():
            u_user = injected_by(inject_m, x_ex)
        if inject_m is None or len(u_user) != 1:
            raise ExportError("state_shape is required when there is no inject graph or it has several outputs")
        shapes = [list(u_user[0].shape[1:])]
        if seq_dynamic and len(shapes[0]) > seq_axis:
            shapes[0][seq_axis] = -1
    lay = layout.StateLayout(shapes, kind, seq_axis) if (kind != "tensor" or seq_axis != 0) else None
    inject_e, cell_e, head_e = adapt(inject_m, cell_m, head_m, lay)      # exported: the folded copies
    inject_u, cell_u, head_u = adapt(inject, cell, head, lay)            # the caller's modules, as they run
    bundle_state = lay.bundle_shape() if lay is not None else list(shapes[0])

    def state_dims(xs) -> List[int]:
        return [seq_len(xs) if d == -1 else int(d) for d in bundle_state]

    with torch.no_grad():
        u_ex = injected_by(inject_e, x_ex)
    if inject_m is not None and len(u_ex) != len(inject_outputs):
        raise ExportError(f"inject returns {len(u_ex)} tensors but inject_outputs names {len(inject_outputs)}")
    z_ex = torch.zeros(1, *state_dims(x_ex))
    try:
        with torch.no_grad():
            zn = cell_e(z_ex, *u_ex)
    except Exception as err:
        given = "state_shape=" + json.dumps(state_shape) if state_shape is not None else \
            "no state_shape (taken from inject's output)"
        raise ExportError(
            f"cell(z, ...) failed on a zero state of per-sample shape {list(lay.shapes[0] if lay else z_ex.shape[1:])} "
            f"({given}{', seq_axis=%d' % seq_axis if seq_axis else ''}): {type(err).__name__}: {err}\n"
            "Pass state_shape= with the shape of one sample of the state your cell takes (-1 for the "
            "sequence axis); for a channels-first sequence state (B, d, T) also pass seq_axis=1.") from err
    if tuple(zn.shape) != tuple(z_ex.shape):
        raise ExportError(f"cell(z, ...) must return z's shape {list(z_ex.shape)} (got {list(zn.shape)})")
    n_state = z_ex[0].numel()

    if head_m is None:
        if state_outputs is not None:
            slices = dict(state_outputs)
        elif lay is not None and lay.structured:
            slices = {f"z{i}": (off, shp) for i, (off, shp) in enumerate(zip(lay.offsets(), lay.shapes))}
        else:
            slices = {"z_star": (0, bundle_state)}
        for k, (off, shp) in slices.items():
            if -1 in shp:
                ok = off == 0 and len(slices) == 1  # a dynamic state is served whole
            else:
                size = 1
                for d in shp:
                    size *= d
                ok = off >= 0 and size >= 1 and off + size <= n_state
            if not ok:
                raise ExportError(f"state_outputs[{k!r}] = ({off}, {list(shp)}) does not fit the state of {n_state} values")
        out_names = list(slices)
    else:
        out_names = head_outputs

    def outputs_by(hd, z: torch.Tensor, extra: List[torch.Tensor]) -> Dict[str, torch.Tensor]:
        if hd is None:
            flat = z.reshape(1, -1)
            res = {}
            for k, (off, shp) in slices.items():
                if -1 in shp:
                    res[k] = z
                else:
                    size = 1
                    for d in shp:
                        size *= d
                    res[k] = flat[:, off:off + size].reshape(1, *shp)
            return res
        return dict(zip(head_outputs, _as_tuple(hd(z, *extra), head_outputs)))

    with torch.no_grad():
        h_ex = outputs_by(head_e, z_ex, extra_ex)

    def dyn(t: torch.Tensor) -> Dict[int, str]:
        d = {0: "batch"}
        if seq_dynamic and t.dim() >= 2:
            d[1] = "seq"
        return d

    def per_sample_shape(t: torch.Tensor) -> List[int]:
        s = list(t.shape[1:])
        if seq_dynamic and t.dim() >= 2:
            s[0] = -1
        return s

    if state_pad is not None:
        if state_pad != "right":
            raise ExportError(f"state_pad must be 'right' or None (got {state_pad!r})")
        spec = bundle_state if state_shape is not None or lay is not None else per_sample_shape(z_ex)
        if not seq_dynamic or not spec or spec[0] != -1 or -1 in spec[1:]:
            raise ExportError(f"state_pad='right' pads the sequence axis: the state must be [-1, ...] with no other "
                              f"symbolic dim (got {spec}; seq_dynamic={seq_dynamic})")
        check_causal(cell_e, z_ex, u_ex)

    files = {"cell": "cell.onnx"}
    if inject_m is not None:
        files["inject"] = "inject.onnx"
    if head_m is not None:
        files["head"] = "head.onnx"

    # ---- the manifest, built (and validated) before the slow part, with placeholder digests
    in_specs = [_io(k, _dtype(x_ex[k]), per_sample_shape(x_ex[k])) for k in in_names]
    state_spec = bundle_state if (state_shape is not None or lay is not None) else per_sample_shape(u_ex[0])

    def build_manifest(digest) -> dict:
        graphs = {}
        if inject_m is not None:
            graphs["inject"] = {"file": files["inject"], "sha256": digest("inject"), "inputs": in_specs,
                                "outputs": [_io(k, _dtype(t), per_sample_shape(t)) for k, t in zip(inject_outputs, u_ex)]}
        graphs["cell"] = {"file": files["cell"], "sha256": digest("cell"),
                          "inputs": [_io("z", "float32", state_spec)]
                          + ([_io(k, _dtype(t), per_sample_shape(t)) for k, t in zip(inject_outputs, u_ex)]
                             if inject_m is not None else in_specs),
                          "outputs": [_io("z_next", "float32", state_spec)]}
        if head_m is not None:
            graphs["head"] = {"file": files["head"], "sha256": digest("head"),
                              "inputs": [_io("z", "float32", state_spec)]
                              + [_io(k, _dtype(t), per_sample_shape(t)) for k, t in zip(extra_names, extra_ex)],
                              "outputs": [_io(k, _dtype(h_ex[k]), per_sample_shape(h_ex[k])) for k in head_outputs]}
        manifest = {
            "format": "deq-bundle",
            "format_version": 1,
            "name": name,
            "version": version,
            "task": task,
            "description": description,
            "graphs": graphs,
            "state": {"shape": state_spec, **({"pad": state_pad} if state_pad is not None else {})},
            "solver": solver,
        }
        if head_m is None:
            manifest["state_outputs"] = [{"name": k, "dtype": "float32", "shape": list(shp), "offset": int(off)}
                                         for k, (off, shp) in slices.items()]
        if preprocess is not None:
            manifest["preprocess"] = preprocess
        if tokenizer is not None:
            tok = dict(tokenizer)
            tok.setdefault("vocab_file", "vocab.json")
            tok["sha256"] = digest("vocab")
            manifest["tokenizer"] = tok
        if labels is not None:
            manifest["labels"] = list(labels)
        manifest["outputs"] = output_roles or {k: k for k in out_names}
        manifest["provenance"] = provenance
        manifest["parity"] = {"file": "parity.json", "sha256": digest("parity"), "atol": parity_atol}
        return manifest

    def validate(manifest: dict) -> None:
        problems = manifest_problems(json.loads(json.dumps(manifest)))
        if problems:
            raise ExportError("deq-serve would refuse this manifest:\n  " + "\n  ".join(problems))

    validate(build_manifest(lambda _k: "0" * 64))
    if tokenizer is not None and vocab is None:
        raise ExportError("tokenizer needs vocab= (the vocabulary list written to the bundle)")

    # ---- parity: your model as it runs (reference) against the graphs' PyTorch copy
    cases, radii, unconverged, floors = [], [], [], []
    flat_fns, copy_outs, ref_outs = [], [], []
    ref_owner = reference if isinstance(reference, nn.Module) else getattr(reference, "__self__", None)
    with _eval_mode(inject, cell, head, ref_owner if isinstance(ref_owner, nn.Module) else None):
        for i, (xs, ex) in enumerate(zip(cases_in, cases_extra)):
            extra_i = [ex[k] for k in extra_names]
            with torch.no_grad():
                u = injected_by(inject_e, xs)
                z0 = torch.zeros(1, *state_dims(xs))
                shape = z0.shape

                def f(zf, u=u, shape=shape):
                    return cell_e(zf.view(shape), *u).reshape(zf.shape[0], -1)

                flat_fns.append((f, z0.reshape(1, -1)))
                res = run_solver(psolver, f, z0.reshape(1, -1), restart=PARITY_RESTART)
                z_copy = res["result"].view(shape)
                copy_outs.append(outputs_by(head_e, z_copy, extra_i))
                if reference is None:
                    uu = injected_by(inject_u, xs)

                    def fu(zf, u=uu, shape=shape):
                        return cell_u(zf.view(shape), *u).reshape(zf.shape[0], -1)

                    res = run_solver(psolver, fu, z0.reshape(1, -1), restart=PARITY_RESTART)
                    z_star, fn = res["result"].view(shape), fu
                    ref_outs.append(outputs_by(head_u, z_star, extra_i))
                else:
                    z_star, fn = z_copy, f
                    got = reference(*[xs[k] for k in in_names], *extra_i)
                    ref_outs.append({k: torch.as_tensor(v).reshape(copy_outs[-1][k].shape)
                                     for k, v in zip(out_names, _as_tuple(got, out_names))}
                                    if not isinstance(got, dict) else
                                    {k: torch.as_tensor(got[k]).reshape(copy_outs[-1][k].shape) for k in out_names})
                a, r = residuals(fn(res["result"]), res["result"])
            converged = bool(res["converged"][0])
            if not converged:
                unconverged.append(i)
                floors.append(_floor(cell_e, u, z_copy, psolver["stop_mode"]))
            radii.append(float(spectral_radius(lambda z, u=u: cell_e(z, *u), z_copy, n_iters=spectral_iters)[0]))
            case = {"inputs": {k: _tensor_json(xs[k]) for k in in_names}}
            if extra_names:
                case["extra_inputs"] = {k: _tensor_json(t) for k, t in zip(extra_names, extra_i)}
            case["z_star_norm"] = float(z_star.norm())
            case["reference"] = {"method": psolver["method"], "converged": converged, "nstep": int(res["nstep"][0]),
                                 "residual": float(res["lowest"][0]), "abs_residual": float(a[0]),
                                 "rel_residual": float(r[0])}
            if reference is not None:
                case["reference"]["outputs_from"] = "reference callable"
            if include_z_star:
                case["z_star"] = _round(z_star.flatten())
            case["outputs"] = {k: _data(ref_outs[-1][k]) for k in (parity_outputs or out_names)}
            cases.append(case)

    # The float32 floor: a solve that stalls just above it is as converged as float32 allows.
    known = [fl for fl in floors if fl is not None]
    if unconverged and known:
        floor = max(known)
        stalled = [i for i in unconverged if cases[i]["reference"]["residual"] < 10 * floor]
        if auto_tol and len(stalled) == len(unconverged):
            psolver["tol"] = max(psolver["tol"], _ceil_1sig(10 * floor))
            for c in cases:
                c["reference"]["converged"] = c["reference"]["residual"] < psolver["tol"]
            unconverged = [i for i, c in enumerate(cases) if not c["reference"]["converged"]]
            provenance["parity_tol"] = (f"{psolver['tol']:g}: 10x the float32 residual floor {floor:.2g} "
                                        f"({psolver['stop_mode']}) measured at z*, above the default {PARITY_TOL:g}")
        elif stalled:
            print(f"WARNING: the reference solve stalls at the float32 residual floor ({floor:.2g}, "
                  f"{psolver['stop_mode']}) on parity case(s) {stalled}: parity_tol={psolver['tol']:g} is below what "
                  f"float32 can resolve. Pass parity_tol={_ceil_1sig(10 * floor):g}.", file=sys.stderr)
    if unconverged:
        msg = (f"PARITY FAIL: the reference {psolver['method']} solve (tol {psolver['tol']}, {psolver['stop_mode']}, "
               f"max_iter {psolver['max_iter']}) did not converge on parity case(s) {unconverged} of {len(cases)}; "
               "the bundle will fail `deq-serve inspect`. Pass parity_solver= with a solver that converges on this "
               "model (see the stability note), or make the cell contractive (spectral radius < 1).")
        if strict:
            raise ExportError(msg)
        print(f"WARNING: {msg}", file=sys.stderr)

    # The graphs are the folded copy; parity is your model. They must agree before anything is written.
    worst = max(((*_max_dev(c, r_), i) for i, (c, r_) in enumerate(zip(copy_outs, ref_outs))),
                key=lambda t: t[0] if t[0] == t[0] else float("inf"))
    provenance["export_parity"] = {"max_abs_diff": float(f"{worst[0]:.3g}"), "atol": parity_atol,
                                   "against": "reference callable" if reference is not None else "your modules, eval mode"}
    if not worst[0] <= parity_atol:
        hint = ""
        if stale:
            hint = ("\n  Weights your model recomputes when it runs differ from the stored attributes:\n    "
                    + "\n    ".join(stale) + "\n  The graphs use the recomputed weights. Run your model's reset "
                    "(torchdeq reset_norm(model); locuslab/deq the module's reset) before exporting, or pass "
                    "reference= (your model's own forward).")
        raise ExportError(
            f"PARITY FAIL: the exported graphs' outputs differ from your model's by {worst[0]:.3g} (output "
            f"{worst[1]!r}, parity case {worst[2]}; parity_atol {parity_atol}); nothing was written." + hint)

    parity = {"solver": {k: psolver[k] for k in ("method", "tol", "stop_mode", "max_iter")}, "cases": cases}
    parity["solver"].update({k: psolver[k] for k in ("history", "anderson_lambda", "anderson_beta", "damping") if k in psolver})
    provenance["spectral_radius"] = round(sum(radii) / len(radii), 4)
    provenance["spectral_radius_max"] = round(max(radii), 4)
    provenance["stability"] = stability_check(solver, flat_fns, provenance["spectral_radius_max"], n_state)
    served = provenance["stability"]["default"]
    if served["converged"] < served["of"]:
        # deq-serve inspect fails such a bundle: its default solver serves something other
        # than the fixed point for these inputs (parity is about what is served).
        msg = (f"PARITY FAIL: the manifest's default solver ({solver['method']}, tol {solver['tol']}, max_iter "
               f"{solver['max_iter']}) converges on only {served['converged']} of {served['of']} parity inputs; "
               "`deq-serve inspect` will fail this bundle. Pass the suggested solver= (see the stability note).")
        if strict:
            raise ExportError(msg)
        print(f"WARNING: {msg}", file=sys.stderr)

    result = {}

    def fill(tmp: str) -> None:
        path = {k: os.path.join(tmp, v) for k, v in files.items()}
        with torch.no_grad():
            if inject_m is not None:
                dax = {k: dyn(x_ex[k]) for k in in_names}
                dax.update({k: dyn(t) for k, t in zip(inject_outputs, u_ex)})
                # one output: exported as is (node names as the former export.py wrote them)
                module = inject_e if len(inject_outputs) == 1 else _Tupled(inject_e, inject_outputs, "inject")
                _export(module, [x_ex[k] for k in in_names], path["inject"], in_names, inject_outputs, dax)
            dax = {"z": dyn(z_ex), "z_next": dyn(z_ex)}
            dax.update({k: dyn(t) for k, t in zip(cell_arg_names, u_ex)})
            _export(cell_e, [z_ex, *u_ex], path["cell"], ["z", *cell_arg_names], ["z_next"], dax)
            if head_m is not None:
                dax = {"z": dyn(z_ex)}
                dax.update({k: dyn(t) for k, t in zip(extra_names, extra_ex)})
                dax.update({k: dyn(t) for k, t in h_ex.items()})
                _export(_Tupled(head_e, head_outputs, "head"), [z_ex, *extra_ex], path["head"], ["z", *extra_names],
                        head_outputs, dax)
        if fp16_min_elements > 0:
            for p in path.values():
                store_fp16(p, fp16_min_elements)
        for p in path.values():
            try:
                check_onnx(p)
            except Exception as err:
                raise ExportError(f"{os.path.basename(p)} is not a valid ONNX graph ({type(err).__name__}: {err}); "
                                  "nothing was written") from err
        with open(os.path.join(tmp, "parity.json"), "w") as fh:
            json.dump(parity, fh, separators=(",", ":"))
        digests = {k: sha256_file(p) for k, p in path.items()}
        digests["parity"] = sha256_file(os.path.join(tmp, "parity.json"))
        if tokenizer is not None:
            vf = os.path.join(tmp, tokenizer.get("vocab_file", "vocab.json"))
            with open(vf, "w") as fh:
                json.dump(list(vocab), fh, ensure_ascii=False)
            digests["vocab"] = sha256_file(vf)
        manifest = build_manifest(lambda k: digests[k])
        validate(manifest)
        with open(os.path.join(tmp, "manifest.json"), "w") as fh:
            json.dump(manifest, fh, indent=2)
            fh.write("\n")
        result["manifest"] = manifest

    _write_atomically(out_dir, fill)
    return result["manifest"]


def check_causal(cell: nn.Module, z: torch.Tensor, args: Sequence[torch.Tensor], atol: float = 1e-4) -> None:
    """Raise ExportError unless cell(z, *args) is causal along axis 1 (the sequence axis).

    For a few cuts t, the cell run on the first t positions of z and of every input with that
    axis must give the first t positions of the cell run on all of them: what deq-serve
    relies on when it right-pads a window to share a solve (manifest state.pad "right").
    z is random here, the inputs are the first parity input's.
    """
    T = int(z.shape[1])
    if T < 2:
        raise ExportError("state_pad: the first parity input needs at least 2 positions to check that the cell is causal")
    g = torch.Generator().manual_seed(0)
    zr = torch.randn(z.shape, generator=g)
    with torch.no_grad():
        full = cell(zr, *args)
        for t in sorted({1, T // 2, T - 1}):
            cut = [a[:, :t] if a.dim() >= 2 and a.shape[1] == T else a for a in args]
            diff = float((cell(zr[:, :t], *cut) - full[:, :t]).abs().max())
            if not diff <= atol:
                raise ExportError(f"state_pad='right' needs a cell that is causal along the sequence axis: its output at "
                                  f"positions < {t} changed by {diff:.3g} when positions {t}..{T - 1} were removed "
                                  "(mask attention to keys <= the query, and add positions in inject)")


def stability_check(solver: dict, flat_fns, rho_max: float, n_state: Optional[int] = None) -> dict:
    """Runs the manifest's default solver on every parity input, then, if it fails on some, the
    other settings with the same tol: each method at the same and 4x the iteration cap, and
    Broyden / Anderson with a larger history (memory); warns (stderr) with the first that
    converges everywhere. n_state (values per sample) lets the warning state a history's memory."""
    def run(settings):
        ok = 0
        for f, z0 in flat_fns:
            with torch.no_grad():
                ok += int(bool(run_solver(settings, f, z0, restart=PARITY_RESTART)["converged"][0]))
        return ok

    n = len(flat_fns)
    default_ok = run(solver)
    report = {"default": {"method": solver["method"], "converged": default_ok, "of": n}}
    if default_ok == n:
        return report
    base = {k: solver[k] for k in ("tol", "stop_mode")}
    cap = int(solver["max_iter"])
    alternatives = []
    tried = set()

    def attempt(s):
        key = json.dumps(s, sort_keys=True)
        if key in tried:
            return False
        tried.add(key)
        ok = run(s)
        alternatives.append({"solver": s, "converged": ok, "of": n})
        return ok == n

    for method, extra in (("fixed-point", {}), ("anderson", {"history": 6}),
                          ("broyden", {"history": solver.get("history", 8)})):
        settings = dict(solver) if method == solver["method"] else {**base, "method": method, **extra}
        for max_iter in (cap, 4 * cap):
            if method == solver["method"] and max_iter == cap:
                continue  # that is the default, already run
            if attempt({**settings, "max_iter": max_iter}):
                break  # the smaller cap is enough for this method
    if not any(a["converged"] == n for a in alternatives):
        # A conv DEQ (spectral radius near 1) can stall with a short history where the reference
        # Broyden, which keeps every update, converges: search the memory size too.
        for method in ("broyden", "anderson"):
            settings = dict(solver) if method == solver["method"] else {**base, "method": method}
            for history in HISTORY_SEARCH:
                if history <= int(settings.get("history", 8 if method == "broyden" else 6)):
                    continue
                if attempt({**settings, "history": history, "max_iter": max(4 * cap, history)}):
                    break
    report["alternatives"] = alternatives
    works = [a for a in alternatives if a["converged"] == n]
    best = works[0]["solver"] if works else None
    report["suggestion"] = best

    def memory(s):
        if n_state is None or s["method"] == "fixed-point":
            return ""
        # The TypeScript solvers keep 2 x history float64 vectors per sample (Broyden U, V; Anderson X, F).
        return f" (history memory {2 * int(s.get('history', 8)) * n_state * 8 / 2 ** 20:.3g} MiB per sample)"

    lines = [f"WARNING (stability): the default solver ({solver['method']}, tol {solver['tol']} {solver['stop_mode']}, "
             f"max_iter {solver['max_iter']}) converges on only {default_ok} of {n} parity inputs, so served "
             "outputs for such inputs are not the model's fixed point."]
    for a in alternatives:
        s = a["solver"]
        hist = f" history {s['history']:<3}" if "history" in s and s["method"] != "fixed-point" else ""
        lines.append(f"  {s['method']:<11} max_iter {s['max_iter']:<4}{hist}: converges on {a['converged']} of {n}")
    if best:
        lines.append(f"  Suggested manifest solver: {json.dumps(best)} (pass it as solver=...){memory(best)}.")
    else:
        lines.append(f"  No solver tried converges on every input (estimated spectral radius of J_f at z* up to "
                     f"{rho_max}{'; the cell is not a contraction there' if rho_max >= 1 else ''}). Train with "
                     "Jacobian regularization or a spectral-norm parametrization, or loosen tol.")
    print("\n".join(lines), file=sys.stderr)
    return report
