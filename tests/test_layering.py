"""The apps are layered: an app imports only from apps in the layers below its own.

A shared base goes below the apps that use it (``apps.realtime``: the listen-only socket of the
documents and alerts pages); the pages that tie everything together go on top (``apps.core``:
home, healthz, runapp). Where a lower app needs something of a higher one, the higher one hands
it down (``apps.chat.extensions``, the knowledge app's ``document_ingesting`` signal, template
tags of incidents in the asset and chat pages) instead of the lower one importing upward.

Every import is read from the source, also those inside functions, and the test fails on one
that goes up or sideways.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

APPS = Path(__file__).resolve().parent.parent / "apps"

# Lowest first. An app may import from the apps of the layers before its own, not from its own
# layer's other apps nor from a later layer.
LAYERS = [
    ["realtime"],
    ["accounts"],
    ["knowledge"],
    ["assets"],
    ["chat"],
    ["incidents"],
    ["api", "maintenance", "monitoring"],
    ["core"],
]
LAYER = {app: n for n, apps in enumerate(LAYERS) for app in apps}


def _imported_apps(source: str, package: tuple[str, ...]) -> set[tuple[str, int]]:
    """(app, line) of each ``apps.<app>`` module the source imports; ``package`` (e.g. ("apps",
    "chat")) is where the file is, for relative imports."""
    tree = ast.parse(source)
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # from . import x / from ..assets import y
                base = list(package[: len(package) - node.level + 1])
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            names = [module] + [f"{module}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if len(parts) >= 2 and parts[0] == "apps":
                found.add((parts[1], node.lineno))
    return found


def _app_files():
    for path in sorted(APPS.rglob("*.py")):
        rel = path.relative_to(APPS)
        if len(rel.parts) > 1:
            yield rel.parts[0], path


def test_every_app_has_a_layer():
    apps = {p.name for p in APPS.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert apps == set(LAYER), f"declare the layer of {sorted(apps ^ set(LAYER))} in LAYERS"


def test_no_app_imports_from_an_app_above_it_or_beside_it():
    upward = []
    for app, path in _app_files():
        package = path.relative_to(APPS.parent).parts[:-1]
        for other, line in sorted(_imported_apps(path.read_text(encoding="utf-8"), package)):
            if other != app and other in LAYER and LAYER[other] >= LAYER[app]:
                upward.append(f"{path.relative_to(APPS.parent)}:{line} ({app}) imports apps.{other}")
    assert not upward, "imports from an app above (or beside) the importing one:\n" + "\n".join(upward)


@pytest.mark.parametrize("source, expected", [
    ("from apps.incidents.selectors import x", {("incidents", 1)}),
    ("def f():\n    from apps.core import views", {("core", 2)}),
    ("import apps.chat.models", {("chat", 1)}),
    ("from apps import incidents", {("incidents", 1)}),
    ("from ..incidents import selectors", {("incidents", 1)}),
    ("from ingest.chunk import Chunk", set()),
])
def test_it_finds_imports_wherever_they_are_written(source, expected):
    assert _imported_apps(source, ("apps", "knowledge")) == expected
