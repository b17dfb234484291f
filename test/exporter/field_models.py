"""Small modules of the project's own that reproduce what the field's DEQs do (issue #21).

locuslab/deq and torchdeq are not installed here (locuslab/deq is not a package); each class
below rebuilds one construct of theirs, written from how they behave:

- WeightNorm:      a class named `WeightNorm` that is not PyTorch's (locuslab/deq's
                   lib/optimizations.py): g/v parameters, a no-op forward pre-hook, and a
                   `reset(module)` the model calls in its forward;
- DeqStyleNorm:    a torchdeq-style norm kept in `module._deq_norm` that recomputes `.weight`
                   (with autograd, a non-leaf tensor) when the model calls `reset_norm`;
- BatchNorm head, a multi-output inject with dropout, a list-valued (multi-resolution)
  state, a channels-first (B, d, T) causal sequence state, and a float32 cell whose
  residual floor is above 1e-5.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def _norm_except(p: torch.Tensor, dim: int) -> torch.Tensor:
    shape = [1] * p.dim()
    shape[dim] = p.shape[dim]
    return p.transpose(0, dim).reshape(p.shape[dim], -1).norm(dim=1).reshape(shape)


class WeightNorm(object):
    """Same name as PyTorch's hook class, different attributes (`names`, not `name`)."""

    def __init__(self, names, dim):
        self.names, self.dim = names, dim

    def compute_weight(self, module, name):
        g, v = getattr(module, name + "_g"), getattr(module, name + "_v")
        return v * (g / _norm_except(v, self.dim))

    @staticmethod
    def apply(module, names, dim):
        fn = WeightNorm(names, dim)
        for name in names:
            w = getattr(module, name)
            del module._parameters[name]
            module.register_parameter(name + "_g", nn.Parameter(_norm_except(w, dim).data))
            module.register_parameter(name + "_v", nn.Parameter(w.data))
            setattr(module, name, fn.compute_weight(module, name))
        module.register_forward_pre_hook(fn)
        return fn

    def reset(self, module):
        for name in self.names:
            setattr(module, name, self.compute_weight(module, name))

    def remove(self, module):
        for name in self.names:
            w = self.compute_weight(module, name)
            delattr(module, name)
            del module._parameters[name + "_g"]
            del module._parameters[name + "_v"]
            module.register_parameter(name, nn.Parameter(w.data))

    def __call__(self, module, inputs):
        pass  # the model calls reset() once per forward instead


class DeqStyleNorm:
    """torchdeq-style: lives in module._deq_norm; __call__(module) recomputes the weight."""

    def __init__(self, names):
        self.names = names

    def compute_weight(self, module, name):
        v, g = getattr(module, name + "_v"), getattr(module, name + "_g")
        return v * (g / _norm_except(v, 0))

    @classmethod
    def apply(cls, module, names=("weight",)):
        fn = cls(list(names))
        for name in fn.names:
            w = getattr(module, name)
            del module._parameters[name]
            module.register_parameter(name + "_g", nn.Parameter(_norm_except(w, 0).data))
            module.register_parameter(name + "_v", nn.Parameter(w.data))
            setattr(module, name, fn.compute_weight(module, name))
        module._deq_norm = fn
        return fn

    def __call__(self, module):
        for name in self.names:
            setattr(module, name, self.compute_weight(module, name))

    def remove(self, module):
        for name in self.names:
            with torch.no_grad():
                w = self.compute_weight(module, name)
            delattr(module, name)
            del module._parameters[name + "_g"], module._parameters[name + "_v"]
            module.register_parameter(name, nn.Parameter(w.detach()))


def reset_deq_norms(model: nn.Module) -> None:
    for m in model.modules():
        if hasattr(m, "_deq_norm"):
            m._deq_norm(m)


