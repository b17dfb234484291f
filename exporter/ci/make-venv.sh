#!/usr/bin/env bash
# A virtual environment with current PyTorch from PyPI (not Debian's 1.13), onnx, onnxscript,
# jsonschema and torchdeq, for the exporter's tests under current PyTorch (issue #21).
#
#   exporter/ci/make-venv.sh [VENV_DIR]       prints the venv's python on its last line
#
# VENV_DIR defaults to ${XDG_CACHE_HOME:-~/.cache}/deq-serve/exporter-torch-<version>, outside
# the checkout, so CI and repeated runs reuse it: a venv whose stamp matches the pins is kept.
# Cost (measured 2026-12-04 with pip's own client, HEAD requests for the resolved wheels):
# PyPI's linux x86_64 torch 2.15.0 wheel is 514 MiB, and it cannot be imported without its
# CUDA wheels (nvidia-*: about 2.0 GiB more; `import torch` raises "libcublasLt.so.* not
# found" without them). triton (273 MiB) is only for torch.compile and is left out.
set -euo pipefail
TORCH_VERSION="${DEQ_TORCH_VERSION:-2.15.0}"
PINS="onnx==1.23.2 onnxscript==0.7.2 jsonschema==4.26.0 numpy==2.4.6 torchdeq==0.1.0"
VENV="${1:-${XDG_CACHE_HOME:-$HOME/.cache}/deq-serve/exporter-torch-$TORCH_VERSION}"
PY="${PYTHON:-python3}"
STAMP="torch==$TORCH_VERSION $PINS"

if [[ -x "$VENV/bin/python" && "$(cat "$VENV/.deq-serve-stamp" 2>/dev/null)" == "$STAMP" ]]; then
  echo "$VENV/bin/python"
  exit 0
fi
rm -rf "$VENV"
mkdir -p "$(dirname "$VENV")"
"$PY" -m venv "$VENV"
pip=("$VENV/bin/python" -m pip install -q --disable-pip-version-check)
"${pip[@]}" --upgrade "pip>=24" "setuptools>=77"
"${pip[@]}" --no-deps "torch==$TORCH_VERSION"
# torch's own requirements for this platform, without triton (torch.compile only).
mapfile -t deps < <("$VENV/bin/python" - <<'PYEOF'
from importlib.metadata import requires
from pip._vendor.packaging.requirements import Requirement
for spec in requires("torch") or []:
    r = Requirement(spec)
    if r.name != "triton" and (r.marker is None or r.marker.evaluate({"extra": ""})):
        print(str(r).split(";")[0].strip())
PYEOF
)
"${pip[@]}" "${deps[@]}"
# torchdeq declares torch>=1.11 and numpy only; --no-deps keeps pip from touching torch.
"${pip[@]}" --no-deps torchdeq==0.1.0
"${pip[@]}" $(echo "$PINS" | tr ' ' '\n' | grep -v '^torchdeq')
"$VENV/bin/python" -c "import torch, onnx, onnxscript, jsonschema, torchdeq; print('torch', torch.__version__)" >&2
echo "$STAMP" > "$VENV/.deq-serve-stamp"
echo "$VENV/bin/python"
