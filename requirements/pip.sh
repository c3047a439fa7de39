# Sourced by lock.sh and install.sh: pip of a venv, without the notices this machine's pip
# configuration prints for index folders it does not have ("WARNING: Location ... is ignored").
venv_pip() {  # venv_pip VENV ARGS...
    local venv="$1" rc=0
    shift
    "$venv/bin/python" -m pip "$@" 2> >(grep -v "^WARNING: Location" >&2) || rc=$?
    return "$rc"
}