# ---- a vector DEQ in three parts, with a locuslab-style weight norm on the cell
class LocusCell(nn.Module):
    def __init__(self, d=12):
        super().__init__()
        self.lin = nn.Linear(d, d)
        with torch.no_grad():
            self.lin.weight.mul_(0.5 / torch.linalg.matrix_norm(self.lin.weight, ord=2))
        self.lin_fn = WeightNorm.apply(self.lin, ["weight"], dim=0)

    def reset(self):
        self.lin_fn.reset(self.lin)

    def forward(self, z, u):
        return torch.tanh(self.lin(z) + u)


# ---- torchdeq-style: the model resets its norms at the start of forward; the cell does not
class TorchdeqStyleCell(nn.Module):
    def __init__(self, d=12):
        super().__init__()
        self.lin = nn.Linear(d, d)
        with torch.no_grad():
            self.lin.weight.mul_(0.5 / torch.linalg.matrix_norm(self.lin.weight, ord=2))
        DeqStyleNorm.apply(self.lin)

    def forward(self, z, u):
        return torch.tanh(self.lin(z) + u)


class TorchdeqStyleModel(nn.Module):
    """A whole DEQ as a researcher writes it: reset_norm, then solve, then decode."""

    def __init__(self, d=12, n_in=6, n_out=3):
        super().__init__()
        self.enc = nn.Linear(n_in, d)
        self.f = TorchdeqStyleCell(d)
        self.dec = nn.Linear(d, n_out)

    def forward(self, x):
        reset_deq_norms(self)
        u = self.enc(x)
        z = torch.zeros_like(u)
        for _ in range(400):  # the cell contracts (|W| <= 0.5 at init, g kept near it)
            z = self.f(z, u)
        return self.dec(z)


# ---- BatchNorm head and a two-output inject with dropout
class TwoOutInject(nn.Module):
    def __init__(self, n_in=6, d=8):
        super().__init__()
        self.a, self.b = nn.Linear(n_in, d), nn.Linear(n_in, d)
        self.drop = nn.Dropout(0.5)

    def forward(self, x):
        return self.drop(self.a(x)), self.drop(self.b(x))


class UVCell(nn.Module):
    def __init__(self, d=8):
        super().__init__()
        self.w = nn.Linear(d, d, bias=False)
        with torch.no_grad():
            self.w.weight.mul_(0.6 / torch.linalg.matrix_norm(self.w.weight, ord=2))

    def forward(self, z, u, v):
        return torch.tanh(self.w(z) + u) * torch.sigmoid(v)


class BatchNormHead(nn.Module):
    def __init__(self, d=8, n_out=4):
        super().__init__()
        self.bn = nn.BatchNorm1d(d)
        self.out = nn.Linear(d, n_out)
        with torch.no_grad():  # running statistics far from a batch's own
            self.bn.running_mean.uniform_(-1, 1)
            self.bn.running_var.uniform_(0.2, 0.5)

    def forward(self, z):
        return self.out(self.bn(z))


# ---- MDEQ-style multi-resolution state: a list of two feature maps
class MultiResInject(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)

    def forward(self, x):
        u = self.conv(x)  # MDEQ: the injection is a list, zeros at the lower resolutions
        return [u, torch.zeros(u.shape[0], 6, 4, 4, dtype=u.dtype)]


class MultiResCell(nn.Module):
    """z = [z_hi (4, 8, 8), z_lo (6, 4, 4)], injection xs a list too; each resolution mixes in the other."""

    def __init__(self):
        super().__init__()
        self.hi = nn.Conv2d(4, 4, 3, padding=1)
        self.lo = nn.Conv2d(6, 6, 3, padding=1)
        self.down = nn.Conv2d(4, 6, 3, stride=2, padding=1)
        self.up = nn.Conv2d(6, 4, 1)
        with torch.no_grad():
            for c in (self.hi, self.lo, self.down, self.up):
                c.weight.mul_(0.3)

    def forward(self, zs, xs):
        hi, lo = zs
        new_hi = torch.tanh(self.hi(hi) + F.interpolate(self.up(lo), scale_factor=2.0) + xs[0])
        new_lo = torch.tanh(self.lo(lo) + self.down(hi) + xs[1])
        return [new_hi, new_lo]


