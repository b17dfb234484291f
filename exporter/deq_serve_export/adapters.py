"""inject, f and head of upstream models whose own code has no module for them.

locuslab/deq's DEQTransformerLM computes its injection, its cell's extra arguments and its
decoder inline in `_forward` / `forward`, around the solve. `deq_transformer_lm(model)` returns
the three pieces as modules that call the model's own submodules, so that exporting it is

    inject, cell, head = deq_transformer_lm(model)
    export_bundle(out, inject, cell, head, state_shape=[model.d_model, -1], seq_axis=1,
                  seq_dynamic=True, state_pad="right", head_outputs=["nll"],
                  parity_inputs={"tokens": x}, parity_extra={"targets": y}, ...)

(see docs/exporting.md). The modules hold the model itself, so its weight norm is folded and
its dropout is off in eval mode like every other module the exporter receives.
"""
from __future__ import annotations

from typing import Tuple

import torch
from torch import nn


class _DeqLmInject(nn.Module):
    """tokens (B, T) -> u (B, 3d, T): word embedding, input dropout, inject_conv (DEQTransformerLM._forward)."""

    def __init__(self, lm: nn.Module):
        super().__init__()
        self.lm = lm

    def forward(self, tokens):
        emb = self.lm.iodrop(self.lm.word_emb(tokens), self.lm.dropout)
        return self.lm.inject_conv(emb.transpose(1, 2))


class _DeqLmCell(nn.Module):
    """f(z, u) = func(z, u, z0, pos_emb) with no memory (z0 of length 0) and the positional embedding of
    the window's own length, as DEQTransformerLM._forward builds them."""

    def __init__(self, lm: nn.Module):
        super().__init__()
        self.lm = lm

    def forward(self, z, u):
        klen = z.shape[2]
        pos_emb = self.lm.pos_drop(self.lm.pos_emb(torch.arange(klen - 1, -1, -1.0, dtype=z.dtype)))
        return self.lm.func(z, u, z[:, :, :0], pos_emb)


class _DeqLmHead(nn.Module):
    """(z* (B, d, T), targets (B, T)) -> per-token NLL (B, T): output dropout and crit, as
    DEQTransformerLM.forward computes its loss."""

    def __init__(self, lm: nn.Module):
        super().__init__()
        self.lm = lm

    def forward(self, z, targets):
        bsz, d, qlen = z.shape
        hidden = self.lm.iodrop(z, self.lm.dropout).permute(0, 2, 1).reshape(-1, d)
        return self.lm.crit(hidden, targets.reshape(-1)).view(bsz, qlen)


def deq_transformer_lm(model: nn.Module) -> Tuple[nn.Module, nn.Module, nn.Module]:
    """inject, cell and head of locuslab/deq's DEQTransformerLM (DEQ-Sequence/models/deq_transformer.py),
    served without memory (each window on its own, `mems=None`). The state is channels-first
    (B, d_model, T); the head's output is the NLL of each target token, what the model's forward returns."""
    missing = [a for a in ("word_emb", "iodrop", "inject_conv", "pos_emb", "pos_drop", "func", "crit", "d_model",
                           "dropout") if not hasattr(model, a)]
    if missing:
        raise TypeError(f"deq_transformer_lm expects locuslab/deq's DEQTransformerLM; {type(model).__name__} "
                        f"has no {', '.join(missing)}")
    return _DeqLmInject(model), _DeqLmCell(model), _DeqLmHead(model)
