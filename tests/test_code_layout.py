"""The folder tree of ``collector/`` is the architecture's map: each group imports only the
groups below it, so no import runs back up (CONTRIBUTING.md draws the same order)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "collector"
LAYERS = ("core", "graph", "archive", "tenants", "observe", "run")
"""From the bottom up: a module may import its own group and the groups before it."""
TOP = frozenset({"__init__", "__main__", "cli"})
"""The entry points above every group."""


def _module(path: Path) -> tuple[str, ...]:
    return path.relative_to(PACKAGE).with_suffix("").parts


def _imports(path: Path) -> list[tuple[str, ...]]:
    """Every ``collector`` module or package ``path`` imports, as parts below ``collector``."""
    here = _module(path)[:-1]
    found: list[tuple[str, ...]] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[: len(here) - (node.level - 1)]
                target = base + tuple(node.module.split(".") if node.module else ())
            elif node.module and node.module.split(".")[0] == "collector":
                target = tuple(node.module.split(".")[1:])
            else:
                continue
            for alias in node.names:  # `from . import watermarks` names a module
                candidate = (*target, alias.name)
                module = PACKAGE.joinpath(*candidate).with_suffix(".py").exists()
                found.append(candidate if module else target)
        elif isinstance(node, ast.Import):
            found += [
                tuple(a.name.split(".")[1:]) for a in node.names if a.name.startswith("collector.")
            ]
    return [t for t in found if t]


def _layer(parts: tuple[str, ...]) -> int:
    return LAYERS.index(parts[0]) if parts[0] in LAYERS else len(LAYERS)


def test_every_module_belongs_to_a_group_or_is_an_entry_point() -> None:
    for path in PACKAGE.rglob("*.py"):
        parts = _module(path)
        assert (len(parts) == 1 and parts[0] in TOP) or (len(parts) == 2 and parts[0] in LAYERS), (
            f"{path.relative_to(PACKAGE.parent)} is in no group of {LAYERS}"
        )
    for group in LAYERS:
        assert (PACKAGE / group / "__init__.py").read_text().startswith('"""'), group


def test_no_import_runs_back_up_from_a_lower_group_to_a_higher_one() -> None:
    upward = []
    for path in PACKAGE.rglob("*.py"):
        source = _module(path)
        for target in _imports(path):
            if _layer(target) > _layer(source):
                upward.append(f"{'/'.join(source)} -> {'/'.join(target)}")
    assert not upward, upward


def test_the_check_sees_imports_across_groups() -> None:
    runner = _imports(PACKAGE / "run" / "runner.py")
    assert ("core", "settings") in runner and ("observe", "metrics") in runner
    assert ("run", "watermarks") in runner  # `from . import watermarks`
    assert _layer(("run", "runner")) > _layer(("observe", "metrics")) > _layer(("core", "rows"))
