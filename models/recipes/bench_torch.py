"""PyTorch side of `deq-serve bench compare` (run by the CLI, not by hand).

Language models (manifest task "language-model") are handled by bench_torch_lm.py: the
recipe's Brown DEQ-Transformer, scoring windows of token ids. Image classifiers, here:
builds the recipe's own model (train_fashion_mnist.py: Inject, Cell, Head) and loads
the bundle's weights from its ONNX graphs (conv weights by name; GroupNorm affine
parameters, exported as Mul/Add constants, in the order the graph uses them), then
answers JSON-line commands on stdin so the CLI can alternate deq-serve and PyTorch runs:

  {"cmd": "run", "batch": B, "threads": T, "inputs": "<float32 file>", "count": N}
    -> {"ms_per_sample": .., "nfe": [..N], "logits": [..N*10]}

The solve is deq.py's Broyden (or the bundle's method) with the bundle's solver settings
and deq-serve's restart guard (restart 10), as the exporter's parity solve does.
Exits 2 with a message on stderr when torch or onnx cannot be imported.

`--peer` picks how the same modules run (issue #29; the CLI's --peers):
  eager     (default) as above;
  compile   the modules under torch.compile (PyTorch 2.x; inductor's CPU backend needs a C++
            compiler). A run's reply adds "compile_s": the wall time of the calls that met a new
            input shape (compilation, plus that one call), so steady state is reported apart.
            Inductor's caches go to a fresh folder (a cold start) unless TORCHINDUCTOR_CACHE_DIR is set;
  torchdeq  the model written with torchdeq (`get_deq`): torchdeq's own Broyden with the bundle's
            tol, stop mode and memory (LBFGS_thres = history) and the same cap on evaluations
            of f (torchdeq's max_iter counts steps after the first evaluation, so max_iter - 1).
            torchdeq stops when the whole batch is under tol and evaluates every sample at every
            step, so "nfe" is its evaluations of f per sample (equal across the batch).
"""
from __future__ import annotations

import json
import os
import re
import sys
import time

try:
    import numpy as np
    import onnx
    from onnx import numpy_helper
    import torch
except ImportError as err:  # the CLI turns this into its own message
    print(f"bench_torch: {err}", file=sys.stderr)
    sys.exit(2)

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from train_fashion_mnist import Cell, Head, Inject  # noqa: E402
from deq import solve as deq_solve  # noqa: E402

PEERS = ("eager", "compile", "torchdeq")


class Peer:
    """How the modules run and which solver solves: see the module docstring (--peer)."""

    def __init__(self, name):
        if name not in PEERS:
            raise SystemExit(f"bench_torch: --peer must be one of {', '.join(PEERS)} (got {name!r})")
        self.name = name
        self.compile_s = 0.0
        self._shapes = set()
        if name == "compile" and not hasattr(torch, "compile"):
            raise SystemExit(f"bench_torch: torch.compile needs PyTorch 2.x (this is {torch.__version__})")
        if name == "compile" and not os.environ.get("TORCHINDUCTOR_CACHE_DIR"):
            # A cold start, as a service's first deployment: inductor's on-disk caches (under /tmp by
            # default) would otherwise turn a rerun's compile time into a cache read.
            import atexit
            import shutil
            import tempfile
            cache = tempfile.mkdtemp(prefix="deq-bench-inductor-")
            os.environ["TORCHINDUCTOR_CACHE_DIR"] = cache
            atexit.register(shutil.rmtree, cache, True)
        if name == "torchdeq":
            try:
                import torchdeq  # noqa: F401
            except ImportError as err:
                raise SystemExit(f"bench_torch: the torchdeq peer needs torchdeq (models/recipes/make-bench-venv.sh): {err}")

    def module(self, fn, what):
        """fn (a module or a function) as this peer runs it: compiled, with first calls per shape timed."""
        if self.name != "compile":
            return fn
        compiled = torch.compile(fn)

        def call(*args):
            key = (what,) + tuple(tuple(a.shape) for a in args if isinstance(a, torch.Tensor))
            if key in self._shapes:
                return compiled(*args)
            start = time.perf_counter()
            out = compiled(*args)
            self.compile_s += time.perf_counter() - start
            self._shapes.add(key)
            return out

        return call

    def take_compile_s(self):
        spent, self.compile_s = self.compile_s, 0.0
        return spent

    def solve(self, method, f, z0, **kw):
        """{"result": z*, "nstep": per-sample evaluations of f} with this peer's solver."""
        if self.name != "torchdeq":
            return deq_solve(method, f, z0, **kw)
        from torchdeq import get_deq
        if method != "broyden":
            raise SystemExit(f"bench_torch: the torchdeq peer runs Broyden bundles only (this one: {method})")
        cap = int(kw["max_iter"]) - 1
        deq = get_deq(f_solver="broyden", f_max_iter=cap, eval_f_max_iter=cap, f_tol=float(kw["tol"]),
                      f_stop_mode=kw["stop_mode"]).eval()
        calls = [0]

        def counted(z):
            calls[0] += 1
            return f(z)

        z_out, _ = deq(counted, z0, solver_kwargs={"LBFGS_thres": int(kw.get("m", 8))})
        return {"result": z_out[-1], "nstep": torch.full((z0.shape[0],), calls[0], dtype=torch.long)}


