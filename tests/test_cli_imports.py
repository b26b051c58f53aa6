"""What a drctl process pays to start: only the module of its command is imported (the table of
commands stays exact), and the cyclic GC does not walk botocore's objects over and over."""

from __future__ import annotations

import argparse
import gc
import importlib
import subprocess
import sys

import pytest

from drctl.cli import COMMAND_MODULES, build_parser, main, modules_for


@pytest.mark.parametrize("module", list(COMMAND_MODULES))
def test_table_names_exactly_the_commands_each_module_registers(module):
    sub = argparse.ArgumentParser().add_subparsers()
    importlib.import_module(module).register(sub)
    assert tuple(sub.choices) == COMMAND_MODULES[module]


def test_every_command_is_in_one_module_only():
    names = [c for commands in COMMAND_MODULES.values() for c in commands]
    assert len(names) == len(set(names))


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["restore", "s3://b/p", "--server", "web"], ["drctl.commands.repo_cmds"]),
        (["-vv", "report", "show", "abc"], ["drctl.commands.report_cmds"]),
        (["status", "--json"], ["drctl.commands.status_cmds"]),
        (["--help"], list(COMMAND_MODULES)),
        (["restor"], list(COMMAND_MODULES)),
        ([], list(COMMAND_MODULES)),
    ],
)
def test_modules_for_the_command_word(argv, expected):
    assert modules_for(argv) == expected


def test_a_restore_process_does_not_import_the_other_command_families():
    code = (
        "import sys\n"
        "from drctl import cli\n"
        "cli.build_parser(['restore', 's3://b/p', '--server', 'web', '--out', 'x'])\n"
        "print(' '.join(sorted(m for m in sys.modules if m.startswith(('drctl.commands.', 'jinja2')))))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    # repo_cmds registers `repo copy` from copy_cmds, whose own imports wait for the command to run
    assert out.split() == ["drctl.commands.arg_types", "drctl.commands.copy_cmds", "drctl.commands.repo_cmds"]


def test_unknown_command_lists_every_command(capsys):
    with pytest.raises(SystemExit) as e:
        main(["restor"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'restor'" in err and "'restore'" in err and "'console'" in err


def test_full_parser_still_has_every_command():
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert set(sub.choices) == {c for commands in COMMAND_MODULES.values() for c in commands}


def test_a_command_runs_with_a_larger_young_generation(capsys):
    saved = gc.get_threshold()
    try:
        gc.set_threshold(700, 10, 10)
        with pytest.raises(SystemExit):
            main(["restore", "--help"])
        assert gc.get_threshold() == (50_000, 10, 10)
    finally:
        gc.set_threshold(*saved)
