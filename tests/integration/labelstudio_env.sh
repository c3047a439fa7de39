#!/usr/bin/env bash
# The virtual environment that runs Label Studio for tests/integration/test_labelstudio.py.
# Label Studio does not resolve beside this project's dependencies, so it gets a venv of its own
# and the test runs it as the separate server it is. Idempotent: a venv that already holds the
# version is kept (a fresh install takes a few minutes and about 1 GB).
#
# Usage: tests/integration/labelstudio_env.sh [VENV]
#   VENV defaults to $WINNOW_LABELSTUDIO_VENV, else /tmp/winnow-labelstudio-venv.
# Exit status: 0 ready; 3 the package registry cannot be reached (the test then skips);
# anything else: the install failed (the test then fails).
set -euo pipefail
VERSION="${WINNOW_LABELSTUDIO_VERSION:-1.23.2}"
VENV="${1:-${WINNOW_LABELSTUDIO_VENV:-/tmp/winnow-labelstudio-venv}}"

installed() {
    [ -x "$VENV/bin/python" ] && [ -x "$VENV/bin/label-studio" ] && "$VENV/bin/python" -c \
        "import importlib.metadata as m, sys; sys.exit(m.version('label-studio') != '$VERSION')" \
        2>/dev/null
}

if installed; then
    echo "label-studio $VERSION ready in $VENV"
    exit 0
fi

# Can the registry be reached? Download just the label-studio wheel (pip's own configuration
# picks the index); a failure here means "no registry", not "broken install".
probe="$(mktemp -d)"
trap 'rm -rf "$probe"' EXIT
if ! python3 -m pip download --no-deps --quiet --dest "$probe" "label-studio==$VERSION" \
        >"$probe/log" 2>&1; then
    echo "cannot download label-studio==$VERSION from the package registry:" >&2
    grep -v "WARNING: Location" "$probe/log" | tail -5 >&2
    exit 3
fi

echo "installing label-studio $VERSION into $VENV (a few minutes)"
rm -rf "$VENV"
python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip 2>&1 | grep -v "WARNING: Location" || true
"$VENV/bin/python" -m pip install --quiet --find-links "$probe" "label-studio==$VERSION" 2>&1 \
    | grep -v "WARNING: Location" || true
installed || { echo "label-studio $VERSION did not install into $VENV" >&2; exit 1; }
echo "label-studio $VERSION ready in $VENV"