def solve(method, f, z0, **kw):
    return PEER.solve(method, f, z0, **kw)


PEER = Peer("eager")


def initializers(path):
    return {i.name: torch.from_numpy(numpy_helper.to_array(i).copy()).float() for i in onnx.load(path).graph.initializer}


def affine_pairs(inits):
    """(weight, bias) per GroupNorm, in graph order: exported as onnx::Mul_k then onnx::Add_k+1."""
    muls = sorted((int(re.search(r"(\d+)$", k).group(1)), v) for k, v in inits.items() if k.startswith("onnx::Mul_"))
    adds = sorted((int(re.search(r"(\d+)$", k).group(1)), v) for k, v in inits.items() if k.startswith("onnx::Add_"))
    return [(m.flatten(), a.flatten()) for (_, m), (_, a) in zip(muls, adds)]


def load_module(module, inits, prefix=""):
    gns = [m for m in module.modules() if isinstance(m, torch.nn.GroupNorm)]
    pairs = affine_pairs(inits)
    if len(gns) != len(pairs):
        raise SystemExit(f"bench_torch: {len(gns)} GroupNorms but {len(pairs)} affine pairs in the graph")
    with torch.no_grad():
        for gn, (w, b) in zip(gns, pairs):
            gn.weight.copy_(w)
            gn.bias.copy_(b)
        for name, p in module.named_parameters():
            if isinstance(getattr(module, name.split(".")[0], None), torch.nn.GroupNorm):
                continue
            key = prefix + name
            if key not in inits:
                raise SystemExit(f"bench_torch: graph has no weight {key}")
            p.copy_(inits[key].view_as(p))
    return module.eval()


def build(bundle):
    with open(os.path.join(bundle, "manifest.json")) as fh:
        manifest = json.load(fh)
    inj = initializers(os.path.join(bundle, "inject.onnx"))
    cel = initializers(os.path.join(bundle, "cell.onnx"))
    hed = initializers(os.path.join(bundle, "head.onnx"))
    C, H = cel["conv1.weight"].shape[1], cel["conv1.weight"].shape[0]
    hidden = hed["head.fc1.weight"].shape[0]
    inject = load_module(Inject(C), inj)
    cell = Cell(C, H)
    # The bundle holds weight-normed convolutions folded into plain weights.
    torch.nn.utils.remove_weight_norm(cell.conv1)
    torch.nn.utils.remove_weight_norm(cell.conv2)
    cell = load_module(cell, cel)
    head = load_module(Head(C, hidden), hed, prefix="head.")
    return manifest, inject, cell, head


