#!/usr/bin/env bash
# Make a virtual environment hold exactly what a lock file lists, then (optionally) this
# project, editable. Used by `make install`, `make mutation` and the Label Studio test's venv.
#
# Usage: requirements/install.sh VENV LOCK [PROJECT_DIR]
#   Creates VENV if missing; installs pip, setuptools and wheel at the lock's versions, then
#   every locked package with --no-deps (the lock is complete: nothing is resolved here), drops
#   packages the lock does not list (an older venv converges on the lock), installs PROJECT_DIR
#   editable without dependencies or build isolation (setuptools from the lock builds it), and
#   ends with `pip check`.
set -euo pipefail
venv="$1"
lock="$2"
project="${3:-}"

# shellcheck source=requirements/pip.sh
source "$(dirname "$0")/pip.sh"
pip() { venv_pip "$venv" "$@"; }
names() {  # canonical names of `name==version` lines on stdin
    grep -E '^[A-Za-z0-9]' | sed -E 's/[=<>!~ ;@].*//' | tr 'A-Z_.' 'a-z--' | LC_ALL=C sort -u
}

[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
# shellcheck disable=SC2046 - one argument per tool
pip install -q --disable-pip-version-check $(grep -E '^(pip|setuptools|wheel)==' "$lock")
pip install -q --no-deps -r "$lock"
extra=$(LC_ALL=C comm -23 \
    <(pip freeze --all --exclude-editable | names) <(names <"$lock") | grep -vx winnow || true)
if [ -n "$extra" ]; then
    echo "removing packages the lock does not list: $(echo "$extra" | tr '\n' ' ')"
    # shellcheck disable=SC2086 - one argument per package
    pip uninstall -q -y $extra
fi
if [ -n "$project" ]; then
    pip install -q --no-deps --no-build-isolation -e "$project"
fi
pip check >/dev/null || { pip check >&2; exit 1; }
