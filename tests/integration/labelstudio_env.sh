#!/usr/bin/env bash
# The virtual environment that runs Label Studio for tests/integration/test_labelstudio.py.
# Label Studio does not resolve beside this project's dependencies, so it gets a venv of its own
# and the test runs it as the separate server it is. The venv holds exactly what
# requirements/labelstudio.lock.txt lists (`make lock` rewrites it). Idempotent: a venv built
# from the same lock is kept and synced to it; one built from another lock (or from open ranges,
# by an older version of this script) is rebuilt (a few minutes and about 1 GB).
#
# Usage: tests/integration/labelstudio_env.sh [VENV]
#   VENV defaults to $WINNOW_LABELSTUDIO_VENV, else /tmp/winnow-labelstudio-venv.
# Exit status: 0 ready; 3 the package registry cannot be reached (the test then skips);
# anything else: the install failed (the test then fails).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
LOCK="$root/requirements/labelstudio.lock.txt"
VENV="${1:-${WINNOW_LABELSTUDIO_VENV:-/tmp/winnow-labelstudio-venv}}"
PIN="$(grep -E '^label-studio==' "$LOCK")"
DIGEST="$(sha256sum "$LOCK" | cut -d' ' -f1)"
MARK="$VENV/.winnow-lock-sha256"  # the digest of the lock the venv was built from

installed() {
    [ -x "$VENV/bin/label-studio" ] && [ "$(cat "$MARK" 2>/dev/null)" = "$DIGEST" ]
}

# A venv built from this lock is kept, and synced to it (seconds: a package changed by hand
# since goes back to its locked version, one the lock does not list is removed).
if installed && bash "$root/requirements/install.sh" "$VENV" "$LOCK"; then
    echo "$PIN ready in $VENV (from requirements/labelstudio.lock.txt)"
    exit 0
fi

# Can the registry be reached? Download just the label-studio wheel (pip's own configuration
# picks the index); a failure here means "no registry", not "broken install".
probe="$(mktemp -d)"
trap 'rm -rf "$probe"' EXIT
if ! python3 -m pip download --no-deps --quiet --dest "$probe" "$PIN" >"$probe/log" 2>&1; then
    echo "cannot download $PIN from the package registry:" >&2
    grep -v "WARNING: Location" "$probe/log" | tail -5 >&2
    exit 3
fi

echo "installing $PIN and its locked dependencies into $VENV (a few minutes)"
rm -rf "$VENV"
bash "$root/requirements/install.sh" "$VENV" "$LOCK" || {
    echo "installing requirements/labelstudio.lock.txt into $VENV failed" >&2
    exit 1
}
echo "$DIGEST" >"$MARK"
installed || { echo "$PIN did not install into $VENV" >&2; exit 1; }
echo "$PIN ready in $VENV"
