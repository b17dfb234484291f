"""Known rewrites for constructs of upstream DEQ code that PyTorch 1.13's ONNX export gets wrong.

- `F.layer_norm(x, (d,))` with d taken from `x.size()`: under tracing the shape is a traced
  value and 1.13 refuses it ("Failed to export a node ... onnx::Gather ... in list node").
  Normalized dims are the feature dims, fixed in a bundle, so they are made Python ints.
- `F.layer_norm` without a weight: 1.13's opset-17 LayerNormalization is written with an
  empty scale input, which onnx.checker rejects. A weight of ones (and a zero bias) is passed.
- `bool + bool` (locuslab/deq's causal mask: `mask = triu(...) > 0; mask += tril(...) > 0`)
  exports as ONNX Add on booleans, which ONNX does not define: such an Add becomes Or.

The first two apply while the exporter traces (layer_norm_rewrite); the third to the written
graph (bool_add_to_or). docs/guides/export-your-deq.md lists them.
"""
from __future__ import annotations

import contextlib

import torch
from torch.nn import functional as F


@contextlib.contextmanager
def layer_norm_rewrite():
    original = F.layer_norm

    def layer_norm(input, normalized_shape, weight=None, bias=None, eps=1e-5):
        shape = [int(d) for d in normalized_shape]
        if weight is None:
            weight = torch.ones(shape, dtype=input.dtype)
        if bias is None:
            bias = torch.zeros(shape, dtype=input.dtype)
        return original(input, shape, weight, bias, eps)

    F.layer_norm = layer_norm
    try:
        yield
    finally:
        F.layer_norm = original


def bool_add_to_or(path: str) -> int:
    """Rewrite Add nodes on two boolean tensors as Or; returns how many were rewritten."""
    import onnx
    from onnx import TensorProto
    model = onnx.load(path)
    inferred = onnx.shape_inference.infer_shapes(model)
    types = {}
    for vi in list(inferred.graph.input) + list(inferred.graph.value_info) + list(inferred.graph.output):
        types[vi.name] = vi.type.tensor_type.elem_type
    for init in inferred.graph.initializer:
        types[init.name] = init.data_type
    n = 0
    for node in model.graph.node:
        if node.op_type == "Add" and len(node.input) == 2 and all(types.get(i) == TensorProto.BOOL for i in node.input):
            node.op_type = "Or"
            n += 1
    if n:
        onnx.save(model, path)
    return n
