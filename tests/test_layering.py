"""The floor plan stays true: each floor imports only the floors below it, and no module reaches into another
module's private names.

    core  <-  backends  <-  stages (train, export, calib)  <-  orchestration (build, verify, bench, ...)  <-  cli

Inside the orchestration floor the build's steps sit below the build: ``alexnet_deploy.build`` may use
``selection`` and ``sensitivity`` (and the light ``requests``), never the other way round, and the two steps do
not use each other (the fallback is the build's own step: it ranks with ``sensitivity`` and recompiles with
``selection``).

Every import statement of every module is read with ``ast`` (lazy imports inside functions included), so a new
upward import anywhere fails here.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
STAGES = ("train", "export", "calib")


def _floor(module: str) -> str | None:
    """The floor of a module of ours, or None for third-party modules and the bare package."""
    top = module.split(".")[0]
    if top in STAGES:
        return "stage"
    if top != "alexnet_deploy" or module == "alexnet_deploy":
        return None  # the bare package only holds __version__
    second = module.split(".")[1]
    if second == "core":
        return "core"
    if second == "backends":
        return "backends"
    if second == "cli":
        return "cli"
    return "orchestration"


ALLOWED = {
    "core": {"core"},
    "backends": {"core", "backends"},
    "stage": {"core", "backends", "stage"},
    "orchestration": {"core", "backends", "stage", "orchestration"},
    "cli": {"core", "backends", "stage", "orchestration", "cli"},
}


def _modules():
    for top in ("alexnet_deploy", *STAGES):
        for path in sorted((REPO / top).rglob("*.py")):
            parts = path.relative_to(REPO).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            yield name, path


def _imports(path: Path, name: str):
    """(line, imported module, names) of every import in a file, relative imports resolved."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name, []
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            yield node.lineno, base, [a.name for a in node.names]


MODULES = list(_modules())


def test_the_floors_exist():
    floors = {_floor(name) for name, _ in MODULES}
    assert {"core", "backends", "stage", "orchestration", "cli"} <= floors
    assert len([n for n, _ in MODULES if _floor(n) == "core"]) >= 8


@pytest.mark.parametrize("name,path", MODULES, ids=[n for n, _ in MODULES])
def test_no_module_imports_a_floor_above_its_own(name, path):
    mine = _floor(name)
    upward = []
    for line, module, names in _imports(path, name):
        targets = [module] + [f"{module}.{n}" for n in names]  # "from alexnet_deploy import build" imports a module
        for target in targets:
            floor = _floor(target)
            if floor is not None and floor not in ALLOWED[mine] and target.split(".")[-1] not in ("__version__",):
                upward.append(f"line {line}: {target} ({floor})")
    assert not upward, f"{name} ({mine}) imports from above: {upward}"


@pytest.mark.parametrize("name,path", MODULES, ids=[n for n, _ in MODULES])
def test_no_module_reaches_into_another_modules_private_names(name, path):
    ours = {n for n, _ in MODULES}
    private = [
        f"line {line}: {module}.{n}"
        for line, module, names in _imports(path, name)
        for n in names
        if n.startswith("_") and not n.startswith("__") and module in ours and module != name
    ]
    assert not private, f"{name} imports private names: {private}"


#: Inside orchestration: module -> the orchestration modules it must not import (the build's steps stay below it).
STEPS_BELOW_THE_BUILD = {
    "alexnet_deploy.requests": {"alexnet_deploy.build", "alexnet_deploy.selection", "alexnet_deploy.sensitivity"},
    "alexnet_deploy.selection": {"alexnet_deploy.build", "alexnet_deploy.sensitivity"},
    "alexnet_deploy.sensitivity": {"alexnet_deploy.build", "alexnet_deploy.selection"},
}


@pytest.mark.parametrize("name", sorted(STEPS_BELOW_THE_BUILD))
def test_the_builds_steps_never_import_the_build_or_each_other(name):
    path = next(p for n, p in MODULES if n == name)
    found = {
        target
        for _, module, names in _imports(path, name)
        for target in [module] + [f"{module}.{n}" for n in names]
        if target in STEPS_BELOW_THE_BUILD[name]
    }
    assert not found, f"{name} imports {sorted(found)}"


def test_the_layering_check_catches_an_upward_import(tmp_path):
    # The rule itself must be able to fail: a core module importing the build would be reported.
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from alexnet_deploy.build import build\n")
    found = [m for _, m, _ in _imports(bad, "alexnet_deploy.core.bad")]
    assert found == ["alexnet_deploy.build"] and _floor(found[0]) not in ALLOWED["core"]


def test_no_two_public_classes_share_a_name():
    """One name per concept: a second ``Candidate`` or ``Artifact`` would make every reader ask which one."""
    seen: dict[str, str] = {}
    clashes = []
    for name, path in MODULES:
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
                if node.name in seen:
                    clashes.append(f"{node.name}: {seen[node.name]} and {name}")
                seen.setdefault(node.name, name)
    assert not clashes, clashes
