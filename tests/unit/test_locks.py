"""The lock files pin what a fresh machine installs, and agree with what the project asks for.

`make lock` (requirements/lock.sh) writes them; these checks catch a pyproject.toml or
labelstudio.in edited without re-locking, and a lock edited by hand into an inconsistent state.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
LOCKS = ROOT / "requirements"


def _lock(name: str) -> dict[str, str]:
    """Canonical package name -> exact version, from a lock file."""
    pins: dict[str, str] = {}
    for line in (LOCKS / name).read_text().splitlines():
        if not line or line.startswith("#"):
            continue
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;=]+)", line)
        assert match, f"{name}: {line!r} is not an exact `name==version` pin"
        package = canonicalize_name(match[1])
        assert package not in pins, f"{name}: {package} is pinned twice"
        pins[package] = match[2]
    return pins


def _unmet(requirements: list[str], pins: dict[str, str]) -> list[str]:
    """The requirements (for this Python) that the pinned versions do not satisfy."""
    unmet = []
    for text in requirements:
        req = Requirement(text)
        if req.marker is not None and not req.marker.evaluate():
            continue
        version = pins.get(canonicalize_name(req.name))
        if version is None or not req.specifier.contains(version, prereleases=True):
            unmet.append(f"{text} (locked: {version or 'missing'})")
    return unmet


def _project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


@pytest.mark.parametrize(
    ("lock", "extras"), [("winnow.lock.txt", ["test"]), ("mutation.lock.txt", ["test", "mutation"])]
)
def test_each_project_lock_satisfies_pyproject(lock, extras):
    project = _project()
    wanted = project["dependencies"] + [
        r for e in extras for r in project["optional-dependencies"][e]
    ]
    assert _unmet(wanted, _lock(lock)) == [], f"{lock} is stale: run `make lock`"


def test_the_labelstudio_lock_satisfies_its_input_and_keeps_sentry_below_3():
    lines = (LOCKS / "labelstudio.in").read_text().splitlines()
    wanted = [line for line in lines if line.strip() and not line.startswith("#")]
    pins = _lock("labelstudio.lock.txt")
    assert _unmet(wanted, pins) == [], "labelstudio.lock.txt is stale: run `make lock`"
    # label-studio 1.23.2 dies at start with sentry-sdk 3 ("Unknown option 'send_default_pii'")
    assert int(pins["sentry-sdk"].split(".")[0]) < 3


def test_the_mutation_lock_is_the_project_lock_plus_mutmut():
    base, mutation = _lock("winnow.lock.txt"), _lock("mutation.lock.txt")
    assert {k: mutation.get(k) for k in base} == base
    assert "mutmut" in set(mutation) - set(base)


@pytest.mark.parametrize("lock", ["winnow.lock.txt", "mutation.lock.txt", "labelstudio.lock.txt"])
def test_each_lock_pins_the_installers_it_builds_with(lock):
    # install.sh installs pip, setuptools and wheel first, at these versions, and builds the
    # editable project without build isolation: nothing is taken from open ranges
    assert {"pip", "setuptools", "wheel"} <= set(_lock(lock))


def test_the_project_venv_holds_exactly_the_lock():
    import sysconfig
    from importlib import metadata

    # Only the venv's own site-packages: once something imports setuptools, its vendored
    # copies (packaging, wheel, zipp, ...) are on sys.path too, with their own metadata.
    site = sorted({sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]})
    installed = {
        canonicalize_name(d.metadata["Name"]): d.version
        for d in metadata.distributions(path=site)
        if canonicalize_name(d.metadata["Name"]) != "winnow"
    }
    pins = _lock("winnow.lock.txt")
    if "mutmut" in installed:  # `make mutation` ran last: the venv is the mutation lock's
        pins = _lock("mutation.lock.txt")
    assert installed == pins, "the venv differs from the lock: run `make install`"
