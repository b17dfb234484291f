"""Writes the Broyden step algebra as an ONNX graph, for bench/ort-vs-wasm.mjs.

Inputs dz, g: [B, 1, n]; U, V: [B, m, n] (the ring buffers, laid out so that every
product is a plain batched MatMul, no Transpose). Outputs
  t = -dz + (U dz) V   (i.e. dzᵀ J⁻¹),   q = g - (V g) U   (i.e. -J⁻¹ g),
which is the bulk of one Broyden update (the rest is elementwise).
Usage: /usr/bin/python3 bench/ort-step-graph.py OUT.onnx
"""
import sys

import onnx
from onnx import TensorProto, helper

B, m, n = "B", "m", "n"
dz = helper.make_tensor_value_info("dz", TensorProto.FLOAT, [B, 1, n])
g = helper.make_tensor_value_info("g", TensorProto.FLOAT, [B, 1, n])
U = helper.make_tensor_value_info("U", TensorProto.FLOAT, [B, m, n])
V = helper.make_tensor_value_info("V", TensorProto.FLOAT, [B, m, n])
t = helper.make_tensor_value_info("t", TensorProto.FLOAT, [B, 1, n])
q = helper.make_tensor_value_info("q", TensorProto.FLOAT, [B, 1, n])
nodes = [
    # b[B,1,m] = dz[B,1,n] · U[B,m,n]ᵀ — written as MatMul(dz, Uᵀ) would need a Transpose;
    # instead keep a transposed copy? No: use MatMul(U, dzᵀ) via Reshape of dz to [B,n,1].
    helper.make_node("Reshape", ["dz", "col_shape"], ["dz_col"]),
    helper.make_node("Reshape", ["g", "col_shape"], ["g_col"]),
    helper.make_node("MatMul", ["U", "dz_col"], ["b_col"]),   # [B,m,1]
    helper.make_node("MatMul", ["V", "g_col"], ["c_col"]),    # [B,m,1]
    helper.make_node("Reshape", ["b_col", "row_shape"], ["b_row"]),  # [B,1,m]
    helper.make_node("Reshape", ["c_col", "row_shape"], ["c_row"]),
    helper.make_node("MatMul", ["b_row", "V"], ["bV"]),      # [B,1,n]
    helper.make_node("MatMul", ["c_row", "U"], ["cU"]),
    helper.make_node("Sub", ["bV", "dz"], ["t"]),
    helper.make_node("Sub", ["g", "cU"], ["q"]),
]
inits = [
    helper.make_tensor("col_shape", TensorProto.INT64, [3], [0, -1, 1]),
    helper.make_tensor("row_shape", TensorProto.INT64, [3], [0, 1, -1]),
]
graph = helper.make_graph(nodes, "broyden_step", [dz, g, U, V], [t, q], initializer=inits)
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
model.ir_version = 8
onnx.checker.check_model(model)
onnx.save(model, sys.argv[1])
