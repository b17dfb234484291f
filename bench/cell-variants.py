"""Variants of fashion-mnist-jr's cell graph, to find the floor of one cell run in ONNX Runtime
(docs/solver.md, "Where the solver's time goes"): `orig` as shipped; `noshape`, the GroupNorm
reshapes fed a constant shape instead of a Shape op; `convs`, the two convolutions, ReLUs and the
residual add alone (not the model: no GroupNorm). Writes them to /tmp/deq-cell-variants/.
  /usr/bin/python3 bench/cell-variants.py && node bench/cell-time.mjs 1 orig:all orig:extended noshape:all convs:all
Needs the onnx Python package (Debian: python3-onnx).
"""
import copy, os
import numpy as np
import onnx
from onnx import helper, numpy_helper

OUT = "/tmp/deq-cell-variants"
os.makedirs(OUT, exist_ok=True)
here = os.path.dirname(os.path.abspath(__file__))
m = onnx.load(os.path.join(here, "..", "models", "fashion-mnist-jr", "cell.onnx"))
onnx.save(m, f"{OUT}/orig.onnx")

a = copy.deepcopy(m)
shape_of = {n.output[0] for n in a.graph.node if n.op_type == "Shape"}
a.graph.initializer.append(numpy_helper.from_array(np.array([0, 32, 14, 14], dtype=np.int64), "fixed_shape"))
for n in a.graph.node:
    if n.op_type == "Reshape" and n.input[1] in shape_of:
        n.input[1] = "fixed_shape"
kept = [n for n in a.graph.node if n.op_type != "Shape"]
del a.graph.node[:]
a.graph.node.extend(kept)
onnx.checker.check_model(a)
onnx.save(a, f"{OUT}/noshape.onnx")

convs = [n for n in m.graph.node if n.op_type == "Conv"]
attrs = lambda n: {x.name: helper.get_attribute_value(x) for x in n.attribute}
nodes = [helper.make_node("Conv", ["z", convs[0].input[1]], ["c1"], **attrs(convs[0])),
         helper.make_node("Relu", ["c1"], ["r1"]),
         helper.make_node("Conv", ["r1", convs[1].input[1]], ["c2"], **attrs(convs[1])),
         helper.make_node("Add", ["c2", "u"], ["a"]),
         helper.make_node("Relu", ["a"], ["z_next"])]
weights = {convs[0].input[1], convs[1].input[1]}
g = helper.make_graph(nodes, "convs", list(m.graph.input), list(m.graph.output), [i for i in m.graph.initializer if i.name in weights])
c = helper.make_model(g, opset_imports=m.opset_import)
c.ir_version = m.ir_version
onnx.checker.check_model(c)
onnx.save(c, f"{OUT}/convs.onnx")
print("wrote", OUT)
