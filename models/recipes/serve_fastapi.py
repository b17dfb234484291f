"""The HTTP peer of `deq-serve bench http --peer fastapi` (issue #29): what a user would write in
an afternoon to serve deq-serve bundles from Python. FastAPI + uvicorn around ONNX Runtime's
Python API, with the NumPy Broyden loop of numpy_broyden.py (bench_ort.OrtModel: the bundle's
inject, cell and head graphs, the manifest's solver settings).

It speaks the subset of the KServe v2 protocol that `bench http --protocol v2` uses, as deq-serve
does: JSON tensors in, JSON tensors out, no batching across requests (each request is solved on
its own, in FastAPI's thread pool; ONNX Runtime's run() releases the GIL).

  GET  /v2/health/ready
  GET  /v2/models/{name}                 inputs and outputs (v2 metadata)
  POST /v2/models/{name}/infer           {"inputs": [{"name", "datatype": "FP32", "shape", "data"}]}
       -> {"model_name", "outputs": [{"name", "datatype", "shape", "data"}], "parameters": {"iterations": [...]}}

  python serve_fastapi.py --models-dir models [--host 127.0.0.1] [--port 8000] [--threads 1]

Image classifiers only (a v2 FP32 tensor in, logits out); other bundles in the folder are skipped.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import numpy as np  # noqa: E402
import uvicorn  # noqa: E402
from fastapi import FastAPI, HTTPException  # noqa: E402
from pydantic import BaseModel  # noqa: E402

from bench_ort import OrtModel  # noqa: E402


class Tensor(BaseModel):
    name: str
    datatype: str
    shape: list[int]
    data: list[float]


class InferRequest(BaseModel):
    inputs: list[Tensor]
    parameters: dict | None = None


def load_models(folder, threads):
    models = {}
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name, "manifest.json")
        if not os.path.isfile(path):
            continue
        with open(path) as fh:
            manifest = json.load(fh)
        if manifest.get("task") != "image-classification":
            continue
        models[manifest["name"]] = OrtModel(os.path.join(folder, name), threads)
    return models


def make_app(models):
    app = FastAPI(title="ONNX Runtime DEQ peer")

    def find(name):
        if name not in models:
            raise HTTPException(404, f"no model {name}")
        return models[name]

    @app.get("/v2/health/ready")
    def ready():
        return {"ready": True}

    @app.get("/v2/models/{name}")
    def metadata(name: str):
        m = find(name)
        graphs = m.manifest["graphs"]
        x = graphs["inject"]["inputs"][0]
        return {
            "name": name, "versions": [m.manifest.get("version", "1")], "platform": "onnxruntime-python",
            "inputs": [{"name": x["name"], "datatype": "FP32", "shape": [-1] + list(x["shape"])}],
            "outputs": [{"name": k, "datatype": "FP32", "shape": [-1, len(m.manifest.get("labels", []))]} for k in m.manifest["outputs"]],
        }

    @app.post("/v2/models/{name}/infer")
    def infer(name: str, req: InferRequest):
        m = find(name)
        if len(req.inputs) != 1:
            raise HTTPException(400, "send one input tensor")
        t = req.inputs[0]
        want = list(m.manifest["graphs"]["inject"]["inputs"][0]["shape"])
        if t.datatype != "FP32" or len(t.shape) != len(want) + 1 or t.shape[1:] != want:
            raise HTTPException(400, f"input must be FP32 of shape [batch, {', '.join(map(str, want))}]")
        try:
            x = np.asarray(t.data, dtype=np.float32).reshape(t.shape)
        except ValueError as err:
            raise HTTPException(400, f"data does not fit the shape: {err}")
        logits, nfe = m.infer(x, "logits")
        return {
            "model_name": name,
            "outputs": [{"name": "logits", "datatype": "FP32", "shape": list(logits.shape), "data": logits.ravel().tolist()}],
            "parameters": {"iterations": nfe.tolist()},
        }

    return app


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models-dir", default="models")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads per session")
    a = p.parse_args()
    models = load_models(a.models_dir, a.threads)
    if not models:
        sys.exit(f"serve_fastapi: no image-classification bundle in {a.models_dir}")
    uvicorn.run(make_app(models), host=a.host, port=a.port, log_level="warning")


if __name__ == "__main__":
    main()
