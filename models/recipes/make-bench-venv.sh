#!/usr/bin/env bash
# The Python side of `deq-serve bench compare --peers …` and `bench http --peer fastapi` (issue #29):
# current PyTorch and torchdeq (PyPI, the exporter's venv), plus ONNX Runtime's Python API,
# FastAPI and uvicorn.
#
#   models/recipes/make-bench-venv.sh [VENV_DIR]     prints the venv's python on its last line
#
# PyTorch's CPU+CUDA wheels are 2.9 GB, so they are not installed twice: the exporter's venv
# (exporter/ci/make-venv.sh, cached under ~/.cache/deq-serve) is made or reused, and this venv
# sees its site-packages through a .pth file; only the peers' own packages are installed here.
# VENV_DIR defaults to ${XDG_CACHE_HOME:-~/.cache}/deq-serve/bench-peers; a venv whose stamp
# matches the pins and the torch venv is kept.
#
# onnxruntime is pinned to the version onnxruntime-node ships (package.json), so both sides run
# the same engine. triton is not installed (the exporter's venv leaves it out): torch.compile's
# CPU backend (inductor) generates C++ and needs a C++ compiler (g++) instead.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
PINS="onnxruntime==1.30.0 fastapi==0.165.0 uvicorn==0.55.0"
TORCH_PY="$("$here/../../exporter/ci/make-venv.sh" | tail -n 1)"
TORCH_SITE="$("$TORCH_PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
VENV="${1:-${XDG_CACHE_HOME:-$HOME/.cache}/deq-serve/bench-peers}"
STAMP="$PINS torch-venv=$TORCH_SITE $(cat "$(dirname "$(dirname "$TORCH_PY")")/.deq-serve-stamp")"

if [[ -x "$VENV/bin/python" && "$(cat "$VENV/.deq-serve-stamp" 2>/dev/null)" == "$STAMP" ]]; then
  echo "$VENV/bin/python"
  exit 0
fi
rm -rf "$VENV"
mkdir -p "$(dirname "$VENV")"
# The same interpreter as the torch venv (its wheels are built for that Python).
base="$("$TORCH_PY" -c 'import sys; print(sys._base_executable)')"
"$base" -m venv "$VENV"
site="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
echo "$TORCH_SITE" > "$site/deq-serve-torch-venv.pth"
# numpy (and torch's other requirements) come from the torch venv; pip sees them through the .pth.
"$VENV/bin/python" -m pip install -q --disable-pip-version-check $PINS
"$VENV/bin/python" -c "import torch, torchdeq, onnx, onnxruntime, numpy, fastapi, uvicorn; print('torch', torch.__version__, 'onnxruntime', onnxruntime.__version__, 'numpy', numpy.__version__)" >&2
echo "$STAMP" > "$VENV/.deq-serve-stamp"
echo "$VENV/bin/python"
