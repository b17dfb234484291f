#!/usr/bin/env bash
# A virtual environment with the clients users call OIP v2 servers with, from PyPI: Triton's
# tritonclient (HTTP and gRPC), the KServe Python SDK, and grpcio-tools to compile an
# independent client from the vendored proto (issue #26).
#
#   test/clients/make-venv.sh [VENV_DIR]       prints the venv's python on its last line
#
# VENV_DIR defaults to ${XDG_CACHE_HOME:-~/.cache}/deq-serve/oip-clients-<stamp hash>, outside
# the checkout, so CI and repeated runs reuse it: a venv whose stamp matches the pins is kept.
set -euo pipefail
# grpcio-tools comes with kserve (which requires it); pip picks the version both allow.
PINS="tritonclient[all]==2.73.0 kserve==0.21.0 grpcio-tools"
STAMP="$PINS"
HASH="$(echo "$STAMP" | sha256sum | cut -c1-12)"
VENV="${1:-${XDG_CACHE_HOME:-$HOME/.cache}/deq-serve/oip-clients-$HASH}"
PY="${PYTHON:-python3}"

if [[ -x "$VENV/bin/python" && "$(cat "$VENV/.deq-serve-stamp" 2>/dev/null)" == "$STAMP" ]]; then
  echo "$VENV/bin/python"
  exit 0
fi
rm -rf "$VENV"
mkdir -p "$(dirname "$VENV")"
"$PY" -m venv "$VENV"
pip=("$VENV/bin/python" -m pip install -q --disable-pip-version-check)
"${pip[@]}" --upgrade "pip>=24"
# shellcheck disable=SC2086
"${pip[@]}" $PINS
# One process each: tritonclient, kserve and a compiled proto all register the `inference.*`
# messages in protobuf's default pool, so they cannot be imported together.
"$VENV/bin/python" -c "import tritonclient.http, tritonclient.grpc, numpy" >&2
"$VENV/bin/python" -c "import kserve" >&2
"$VENV/bin/python" -c "import grpc_tools.protoc" >&2
echo "$STAMP" > "$VENV/.deq-serve-stamp"
echo "$VENV/bin/python"
