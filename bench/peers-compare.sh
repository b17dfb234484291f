#!/usr/bin/env bash
# deq-serve against every peer (issue #29), every shipped bundle, one command:
#   npm run bench:peers            (or bash bench/peers-compare.sh)
# writes docs/results/bench-peers-<bundle>.md (and .json). Makes or reuses the peers' venv
# (models/recipes/make-bench-venv.sh; the first run downloads PyTorch, about 3 GB). The Debian
# PyTorch peer ("pytorch") runs where /usr/bin/python3 has torch, and is listed as not run elsewhere;
# install libopenblas0-pthread for it (Debian's reference BLAS makes it several times slower).
# Run it on a quiet machine: the sides alternate within a row, but a shared machine still skews them.
# Settings: ROUNDS (default 5), BUNDLES (default: the three shipped bundles), FASHION_MNIST_DIR
# (IDX files; default /usr/share/datasets/fashion-mnist from `apt-get install dataset-fashion-mnist`).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="$(models/recipes/make-bench-venv.sh | tail -n 1)"
npm run build >/dev/null
data=()
[[ -n "${FASHION_MNIST_DIR:-}" ]] && data=(--data-dir "$FASHION_MNIST_DIR")
for b in ${BUNDLES:-fashion-mnist-jr fashion-mnist-plain brown-lm-jr}; do
  case "$b" in fashion-mnist*) extra=("${data[@]}") ;; *) extra=() ;; esac
  echo "== bench compare $b ($(date -u +%H:%M:%S) UTC)" >&2
  node dist/cli/main.js bench compare "models/$b" --peers all --peers-python "$PY" --rounds "${ROUNDS:-5}" \
    "${extra[@]}" --json --out "docs/results/bench-peers-$b.md" > "docs/results/bench-peers-$b.json"
done
echo "written: docs/results/bench-peers-*.md" >&2