class MultiResHead(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4 + 6, 5)

    def forward(self, zs):
        return self.fc(torch.cat([zs[0].mean((2, 3)), zs[1].mean((2, 3))], 1))


# ---- DEQ-Transformer-style channels-first state (B, d, T), causal along T
class ChannelsFirstInject(nn.Module):
    def __init__(self, vocab=11, d=6):
        super().__init__()
        self.emb = nn.Embedding(vocab, d)

    def forward(self, tokens):
        return self.emb(tokens).transpose(1, 2)  # (B, d, T)


class CausalConvCell(nn.Module):
    """A causal conv over T on a (B, d, T) state: left padding only."""

    def __init__(self, d=6):
        super().__init__()
        self.conv = nn.Conv1d(d, d, 3)
        with torch.no_grad():
            self.conv.weight.mul_(0.4)

    def forward(self, z, u):
        return torch.tanh(self.conv(F.pad(z, (2, 0))) + u)


class ChannelsFirstHead(nn.Module):
    def __init__(self, d=6, vocab=11):
        super().__init__()
        self.out = nn.Conv1d(d, vocab, 1)

    def forward(self, z):
        return self.out(z).transpose(1, 2)  # (B, T, vocab)


# ---- a float32 cell whose residual cannot go below ~1e-5 (abs): a large, large-valued state
class BigStateCell(nn.Module):
    def __init__(self, d=4096):
        super().__init__()
        self.scale = nn.Parameter(torch.full((d,), 0.5))

    def forward(self, z, u):
        return 20.0 * torch.tanh(self.scale * z / 20.0 + u)


# ---- the DEQ-Transformer's PyTorch 1.13 export pitfalls, in a (B, d, T) causal attention cell:
#      F.layer_norm with d taken from z.size() and no weight, and a causal mask built as bool + bool
class CausalAttentionCell(nn.Module):
    def __init__(self, d=6):
        super().__init__()
        self.qkv = nn.Conv1d(d, 3 * d, 1)
        self.out = nn.Conv1d(d, d, 1)
        with torch.no_grad():
            self.qkv.weight.mul_(0.5)
            self.out.weight.mul_(0.3)

    def forward(self, z, u):
        bsz, d_model, qlen = z.size()
        q, k, v = self.qkv(z + u).chunk(3, dim=1)                      # (B, d, T) each
        scores = torch.einsum("bdi,bdj->bij", q, k) / d_model ** 0.5
        mask = (torch.triu(torch.ones(qlen, qlen), diagonal=1) > 0)[None]
        mask += (torch.tril(torch.ones(qlen, qlen), diagonal=-qlen) > 0)[None]   # upstream's local-size term
        attn = torch.softmax(scores.masked_fill(mask, float("-inf")), dim=-1)
        out = self.out(torch.einsum("bij,bdj->bdi", attn, v)) + u
        return F.layer_norm(out.transpose(1, 2), (d_model,)).transpose(1, 2)


class MultiResNet(nn.Module):
    """Named as MDEQ's MDEQClsNet: downsample (the injection list), fullstage (f), predict (the head, a method)."""

    def __init__(self):
        super().__init__()
        self.downsample, self.fullstage, self.head = MultiResInject(), MultiResCell(), MultiResHead()
        self.bn = nn.BatchNorm1d(5)
        with torch.no_grad():
            self.bn.running_mean.uniform_(-1, 1)

    def predict(self, y_list):
        return self.bn(self.head(y_list))


# ---- locuslab/deq's DEQTransformerLM, by its attribute names and call signatures (the real one needs
#      the upstream checkout): word_emb, iodrop(x, p), inject_conv, pos_emb, pos_drop,
#      func(z, us, z0, pos_emb), crit(hidden, target) -> NLL, and a time-first forward(data, target, mems)
class VariationalDropoutLike(nn.Module):
    def forward(self, x, dropout=0.5):
        if not self.training or dropout == 0:
            return x
        return x * torch.bernoulli(torch.full_like(x, 1 - dropout)) / (1 - dropout)


