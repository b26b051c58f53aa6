"""The error tree and the exit codes: one table, shown by `drctl --help` and the README, and a
module docstring in errors.py that lists every DrctlError subclass with its exit code."""

from __future__ import annotations

import importlib
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import drctl
from drctl import errors
from drctl.errors import EXIT_CODES, DrctlError, exit_code_table

ROOT = Path(__file__).resolve().parents[1]
TREE_LINE = re.compile(r"^(?P<indent> *)(?P<name>[A-Z]\w*) \((?P<code>\d+)\) (?P<module>[\w.]+): \S")


def _all_error_classes() -> dict[str, type[DrctlError]]:
    """Every DrctlError subclass defined anywhere in drctl (every module imported first)."""
    for module in pkgutil.walk_packages(drctl.__path__, "drctl."):
        if not module.name.endswith("__main__"):  # those run a CLI when imported
            importlib.import_module(module.name)
    found: dict[str, type[DrctlError]] = {}
    todo: list[type[DrctlError]] = [DrctlError]
    while todo:
        cls = todo.pop()
        todo += cls.__subclasses__()
        if not cls.__module__.startswith("drctl."):  # a test's own subclass (e.g. an injected error)
            continue
        assert cls.__name__ not in found, f"two error classes named {cls.__name__}"
        found[cls.__name__] = cls
    return found


def _docstring_tree() -> dict[str, tuple[int, str, str | None]]:
    """name -> (exit code, module, parent name) from errors.py's docstring tree."""
    tree: dict[str, tuple[int, str, str | None]] = {}
    stack: list[tuple[int, str]] = []  # (indent, name) of the open ancestors
    for line in (errors.__doc__ or "").splitlines():
        m = TREE_LINE.match(line)
        if not m:
            continue
        indent = len(m["indent"])
        while stack and stack[-1][0] >= indent:
            stack.pop()
        assert m["name"] not in tree, f"{m['name']} listed twice in errors.py's docstring"
        tree[m["name"]] = (int(m["code"]), m["module"], stack[-1][1] if stack else None)
        stack.append((indent, m["name"]))
    return tree


def test_docstring_lists_every_error_class_with_its_exit_code_and_place_in_the_tree():
    classes = _all_error_classes()
    tree = _docstring_tree()
    assert set(classes) - set(tree) == set(), "error classes missing from errors.py's docstring tree"
    assert set(tree) - set(classes) == set(), "errors.py's docstring lists classes that do not exist"
    for name, cls in classes.items():
        code, module, parent = tree[name]
        assert code == cls.exit_code, f"{name}: docstring says exit {code}, the class exits {cls.exit_code}"
        assert code in EXIT_CODES, f"{name}: exit code {code} is not in the exit-code table"
        assert f"drctl.{module}" == cls.__module__, f"{name} lives in {cls.__module__}, not drctl.{module}"
        expected_parent = None if cls is DrctlError else cls.__bases__[0].__name__
        assert parent == expected_parent, f"{name} is listed under {parent}, its base is {expected_parent}"


def test_every_exit_constant_is_in_the_table():
    constants = {v for k, v in vars(errors).items() if k.startswith("EXIT_") and isinstance(v, int)}
    assert constants == set(EXIT_CODES)


def test_help_ends_with_the_exit_code_table():
    drctl_bin = Path(sys.executable).parent / "drctl"
    out = subprocess.run([str(drctl_bin), "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.rstrip().endswith(exit_code_table())
    assert "  20   an activation, drill or test ran and a server (or step) failed" in out.stdout


def test_readme_shows_the_same_table():
    assert exit_code_table() in (ROOT / "README.md").read_text()
