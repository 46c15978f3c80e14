"""The CLI stays a thin layer: each command body fills a request, calls the library and prints (at most 40
lines), and no command imports a backend module (their options come from the registry)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

CLI = Path(__file__).resolve().parents[2] / "alexnet_deploy" / "cli"
COMMANDS = [
    (path, node)
    for path in sorted(CLI.glob("*.py"))
    for node in ast.parse(path.read_text()).body
    if isinstance(node, ast.FunctionDef) and any(getattr(d, "id", "") == "handle_errors" for d in node.decorator_list)
]


def _body_lines(node: ast.FunctionDef) -> int:
    body = (
        node.body[1:]
        if isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)
        else node.body
    )
    return body[-1].end_lineno - body[0].lineno + 1


def test_every_command_is_found():
    assert len(COMMANDS) >= 12 and all(node.name.endswith("_command") for _, node in COMMANDS)


@pytest.mark.parametrize("path,node", COMMANDS, ids=[n.name for _, n in COMMANDS])
def test_a_command_body_is_at_most_40_lines(path, node):
    assert _body_lines(node) <= 40, f"{path.name}:{node.name} has {_body_lines(node)} lines"


@pytest.mark.parametrize("path", sorted(CLI.glob("*.py")), ids=lambda p: p.name)
def test_the_cli_imports_no_backend_module(path):
    imported = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            imported += [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            imported += [a.name for a in node.names]
    backend_modules = [m for m in imported if m.startswith("alexnet_deploy.backends.") and m.count(".") >= 2]
    allowed = {"alexnet_deploy.backends.BackendSpec", "alexnet_deploy.backends.backends",
               "alexnet_deploy.backends.base", "alexnet_deploy.backends.base.CliFlag",
               "alexnet_deploy.backends.describe_artifact", "alexnet_deploy.backends.runner_for",
               "alexnet_deploy.backends.backend_spec", "alexnet_deploy.backends.verification",
               "alexnet_deploy.backends.verification.verify_file"}  # fmt: skip
    assert not [m for m in backend_modules if m not in allowed], backend_modules


def test_the_body_count_can_fail():
    node = ast.parse("def f():\n    '''doc'''\n" + "    x = 1\n" * 41).body[0]
    assert _body_lines(node) == 41
