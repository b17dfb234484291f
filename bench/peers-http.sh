#!/usr/bin/env bash
# deq-serve's HTTP server against a FastAPI + ONNX Runtime (Python) service with the same loop
# (models/recipes/serve_fastapi.py; issue #29), one command:
#   npm run bench:peers-http       (or bash bench/peers-http.sh)
# Both serve models/ on loopback, one after the other, and get the same closed-loop load: Fashion-MNIST
# test images as v2 JSON tensors to fashion-mnist-jr, at concurrency 1 and 16. Writes
# docs/results/http-peers.md (+ .svg, .json). deq-serve runs with its defaults and continuous batching
# (--batching on) on 1 ONNX Runtime thread per session; the FastAPI service with 1 ONNX Runtime thread
# per session, requests in FastAPI's thread pool, no batching. DURATION (s per level, default 20).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="$(models/recipes/make-bench-venv.sh | tail -n 1)"
npm run build >/dev/null
node dist/cli/main.js bench http --compare --modes on --peer fastapi --peers-python "$PY" --peer-threads 1 \
  --server-args="--threads 1" --protocol v2 --traffic fashion-mnist-jr --concurrency 1,16 \
  --duration "${DURATION:-20}" --max-requests 20000 --json --out docs/results/http-peers.md > docs/results/http-peers.json
echo "written: docs/results/http-peers.md" >&2
