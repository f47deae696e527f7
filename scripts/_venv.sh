# Sourced by the scripts here: make .venv with the locked dependencies, once per change of the lock.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
PYTHON="${PYTHON:-python3}"
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "paytabs-guard needs Python >= 3.11 (found $("$PYTHON" --version 2>&1))" >&2
  exit 2
fi
stamp=".venv/.installed-$(cat pyproject.toml constraints.txt | "$PYTHON" -c 'import hashlib,sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest()[:16])')"
if [ ! -f "$stamp" ]; then
  [ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
  # (this machine's pip config names local wheel folders that may not exist: hide that noise)
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip \
    2> >(grep -v "WARNING: Location" >&2)
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -c constraints.txt \
    -e ".[dev,service,simulator,bench,otel]" 2> >(grep -v "WARNING: Location" >&2)
  rm -f .venv/.installed-*
  touch "$stamp"
fi
export PATH="$root/.venv/bin:$PATH"
