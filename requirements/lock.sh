#!/usr/bin/env bash
# `make lock`: rebuild the lock files from the open ranges, in fresh virtual environments.
#
#   requirements/winnow.lock.txt       the project's venv: pyproject.toml's dependencies and the
#                                      `test` extra (make install, make test, .ci/run)
#   requirements/mutation.lock.txt     the same plus the `mutation` extra (make mutation)
#   requirements/labelstudio.lock.txt  the Label Studio test's venv, from labelstudio.in
#
# Each lock is `pip freeze --all` of a fresh install: every package, transitive ones included,
# at the exact version that install got (a constraints file written from a known-good install).
# pip installs torch and torchvision from this machine's disk (/etc/xdg/pip caps them), so the
# locks hold the versions pyproject.toml pins. Prints what moved; `make lock` then installs the
# project's venv from the new lock and runs the suite.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=requirements/pip.sh
source requirements/pip.sh
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

header() {  # $1: what the lock is for, $2: what was installed
    echo "# Written by \`make lock\` (requirements/lock.sh) on $(date -u +%Y-%m-%d): do not edit."
    echo "# $1"
    echo "# Resolved from: $2 ($(python3 --version), $(uname -m))."
}

freeze() {  # $1: venv. Every distribution but Winnow itself, sorted.
    venv_pip "$1" freeze --all | grep -viE '^winnow( |=|@)' \
        | LC_ALL=C sort -f
}

fresh_venv() {  # $1: folder. The newest pip, setuptools and wheel the registry serves.
    python3 -m venv "$1"
    venv_pip "$1" install -q --upgrade pip setuptools wheel
}

echo "resolving the project's venv (pyproject.toml, extras: test)"
fresh_venv "$work/winnow"
venv_pip "$work/winnow" install -q '.[test]'
venv_pip "$work/winnow" check
{
    header "The project's venv: make install, make test, .ci/run." "pyproject.toml [test]"
    freeze "$work/winnow"
} >"$work/winnow.lock.txt"

echo "resolving the mutation venv (extras: test, mutation)"
venv_pip "$work/winnow" install -q '.[test,mutation]'
{
    header "make mutation's venv: the project's venv plus mutmut." "pyproject.toml [test,mutation]"
    freeze "$work/winnow"
} >"$work/mutation.lock.txt"

echo "resolving the Label Studio venv (requirements/labelstudio.in)"
fresh_venv "$work/labelstudio"
venv_pip "$work/labelstudio" install -q -r requirements/labelstudio.in
venv_pip "$work/labelstudio" check
{
    header "Label Studio's venv for tests/integration/test_labelstudio.py." \
        "requirements/labelstudio.in"
    freeze "$work/labelstudio"
} >"$work/labelstudio.lock.txt"

for name in winnow mutation labelstudio; do
    new="$work/$name.lock.txt"
    old="requirements/$name.lock.txt"
    echo "== $old: what moved"
    if [ -f "$old" ]; then
        diff <(grep -v '^#' "$old") <(grep -v '^#' "$new") | grep '^[<>]' || echo "   nothing"
    else
        echo "   new file, $(grep -vc '^#' "$new") packages"
    fi
    cp "$new" "$old"
done
