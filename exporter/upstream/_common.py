"""Shared by the verify_*.py scripts: serve a bundle through deq-serve's own CLI and compare
its outputs with upstream's, and check that `inspect` passes the bundle (and fails a tampered copy).

Not a CI test: the scripts need an upstream checkout (see docs/exporting.md, "Checked against upstream").
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CLI = [os.environ.get("NODE", "node"), os.path.join(REPO, "dist", "cli", "main.js")]


def unstub(names) -> None:
    """Take the stubs out of sys.modules once upstream has imported them (torch's own lazy imports
    probe installed modules and must not find them)."""
    for name in list(sys.modules):
        if any(name == n or n.startswith(name + ".") for n in names) and getattr(sys.modules[name], "_verify_stub", False):
            del sys.modules[name]


def stub_missing(*names: str) -> list:
    """Empty stand-ins for modules upstream imports but the checked path never calls (tqdm, plyfile,
    skimage.measure ...), when they are not installed; returns the names stubbed. Call unstub()
    after importing upstream."""
    import importlib
    import types

    stubbed = []
    for name in names:
        try:
            importlib.import_module(name)
        except ImportError:
            parts = name.split(".")
            for i in range(1, len(parts) + 1):
                sub = ".".join(parts[:i])
                if sub not in sys.modules:
                    sys.modules[sub] = types.ModuleType(sub)
                    sys.modules[sub]._verify_stub = True
                    if i > 1:
                        setattr(sys.modules[".".join(parts[:i - 1])], parts[i - 1], sys.modules[sub])
            sys.modules[name].__getattr__ = _stub_attr(name)
            stubbed.append(name)
    return stubbed


def _stub_attr(module: str):
    def getattr_(attr):
        if attr.startswith("__"):
            raise AttributeError(attr)

        def unavailable(*_a, **_k):
            raise RuntimeError(f"{module}.{attr} is a stub of the verify script ({module} is not installed)")
        return unavailable
    return getattr_


def upstream_commit(path: str) -> str:
    """The checkout's commit: `git rev-parse HEAD`, else an UPSTREAM_COMMIT file, else 'unknown'."""
    try:
        return subprocess.run(["git", "-C", path, "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (subprocess.CalledProcessError, FileNotFoundError):
        marker = os.path.join(path, "UPSTREAM_COMMIT")
        return open(marker).read().strip() if os.path.exists(marker) else "unknown"


def inspect(bundle: str) -> tuple[bool, str]:
    """deq-serve inspect: (passed, its output)."""
    p = subprocess.run(CLI + ["inspect", bundle], capture_output=True, text=True)
    return p.returncode == 0, p.stdout + p.stderr


def serve_run(bundle: str, inputs: dict, extra_args=()) -> dict:
    """One batched inference through `deq-serve run` (the tensor pipeline /predict uses)."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
        json.dump({"inputs": {k: np.asarray(v).tolist() for k, v in inputs.items()}}, fh)
    try:
        p = subprocess.run(CLI + ["run", bundle, "--input", fh.name, *extra_args], capture_output=True, text=True)
    finally:
        os.unlink(fh.name)
    if p.returncode != 0:
        raise SystemExit(f"deq-serve run failed ({p.returncode}): {p.stderr.strip()}")
    return json.loads(p.stdout)


def tampered_copy(bundle: str, graph: str = "cell.onnx", noise: float = 0.05) -> str:
    """A copy of the bundle whose graph's largest float initializer has seeded Gaussian noise of
    `noise` x its standard deviation added (manifest sha256 updated, so only parity can catch it).
    Noise, not a scale: a conv followed by GroupNorm (MDEQ) is invariant to scaling its weight."""
    import hashlib

    import onnx
    from onnx import numpy_helper

    dst = tempfile.mkdtemp(prefix="tampered-")
    shutil.rmtree(dst)
    shutil.copytree(bundle, dst)
    path = os.path.join(dst, graph)
    model = onnx.load(path)
    inits = [i for i in model.graph.initializer if i.data_type == onnx.TensorProto.FLOAT]
    big = max(inits, key=lambda i: int(np.prod(i.dims)))
    arr = numpy_helper.to_array(big)
    arr = arr + noise * float(arr.std()) * np.random.default_rng(0).standard_normal(arr.shape)
    big.CopyFrom(numpy_helper.from_array(arr.astype(np.float32), big.name))
    onnx.save(model, path)
    man_path = os.path.join(dst, "manifest.json")
    man = json.load(open(man_path))
    for g in man["graphs"].values():
        if g["file"] == graph:
            g["sha256"] = hashlib.sha256(open(path, "rb").read()).hexdigest()
    json.dump(man, open(man_path, "w"), indent=2)
    return dst


def report(name: str, commit: str, served: dict, upstream: dict, upstream_info: str, bundle: str,
           atol: float = 1e-4) -> int:
    """Compare served outputs with upstream's, check convergence and inspect; print and return 0/1."""
    worst = 0.0
    for k, ref in upstream.items():
        got = np.asarray(served["outputs"][k]["data"], dtype=np.float64)
        worst = max(worst, float(np.abs(got - np.asarray(ref, dtype=np.float64)).max()))
    samples = served["solver"]["samples"]
    converged = all(s["converged"] for s in samples)
    ok_inspect, text = inspect(bundle)
    bad = tampered_copy(bundle)
    try:
        bad_inspect, bad_text = inspect(bad)
    finally:
        shutil.rmtree(bad, ignore_errors=True)
    parity_line = next((l.strip() for l in text.splitlines() if l.strip().startswith("parity")), "?")
    bad_line = next((l.strip() for l in bad_text.splitlines() if l.strip().startswith("parity")), "?")
    print(f"\n== {name} (upstream commit {commit})")
    print(f"upstream solver: {upstream_info}")
    print(f"deq-serve run: {served['solver']['method']} tol {served['solver']['tol']} {served['solver']['stop_mode']}, "
          f"iterations {[s['iterations'] for s in samples]}, converged {converged}, "
          f"max residual {max(s['residual'] for s in samples):.2g}")
    print(f"max |served - upstream| = {worst:.3g} over {len(samples)} inputs (bound {atol})")
    print(f"inspect: {parity_line}")
    print(f"inspect, noise (5% of its std) on the cell's largest weight: {bad_line}")
    ok = worst <= atol and converged and ok_inspect and not bad_inspect
    print("VERIFIED" if ok else "NOT VERIFIED")
    if not ok_inspect:
        print(text)
    return 0 if ok else 1
