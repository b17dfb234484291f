"""The state as the user's modules see it, and as the bundle stores it.

A bundle's state is one float32 tensor whose symbolic sequence axis, if any, comes first
(per sample). Models written otherwise are adapted at the graph boundary, inside the
exported graphs, so the user's cell and head receive the structure they were written for:

- a list- or tuple-valued state (MDEQ's multi-resolution list, torchdeq's tuple states) is
  stored flat: the elements' values one after the other, in order;
- a channels-first sequence state (B, d, T) (the DEQ-Transformer) is stored (B, T, d): the
  sequence axis `seq_axis` of the state, and of inject's outputs, is moved to the front.
"""
from __future__ import annotations

from typing import List, Optional, Sequence

import torch
from torch import nn


class StateLayout:
    """How a flat / sequence-first bundle state maps to the user's state.

    shapes:   per-sample shapes of the state's elements (one for a plain tensor state)
    kind:     "tensor", "list" or "tuple"
    seq_axis: per-sample axis of the sequence in the user's state and inject outputs (0 = first)
    """

    def __init__(self, shapes: List[List[int]], kind: str = "tensor", seq_axis: int = 0):
        self.shapes, self.kind, self.seq_axis = shapes, kind, seq_axis
        self.sizes = []
        for s in shapes:
            n = 1
            for d in s:
                n *= d
            self.sizes.append(n)

    @property
    def structured(self) -> bool:
        return self.kind != "tensor"

    @property
    def moved(self) -> bool:
        return self.seq_axis != 0

    def bundle_shape(self) -> List[int]:
        """The manifest's state.shape."""
        if self.structured:
            return [sum(self.sizes)]
        s = list(self.shapes[0])
        if self.moved:
            s.insert(0, s.pop(self.seq_axis))
        return s

    def offsets(self) -> List[int]:
        out, off = [], 0
        for n in self.sizes:
            out.append(off)
            off += n
        return out

    def to_user(self, z: torch.Tensor):
        if self.structured:
            parts, off = [], 0
            for shape, n in zip(self.shapes, self.sizes):
                parts.append(z[:, off:off + n].reshape(z.shape[0], *shape))
                off += n
            return parts if self.kind == "list" else tuple(parts)
        return torch.movedim(z, 1, 1 + self.seq_axis) if self.moved else z

    def to_bundle(self, z) -> torch.Tensor:
        if self.structured:
            if not isinstance(z, (list, tuple)) or len(z) != len(self.shapes):
                raise TypeError(f"the cell must return a {self.kind} of {len(self.shapes)} tensors, as its state "
                                f"(state_shape has {len(self.shapes)} elements)")
            return torch.cat([t.reshape(t.shape[0], -1) for t in z], dim=1)
        return torch.movedim(z, 1 + self.seq_axis, 1) if self.moved else z


def _move_in(t: torch.Tensor, seq_axis: int) -> torch.Tensor:
    return torch.movedim(t, 1 + seq_axis, 1) if t.dim() > 1 + seq_axis else t


def _move_out(t: torch.Tensor, seq_axis: int) -> torch.Tensor:
    return torch.movedim(t, 1, 1 + seq_axis) if t.dim() > 1 + seq_axis else t


class InjectAdapter(nn.Module):
    """inject with its outputs moved to the bundle's sequence-first layout."""

    def __init__(self, inject: nn.Module, seq_axis: int):
        super().__init__()
        self.inject, self.seq_axis = inject, seq_axis

    def forward(self, *xs):
        out = self.inject(*xs)
        if isinstance(out, (tuple, list)):
            return tuple(_move_in(t, self.seq_axis) for t in out)
        if isinstance(out, dict):
            return {k: _move_in(t, self.seq_axis) for k, t in out.items()}
        return _move_in(out, self.seq_axis)


class CellAdapter(nn.Module):
    """cell(z, *u) on the bundle's state: the user's cell gets its own state structure and layout."""

    def __init__(self, cell: nn.Module, layout: StateLayout, move_inputs: bool, pack_inputs=False, zero_rest=False):
        super().__init__()
        self.cell, self.layout, self.move_inputs, self.pack_inputs = cell, layout, move_inputs, pack_inputs
        self.zero_rest = zero_rest  # inject_to="first": zeros for the other elements' injections (MDEQ)

    def forward(self, z, *u):
        if self.move_inputs:
            u = tuple(_move_out(t, self.layout.seq_axis) for t in u)
        zs = self.layout.to_user(z)
        if self.zero_rest:
            u = (u[0], *[torch.zeros_like(t) for t in zs[1:]])
        if self.pack_inputs:  # inject returned a list (MDEQ's x_list) or a tuple the cell takes as one argument
            u = (tuple(u) if self.pack_inputs is tuple else list(u),)
        return self.layout.to_bundle(self.cell(zs, *u))


class HeadAdapter(nn.Module):
    """head(z, *extra) on the bundle's state."""

    def __init__(self, head: nn.Module, layout: StateLayout):
        super().__init__()
        self.head, self.layout = head, layout

    def forward(self, z, *extra):
        return self.head(self.layout.to_user(z), *extra)


def parse_state_shape(state_shape: Optional[Sequence], seq_axis: int):
    """(kind, [shapes]) from export_bundle's state_shape: a shape, or a list/tuple of shapes."""
    if state_shape is None:
        return "tensor", None
    if len(state_shape) and all(isinstance(s, (list, tuple, torch.Size)) for s in state_shape):
        kind = "tuple" if isinstance(state_shape, tuple) else "list"
        return kind, [[int(d) for d in s] for s in state_shape]
    return "tensor", [[int(d) for d in state_shape]]
