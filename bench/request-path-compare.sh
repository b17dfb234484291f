#!/usr/bin/env bash
# Before/after load comparison for issue #20 (one request path): builds BASE (default: the
# merge-base with main) in a temporary worktree beside this checkout, then runs the same
# `deq-serve bench http --compare` against both builds, alternating before/after, ROUNDS times:
# fashion-mnist-jr at c=1 and c=16, and mixed jr + plain at c=16, batching off and on.
# Run it on a quiet machine; it prints a table of req/s and p99 per round and the spread.
#   bench/request-path-compare.sh [BASE] [ROUNDS] [DURATION_S]
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
base="${1:-$(git -C "$here" merge-base HEAD main)}"
rounds="${2:-3}"
duration="${3:-10}"
out="$(mktemp -d /tmp/deq-compare-XXXXXX)"
before="$out/before"
git -C "$here" worktree add --detach "$before" "$base" >/dev/null
trap 'git -C "$here" worktree remove --force "$before" >/dev/null 2>&1 || true' EXIT
ln -s "$here/node_modules" "$before/node_modules"
(cd "$before" && npm run build >/dev/null 2>&1)
(cd "$here" && npm run build >/dev/null 2>&1)
for round in $(seq 1 "$rounds"); do
  for side in before after; do
    dir="$here"; [ "$side" = before ] && dir="$before"
    for scenario in jr mixed; do
      traffic=fashion-mnist-jr; conc=1,16
      [ "$scenario" = mixed ] && traffic=fashion-mnist-jr,fashion-mnist-plain && conc=16
      echo "round $round, $side, $scenario" >&2
      (cd "$dir" && node dist/cli/main.js bench http --compare --modes off,on --traffic "$traffic" \
        --concurrency "$conc" --duration "$duration" --models-dir "$here/models" --json) \
        > "$out/$side-$scenario-$round.json"
    done
  done
done
node "$here/bench/request-path-summary.mjs" "$out"
echo "raw reports: $out" >&2