class SinusoidPositions(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.register_buffer("inv_freq", 1 / (10000 ** (torch.arange(0.0, d, 2.0) / d)))

    def forward(self, pos_seq):
        s = torch.outer(self.inv_freq, pos_seq)
        return torch.cat([s.sin(), s.cos()], dim=0)[None]  # (1, d, L)


class DeqLmFunc(nn.Module):
    """func(z1ss, uss, z0, pos_emb): causal attention over [z0, z], injection added to the qkv projection."""

    def __init__(self, d):
        super().__init__()
        self.qkv_net = nn.Conv1d(d, 3 * d, 1, bias=False)
        self.r_net = nn.Conv1d(d, d, 1, bias=False)
        self.o_net = nn.Conv1d(d, d, 1)
        with torch.no_grad():
            self.qkv_net.weight.mul_(0.4)
            self.o_net.weight.mul_(0.3)

    def forward(self, z1ss, uss, z0, pos_emb):
        bsz, d_model, qlen = z1ss.size()
        cat = torch.cat([z0, z1ss], dim=-1)
        q, k, v = (self.qkv_net(cat) + uss).chunk(3, dim=1)
        k = k + self.r_net(pos_emb[:, :, -1:])  # the embedding of distance 0 (upstream's is relative, via _rel_shift)
        mlen = z0.size(2)
        klen = mlen + qlen
        scores = torch.einsum("bdi,bdj->bij", q[:, :, -qlen:], k) / d_model ** 0.5
        mask = (torch.triu(torch.ones(qlen, klen), diagonal=1 + mlen) > 0)[None]
        mask += (torch.tril(torch.ones(qlen, klen), diagonal=mlen - 1000) > 0)[None]
        attn = torch.softmax(scores.masked_fill(mask, float("-inf")), dim=-1)
        out = self.o_net(torch.einsum("bij,bdj->bdi", attn, v)) + z1ss
        return F.layer_norm(out.transpose(1, 2), (d_model,)).transpose(1, 2)


class NllCrit(nn.Module):
    def __init__(self, d, vocab):
        super().__init__()
        self.out = nn.Linear(d, vocab)

    def forward(self, hidden, target):
        return -F.log_softmax(self.out(hidden), dim=-1).gather(1, target.unsqueeze(1)).squeeze(1)


class DEQTransformerLMLike(nn.Module):
    def __init__(self, vocab=13, d=8):
        super().__init__()
        self.d_model, self.dropout = d, 0.1
        self.word_emb = nn.Embedding(vocab, d)
        self.iodrop, self.pos_drop = VariationalDropoutLike(), nn.Dropout(0.1)
        self.inject_conv = nn.Conv1d(d, 3 * d, 1)
        self.pos_emb = SinusoidPositions(d)
        self.func = DeqLmFunc(d)
        self.crit = NllCrit(d, vocab)

    def forward(self, data, target, mems):
        """Time-first as upstream: data, target (T, B); returns [nll (T, B)], solved by plain iteration."""
        dec_inp = data.t()
        bsz, qlen = dec_inp.size()
        us = self.inject_conv(self.iodrop(self.word_emb(dec_inp), self.dropout).transpose(1, 2))
        z0 = torch.zeros(bsz, self.d_model, 0)
        pos_emb = self.pos_drop(self.pos_emb(torch.arange(qlen - 1, -1, -1.0)))
        z = torch.zeros(bsz, self.d_model, qlen)
        for _ in range(2000):
            z_next = self.func(z, us, z0, pos_emb)
            done = (z_next - z).abs().max() < 1e-7
            z = z_next
            if done:
                break
        hidden = self.iodrop(z, self.dropout).permute(2, 0, 1).reshape(-1, self.d_model)
        return [self.crit(hidden, target.reshape(-1)).view(qlen, bsz)]
