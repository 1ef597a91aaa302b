"""No test checks nothing: a loop over a filtered list must assert the list is not empty, and an empty
parametrization fails at collection (pyproject: ``empty_parameter_set_mark``)."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def unguarded_loops(tree: ast.AST) -> list[tuple[str, int, str]]:
    """(test, line, name) of each ``for x in name`` where ``name`` is a filtered comprehension (``[… if …]``)
    that no ``assert`` in the same function mentions: when the filter drops everything, the loop checks nothing."""
    found = []
    for function in ast.walk(tree):
        if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        filtered, asserted = set(), set()
        for node in ast.walk(function):
            if (isinstance(node, ast.Assign)
                    and isinstance(node.value, ast.ListComp | ast.SetComp | ast.GeneratorExp | ast.DictComp)
                    and any(generator.ifs for generator in node.value.generators)):
                filtered |= {target.id for target in node.targets if isinstance(target, ast.Name)}
            if isinstance(node, ast.Assert):
                asserted |= {name.id for name in ast.walk(node.test) if isinstance(name, ast.Name)}
        found += [(function.name, node.lineno, node.iter.id) for node in ast.walk(function)
                  if isinstance(node, ast.For) and isinstance(node.iter, ast.Name)
                  and node.iter.id in filtered - asserted]
    return found


def test_no_test_loops_over_a_filtered_list_it_never_checks_is_non_empty() -> None:
    offenders = [f"{path.relative_to(ROOT)}:{line} {test} loops over {name}"
                 for path in sorted((ROOT / "tests").rglob("test_*.py"))
                 for test, line, name in unguarded_loops(ast.parse(path.read_text(encoding="utf-8")))]
    assert offenders == [], offenders


def test_the_guard_finds_the_pattern_and_accepts_it_once_asserted() -> None:
    loop = ("def test_x(cases):\n    created = [c for c in cases if c.ok]\n    for name in created:\n"
            "        check(name)\n")
    assert unguarded_loops(ast.parse(loop)) == [("test_x", 3, "created")]
    guarded = loop.replace("    for name", "    assert created\n    for name")
    assert unguarded_loops(ast.parse(guarded)) == []
    assert unguarded_loops(ast.parse(loop.replace(" if c.ok", ""))) == []


def test_an_empty_parametrization_fails_at_collection() -> None:
    settings = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert settings["tool"]["pytest"]["ini_options"]["empty_parameter_set_mark"] == "fail_at_collect"
