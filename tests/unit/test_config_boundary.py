"""Options become settings in ``pipeline/`` only: nothing below it sees argparse or raises ``UserError``.

``pipeline.config.resolve`` and ``pipeline.settings`` read the parsed options and turn every
mistake into a one-line ``UserError`` naming the option. The stages in ``transforms/`` and the
adapters receive frozen ``*Settings``; their pure parsers raise ``ValueError``. Each module
under ``transforms/`` and ``adapters/`` is read with ``ast`` (code, not docstrings: a docstring
may say why an adapter raises its own error instead), so an option read or a ``UserError``
creeping back into a stage fails here. ``transforms/core/errors.py`` defines ``UserError``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from pipeline.options import OPTION_SPECS
from tests.conftest import REPO

CHECKED_ROOTS = ("transforms", "adapters")
DEFINES_USER_ERROR = Path("transforms/core/errors.py")
#: Names a parsed-options namespace goes by; ``values.llm_model`` on one of them is an option read.
NAMESPACE_NAMES = frozenset({"values", "options", "args", "opts", "namespace", "ns", "parsed"})
OPTION_NAMES = frozenset(spec.name for spec in OPTION_SPECS)


def _modules() -> list[Path]:
    return [path.relative_to(REPO) for root in CHECKED_ROOTS for path in sorted((REPO / root).rglob("*.py"))]


def _is_namespace(node: ast.AST) -> bool:
    return isinstance(node, ast.Name) and node.id in NAMESPACE_NAMES


def boundary_problems(text: str, path: Path = Path("module.py")) -> list[str]:
    """What in one module's code belongs in ``pipeline/``: ``line: why`` for each."""
    problems = []
    for node in ast.walk(ast.parse(text)):
        line = getattr(node, "lineno", 0)
        if isinstance(node, ast.Import):
            problems += [f"{line}: imports argparse" for alias in node.names if alias.name.split(".")[0] == "argparse"]
        elif isinstance(node, ast.ImportFrom):
            if (node.module or "").split(".")[0] == "argparse":
                problems.append(f"{line}: imports from argparse")
            if path != DEFINES_USER_ERROR:
                problems += [f"{line}: imports UserError" for alias in node.names if alias.name == "UserError"]
        elif isinstance(node, (ast.Name, ast.Attribute)) and path != DEFINES_USER_ERROR:
            name = node.id if isinstance(node, ast.Name) else node.attr
            if name == "UserError":
                problems.append(f"{line}: uses UserError")
        if isinstance(node, ast.Attribute) and _is_namespace(node.value) and node.attr in OPTION_NAMES:
            problems.append(f"{line}: reads the option {node.value.id}.{node.attr}")  # type: ignore[attr-defined]
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "getattr"
                and node.args and _is_namespace(node.args[0])):
            problems.append(f"{line}: reads options with getattr({node.args[0].id}, …)")  # type: ignore[attr-defined]
    return sorted(problems, key=lambda problem: int(problem.partition(":")[0]))


@pytest.mark.parametrize("path", _modules(), ids=str)
def test_no_module_below_pipeline_reads_options_or_raises_user_errors(path: Path):
    problems = boundary_problems((REPO / path).read_text(encoding="utf-8"), path)
    assert not problems, f"{path}: " + "; ".join(problems) + " (options → settings belong in pipeline/settings/)"


@pytest.mark.parametrize("code, found", [
    ("import argparse", "imports argparse"),
    ("from argparse import Namespace", "imports from argparse"),
    ("from transforms.core.errors import UserError", "imports UserError"),
    ("from transforms.core import errors\nraise errors.UserError('x')", "uses UserError"),
    ("def f(values):\n    return values.llm_model", "reads the option values.llm_model"),
    ("def f(options):\n    return getattr(options, 'llm_' + 'model')", "reads options with getattr(options, …)"),
])
def test_the_check_finds_each_kind_of_crossing(code: str, found: str):
    assert [problem.partition(": ")[2] for problem in boundary_problems(code)] == [found]


def test_settings_and_their_pure_parsers_pass_the_check():
    """A stage's own settings fields and a parser's ``ValueError`` are not crossings."""
    code = ("def parse_styles(value):\n    raise ValueError(value)\n"
            "def stage(settings):\n    return settings.llm, settings.database\n")
    assert boundary_problems(code) == []


def test_user_error_is_defined_below_pipeline_and_only_raised_above_it():
    """``transforms.core.errors`` may define it (``pipeline/`` raises it); the check lets that module be."""
    text = (REPO / DEFINES_USER_ERROR).read_text(encoding="utf-8")
    assert "class UserError" in text
    assert boundary_problems(text, DEFINES_USER_ERROR) == []
