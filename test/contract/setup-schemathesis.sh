#!/usr/bin/env bash
# Makes the virtual environment the contract suite runs schemathesis from (PyPI, pinned).
# Idempotent: an environment that already has this version is kept.
# Usage: test/contract/setup-schemathesis.sh [dir]   (default .work/schemathesis-venv)
set -euo pipefail
cd "$(dirname "$0")/../.."
VERSION=4.32.5
dir="${1:-.work/schemathesis-venv}"
if [ -x "$dir/bin/schemathesis" ] && "$dir/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('schemathesis') != '$VERSION')" 2>/dev/null; then
  exit 0
fi
python="${PYTHON:-python3}"
"$python" -m venv "$dir"
"$dir/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$VERSION"
"$dir/bin/schemathesis" --version
