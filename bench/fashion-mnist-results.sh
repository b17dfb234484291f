#!/usr/bin/env bash
# Rewrites every committed report that the shipped Fashion-MNIST bundles feed, in the order
# issue #27 ranks them: quality first, then DEQ-native serving, then speed. Run it after a
# re-export, on an otherwise idle machine (nothing training, no test suite), after
# `npm run build` and `apt-get install -y dataset-fashion-mnist`.
#
#   bash bench/fashion-mnist-results.sh [step ...]
#
# Steps (all by default): check eval f32 early warm solve compare peers http http-tol http-f32 http-peers.
# Each report names its machine and load; the docs quote them (docs/benchmarks.md, docs/solver.md).
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=/usr/share/datasets/fashion-mnist
CLI="node dist/cli/main.js"
R=docs/results
PEERS_PY="${PEERS_PY:-$HOME/.cache/deq-serve/bench-peers/bin/python}"
[ -f "$DATA/t10k-images-idx3-ubyte.gz" ] || { echo "needs apt-get install -y dataset-fashion-mnist" >&2; exit 1; }
steps=("$@")
[ ${#steps[@]} -gt 0 ] || steps=(check eval f32 early warm solve compare peers http http-tol http-f32 http-peers)
say() { printf '\n== %s (%s)\n' "$1" "$(date -u +%H:%M:%S)"; }

for step in "${steps[@]}"; do
  case "$step" in
    check)  # parity through deq-serve, and an independent fixed-point check with onnxruntime-node
      for m in fashion-mnist-jr fashion-mnist-plain; do
        say "check $m"; $CLI inspect "models/$m" | tail -n 5; node models/recipes/verify_bundle.mjs "models/$m"
      done ;;
    eval)
      say eval
      $CLI eval models/fashion-mnist-jr models/fashion-mnist-plain --dataset fashion-mnist \
        --nfe-caps 1,2,3,4,5,6,8,10,15,20,30 --train-images 10000 --out $R/fashion-mnist.md ;;
    f32)  # the evidence a manifest's solver.precision "float32" rests on (docs/solver.md#kernel-precision)
      say f32; node bench/f32-agreement-wide.mjs --data-dir $DATA ;;
    early)
      say early-exit
      node bench/early-exit.mjs --data-dir $DATA \
        --configs 1:0.1:0,2:0.1:0,3:0.1:0,4:0.1:0,6:0.1:0,8:0.1:0,1:0.1:0.8,2:0.1:0.8,3:0.1:0.8,4:0.1:0.8,3:0.1:0.5,3:0.1:0.9 \
        --budgets 3,5,8,10 --batch 50 --out $R/early-exit.md ;;
    warm)
      say warm-start
      node bench/warm-start.mjs --data-dir $DATA --images 300 --frames 8 --sigma 0.002,0.005,0.01,0.02 \
        --batch 50 --out $R/warm-start.md ;;
    solve)
      for m in fashion-mnist-jr fashion-mnist-plain; do
        say "bench solve $m"; $CLI bench solve "models/$m" --out "$R/bench-solve-$m.md" >/dev/null
      done ;;
    compare)
      say "bench compare jr"; $CLI bench compare models/fashion-mnist-jr --rounds 5 --out $R/bench-compare-fashion-mnist-jr.md >/dev/null
      say "bench compare jr f32 batch 32"
      $CLI bench compare models/fashion-mnist-jr --kernel wasm-f32 --batches 32 --out $R/bench-compare-fashion-mnist-jr-f32.md >/dev/null
      say "bench compare plain"
      $CLI bench compare models/fashion-mnist-plain --rounds 3 --images 32 --out $R/bench-compare-fashion-mnist-plain.md >/dev/null ;;
    peers)
      for m in fashion-mnist-jr fashion-mnist-plain; do
        say "bench peers $m"
        $CLI bench compare "models/$m" --peers all --peers-python "$PEERS_PY" --rounds 5 --json \
          --out "$R/bench-peers-$m.md" > "$R/bench-peers-$m.json"
      done ;;
    http)
      say "http jr"
      $CLI bench http --compare --modes on,off --traffic fashion-mnist-jr --concurrency 1,4,16 --out $R/http-jr.md >/dev/null
      say "http mixed"
      $CLI bench http --compare --modes on,off,static --traffic fashion-mnist-jr,fashion-mnist-plain --concurrency 16 \
        --out $R/http-mixed.md >/dev/null ;;
    http-tol)  # loose and tight requests on one model, continuous against static batching
      say "http tolerances"
      $CLI bench http --compare --modes on,static --traffic "fashion-mnist-jr?tol=0.1,fashion-mnist-jr?tol=1e-5" \
        --concurrency 16 --out $R/http-jr-tolerances.md >/dev/null ;;
    http-f32)  # the float32 kernel over HTTP (compare with http-jr.md, the default kernel)
      say "http f32"
      $CLI bench http --compare --modes on,off --traffic fashion-mnist-jr --concurrency 1,4,16 \
        --server-args="--solver-kernel wasm-f32" --out $R/http-jr-f32.md >/dev/null ;;
    http-peers)  # against a FastAPI service around ONNX Runtime's Python API (builds the peers' venv)
      say "http peers"; bash bench/peers-http.sh ;;
    *) echo "unknown step $step (check eval f32 early warm solve compare peers http http-tol http-f32 http-peers)" >&2; exit 2 ;;
  esac
done