def image_side(bundle, method, kw):
    """The Fashion-MNIST side: returns (run, ready fields)."""
    _, inject, cell, head = build(bundle)
    inject, cell, head = PEER.module(inject, "inject"), PEER.module(cell, "cell"), PEER.module(head, "head")

    def run(cmd):
        x = torch.from_numpy(np.fromfile(cmd["inputs"], dtype=np.float32)).view(-1, 1, 28, 28)[: cmd["count"]]
        B = int(cmd["batch"])
        nfe, logits = [], []
        with torch.no_grad():
            start = time.perf_counter()
            for first in range(0, x.shape[0], B):
                xb = x[first:first + B]
                u = inject(xb)
                shape = u.shape

                def f(zf, u=u, shape=shape):
                    return cell(zf.view(shape), u).reshape(shape[0], -1)

                out = solve(method, f, torch.zeros(shape[0], u[0].numel()), **kw)
                logits.append(head(out["result"].view(shape)))
                nfe.append(out["nstep"])
            ms = (time.perf_counter() - start) * 1000 / x.shape[0]
        return {
            "ms_per_sample": ms,
            "nfe": torch.cat(nfe).tolist(),
            "logits": torch.cat(logits).flatten().tolist(),
            **({"compile_s": PEER.take_compile_s()} if PEER.name == "compile" else {}),
        }

    return run, {}


def blas_library():
    """The BLAS this process loaded: Debian's torch is built against the generic libblas.so.3,
    so its matrix products run at the speed of whichever alternative is installed (the
    reference BLAS unless e.g. OpenBLAS is); reported so the timings can be read."""
    try:
        with open("/proc/self/maps") as fh:
            libs = sorted({line.split()[-1] for line in fh if "blas" in line.rsplit("/", 1)[-1]})
    except OSError:
        libs = []
    # PyPI's torch links its BLAS (MKL) statically; NumPy's OpenBLAS and CUDA's cuBLAS are not torch's
    libs = [lib for lib in libs if "numpy" not in lib and "cublas" not in lib]
    return ", ".join(libs) or torch.__config__.show().split("BLAS_INFO=")[-1].split(",")[0]


def blas_threads():
    """A setter for the loaded BLAS's own thread pool, or None. OpenBLAS's pthread build keeps
    its own threads, which torch.set_num_threads does not reach: a "1 thread" run would
    otherwise do its matrix products on every core."""
    import ctypes
    for path in blas_library().split(", "):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        if hasattr(lib, "openblas_set_num_threads"):
            return lib.openblas_set_num_threads
    return None


def main():
    global PEER
    args = sys.argv[1:]
    if "--peer" in args:
        i = args.index("--peer")
        PEER = Peer(args[i + 1])
        del args[i:i + 2]
    bundle = args[0]
    with open(os.path.join(bundle, "manifest.json")) as fh:
        manifest = json.load(fh)
    s = manifest["solver"]
    kw = dict(max_iter=s["max_iter"], tol=s["tol"], stop_mode=s["stop_mode"])
    if s["method"] == "broyden":
        kw["m"] = s.get("history", 8)
        # deq-serve's restart guard (restartFactor 10), as the exporter's parity solve uses.
        kw["restart"] = 10.0
    if manifest.get("task") == "language-model":
        import bench_torch_lm
        run, extra = bench_torch_lm.load(bundle, manifest, s["method"], kw, PEER)
    else:
        run, extra = image_side(bundle, s["method"], kw)
    print(json.dumps({"ready": True, "peer": PEER.name, "torch": torch.__version__, "blas": blas_library(), **extra}), flush=True)
    set_blas_threads = blas_threads()
    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd["cmd"] == "quit":
            break
        torch.set_num_threads(int(cmd["threads"]))
        if set_blas_threads:
            set_blas_threads(int(cmd["threads"]))
        print(json.dumps(run(cmd)), flush=True)


if __name__ == "__main__":
    main()
