"""Folding weight norms into plain weights, on a copy of the caller's modules.

Norms are recognized by what they do, not by their class name (locuslab/deq's own class is
also called `WeightNorm`):

- a forward pre-hook object with a `remove(module)` method and a `name` or `names`
  attribute: PyTorch's `torch.nn.utils.weight_norm` / `spectral_norm` hooks, and
  locuslab/deq's `lib/optimizations.WeightNorm` (whose hook is a no-op: the model calls its
  `reset(module)` in forward);
- an object in a module's `_deq_norm` attribute with `remove(module)` and `names`:
  torchdeq's `apply_norm` (its `reset_norm` recomputes `.weight` in the model's forward);
- `torch.nn.utils.parametrize` parametrizations.

Each norm is refreshed first (its own reset, or its hook run in eval mode), so the folded
weight is the one the model computes when it runs, never a stale `.weight` attribute.
"""
from __future__ import annotations

import copy
from typing import Dict, List, Optional, Tuple

import torch
from torch import nn


class FoldError(RuntimeError):
    """A module holds a computed weight that no recognized norm explains (export.py re-raises it as ExportError)."""


# Layers whose `weight` / `bias` are parameters unless something computes them outside forward().
_PARAM_LAYERS = (nn.Linear, nn.modules.conv._ConvNd, nn.Embedding, nn.modules.batchnorm._NormBase,
                 nn.LayerNorm, nn.GroupNorm)


def _names(obj) -> Optional[List[str]]:
    """The weight names a norm object manages, or None when obj does not behave like a norm."""
    if not callable(getattr(obj, "remove", None)):
        return None
    names = getattr(obj, "names", None)
    if names is None:
        names = getattr(obj, "name", None)
    if isinstance(names, str):
        return [names]
    if isinstance(names, (list, tuple)) and names and all(isinstance(n, str) for n in names):
        return list(names)
    return None


def copy_module(module: nn.Module) -> nn.Module:
    """copy.deepcopy that also copies computed (non-leaf) tensor attributes, as detached clones.

    torchdeq and locuslab/deq keep the normalized weight as a plain attribute computed with
    autograd, which deepcopy refuses ("Only Tensors created explicitly by the user ...").
    The caller's module is not touched."""
    memo: Dict[int, object] = {}
    for sub in module.modules():
        for value in vars(sub).values():
            if isinstance(value, torch.Tensor) and not value.is_leaf:
                memo[id(value)] = value.detach().clone()
    return copy.deepcopy(module, memo)


def _tensor(sub: nn.Module, name: str) -> Optional[torch.Tensor]:
    v = getattr(sub, name, None)
    return v.detach().clone() if isinstance(v, torch.Tensor) else None


def fold(module: nn.Module) -> Tuple[nn.Module, List[str]]:
    """Return (eval-mode copy with every recognized norm folded, notes on stale weights).

    A note is written for each weight whose stored attribute differed from what its norm
    computes: the model recomputes it when it runs, so calling the module as it stands
    (without the model's reset) gives other outputs than the bundle."""
    computed = {(path, k) for path, sub in module.named_modules() for k, v in vars(sub).items()
                if isinstance(v, torch.Tensor) and not v.is_leaf}
    m = copy_module(module).eval()
    stale: List[str] = []
    with torch.no_grad():
        for path, sub in m.named_modules():
            found = [(key, hook, True) for key, hook in list(sub._forward_pre_hooks.items()) if _names(hook)]
            deq_norm = vars(sub).get("_deq_norm")
            if deq_norm is not None and _names(deq_norm):
                found.append(("_deq_norm", deq_norm, False))
            for key, norm, is_hook in found:
                names = _names(norm)
                before = {n: _tensor(sub, n) for n in names}
                if callable(getattr(norm, "reset", None)):
                    norm.reset(sub)            # locuslab/deq: the model calls reset() in forward
                elif is_hook:
                    norm(sub, ())              # PyTorch's hooks recompute on every call
                else:
                    norm(sub)                  # torchdeq: reset_norm calls the norm on the module
                fresh = {n: _tensor(sub, n) for n in names}
                for n in names:
                    b, f = before[n], fresh[n]
                    if b is not None and f is not None and b.shape == f.shape:
                        d = float((b - f).abs().max()) if b.numel() else 0.0
                        if d > 0:
                            where = f"{path}.{n}" if path else n
                            stale.append(f"{where} (its {type(norm).__module__}.{type(norm).__name__} "
                                         f"recomputes it; the stored attribute differs by {d:.3g})")
                try:
                    norm.remove(sub)
                except Exception:  # a norm whose remove() needs more: set the refreshed values ourselves
                    for n in names:
                        if n in vars(sub):
                            delattr(sub, n)
                        if fresh[n] is not None:
                            sub._parameters.pop(n, None)
                            sub.register_parameter(n, nn.Parameter(fresh[n]))
                if is_hook:
                    sub._forward_pre_hooks.pop(key, None)
                else:
                    vars(sub).pop("_deq_norm", None)
                for n in names:  # what remove() left must be the refreshed weight, as a parameter
                    if fresh[n] is not None:
                        if n in vars(sub):
                            delattr(sub, n)
                        sub._parameters[n] = nn.Parameter(fresh[n], requires_grad=False)
            if "parametrizations" in sub._modules:
                # Not torch's remove_parametrizations: it deletes the property from the generated
                # Parametrized<Module> class, which the copy shares with the caller's module,
                # and so breaks the caller's model. Swap this instance back to its plain class.
                values = {name: getattr(sub, name).detach().clone() for name in sub.parametrizations.keys()}
                sub.__class__ = sub.__class__.__bases__[0]
                del sub._modules["parametrizations"]
                for name, value in values.items():
                    sub.register_parameter(name, nn.Parameter(value, requires_grad=False))
    _refuse_computed(m, computed)
    for p in m.parameters():
        p.requires_grad_(False)
    return m, stale


def _refuse_computed(m: nn.Module, computed) -> None:
    """Raise FoldError for a weight held as a plain tensor attribute that no norm explained."""
    for path, sub in m.named_modules():
        for k, v in vars(sub).items():
            if not isinstance(v, torch.Tensor):
                continue
            is_weight = isinstance(sub, _PARAM_LAYERS) and k in ("weight", "bias")
            if (path, k) in computed or is_weight:
                where = f"{path}.{k}" if path else k
                raise FoldError(
                    f"{where} ({type(sub).__name__}) is a tensor computed outside the module's parameters, by "
                    "something the exporter does not recognize as a norm, so its value may be stale. Fold it "
                    "yourself (register it as a torch.nn.utils.parametrize parametrization, or remove the norm "
                    "before export: torchdeq remove_norm, torch.nn.utils.remove_weight_norm), or make it a "
                    "parameter or buffer.")
