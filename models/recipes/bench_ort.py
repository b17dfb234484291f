"""ONNX Runtime peer of `deq-serve bench compare` (run by the CLI, not by hand; issue #29).

What a user serving a deq-serve bundle from Python would write: the bundle's own three
graphs (inject, cell, head) in onnxruntime.InferenceSession, the fixed-point loop in NumPy
(numpy_broyden.py) with the manifest's solver settings. Works for any bundle: graph input
and output names come from the manifest, the state's shape from inject's output.

JSON-line protocol (as bench_torch.py):
  first line  {"ready": true, "peer": "onnxruntime", "onnxruntime": version, "numpy": version}
  {"cmd": "run", "batch": B, "threads": T, "inputs": "<file>", "dtype": "float32"|"int64",
   "sample_shape": [...], "count": N, "targets": "<int64 file>" (optional, fed to the head's
   second input), "output": "<manifest output key>"}
    -> {"ms_per_sample": .., "nfe": [..N], "values": [N x output values, flattened]}
  {"cmd": "quit"}
Exits 2 with a message on stderr when onnxruntime or numpy cannot be imported.
"""
from __future__ import annotations

import json
import os
import sys
import time

# NumPy's BLAS must not spread over the cores: the loop is one thread, as deq-serve's solver.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

try:
    import numpy as np
    import onnxruntime as ort
except ImportError as err:
    print(f"bench_ort: {err} (make the peers' venv: models/recipes/make-bench-venv.sh)", file=sys.stderr)
    sys.exit(2)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from numpy_broyden import DEFAULTS, solve  # noqa: E402


class OrtModel:
    """A bundle's graphs in ONNX Runtime sessions with `threads` intra-op threads, and its solve."""

    def __init__(self, bundle, threads):
        with open(os.path.join(bundle, "manifest.json")) as fh:
            self.manifest = json.load(fh)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = int(threads)
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        graphs = self.manifest["graphs"]

        def session(name):
            return ort.InferenceSession(os.path.join(bundle, graphs[name]["file"]), opts, providers=["CPUExecutionProvider"])

        self.inject, self.cell, self.head = session("inject"), session("cell"), session("head")
        self.x_name = self.inject.get_inputs()[0].name
        self.u_name = self.inject.get_outputs()[0].name
        cell_in = [i["name"] for i in graphs["cell"]["inputs"]]
        self.cell_z, self.cell_u = cell_in[0], cell_in[1]
        self.cell_out = graphs["cell"]["outputs"][0]["name"]
        head_in = [i["name"] for i in graphs["head"]["inputs"]]
        self.head_z, self.head_extra = head_in[0], head_in[1:]
        s = self.manifest["solver"]
        self.solver = dict(method=s["method"], tol=float(s["tol"]), stop_mode=s["stop_mode"], max_iter=int(s["max_iter"]),
                           history=int(s.get("history", DEFAULTS["history"])))

    def infer(self, x, output, targets=None, **solver):
        """One batch: inject, the NumPy solve around the cell, head. Returns (output values, nfe per sample)."""
        u = self.inject.run([self.u_name], {self.x_name: x})[0]
        shape = u.shape
        B = shape[0]

        def f(z_rows, rows):
            zs = z_rows.reshape((len(rows),) + shape[1:])
            return self.cell.run([self.cell_out], {self.cell_z: zs, self.cell_u: u[rows]})[0].reshape(len(rows), -1)

        out = solve(f, np.zeros((B, u[0].size), dtype=np.float32), **{**self.solver, **solver})
        feeds = {self.head_z: out["z"].reshape(shape)}
        if self.head_extra:
            if targets is None:
                raise SystemExit(f"bench_ort: the head needs {self.head_extra}; the command gave no targets")
            feeds[self.head_extra[0]] = targets
        name = self.manifest["outputs"].get(output, output)
        return self.head.run([name], feeds)[0], out["nfe"]


def main():
    bundle = sys.argv[1]
    models = {}
    print(json.dumps({"ready": True, "peer": "onnxruntime", "onnxruntime": ort.__version__, "numpy": np.__version__}), flush=True)
    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd["cmd"] == "quit":
            break
        threads = int(cmd["threads"])
        if threads not in models:
            models[threads] = OrtModel(bundle, threads)
        model = models[threads]
        count, B = int(cmd["count"]), int(cmd["batch"])
        dtype = np.int64 if cmd.get("dtype") == "int64" else np.float32
        x = np.fromfile(cmd["inputs"], dtype=dtype).reshape([-1] + list(cmd["sample_shape"]))[:count]
        y = np.fromfile(cmd["targets"], dtype=np.int64).reshape(x.shape[0], -1)[:count] if cmd.get("targets") else None
        batches = [(x[i:i + B], None if y is None else y[i:i + B]) for i in range(0, count, B)]
        values, nfe = [], []
        start = time.perf_counter()
        for xb, yb in batches:
            v, k = model.infer(np.ascontiguousarray(xb), cmd["output"], None if yb is None else np.ascontiguousarray(yb))
            values.append(v.reshape(len(xb), -1))
            nfe.append(k)
        ms = (time.perf_counter() - start) * 1000 / count
        print(json.dumps({"ms_per_sample": ms, "nfe": np.concatenate(nfe).tolist(),
                          "values": np.concatenate(values).astype(np.float64).ravel().tolist()}), flush=True)


if __name__ == "__main__":
    main()
