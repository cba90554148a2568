"""The flag table of every `cc100` subcommand, as tests/golden/cli_flags.json records it.

Each subcommand's real argparse parser is caught at its first parse (nothing runs) and written
down action by action: option strings, dest, default, choices, nargs, type, required, metavar,
whether --help shows it, and the --help text. `tests/test_cli_golden.py` checks that the parsers
derived from the stage configs reproduce the recorded table; regenerate the fixture only for a
deliberate flag change:

    PYTHONPATH=$PWD .venv/bin/python -m tests.cli_flags_table --write
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import sys
from pathlib import Path
from unittest import mock

from cc100 import cli

GOLDEN = Path(__file__).parent / "golden" / "cli_flags.json"
CPU_COUNT = 2  # defaults that follow the machine (--workers) are recorded for this many cores
HELP_WIDTH = "100"  # argparse wraps --help at $COLUMNS


class _Caught(BaseException):  # not an Exception: a main's `except Exception` must not swallow it
    def __init__(self, parser):
        self.parser = parser


def subcommand_parser(name: str) -> argparse.ArgumentParser:
    """The parser `cc100 NAME` builds, caught at its first parse."""
    real = argparse.ArgumentParser.parse_known_args

    def catch(self, args=None, namespace=None):
        if self.prog.startswith("cc100"):
            raise _Caught(self)
        return real(self, args, namespace)

    module = importlib.import_module(cli.COMMANDS[name][0])
    with mock.patch.object(argparse.ArgumentParser, "parse_known_args", catch), \
            mock.patch.object(os, "cpu_count", lambda: CPU_COUNT):
        try:
            module.main(["--help"])
        except _Caught as caught:
            return caught.parser
    raise AssertionError(f"cc100 {name}: main returned without parsing its flags")


def _type_name(action: argparse.Action) -> str | None:
    kind = action.type
    return None if kind is None else getattr(kind, "__name__", type(kind).__name__)


def _action_row(action: argparse.Action, parser: argparse.ArgumentParser) -> dict:
    group = next((g.title for g in parser._action_groups if action in g._group_actions), None)
    return {
        "option_strings": list(action.option_strings),
        "dest": action.dest,
        "default": repr(action.default),
        "choices": None if action.choices is None else [repr(c) for c in action.choices],
        "nargs": action.nargs,
        "const": repr(action.const),
        "type": _type_name(action),
        "required": action.required,
        "metavar": action.metavar,
        "hidden": action.help == argparse.SUPPRESS,
        "group": group,
        "exclusive": any(action in g._group_actions for g in parser._mutually_exclusive_groups),
    }


def parser_table(parser: argparse.ArgumentParser) -> dict:
    """One parser's rows and --help; a subcommand's parser (`finetune xnli`) nested under its name."""
    with mock.patch.dict(os.environ, {"COLUMNS": HELP_WIDTH}):
        help_text = parser.format_help()
    table = {"prog": parser.prog, "help": help_text, "actions": []}
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        table["actions"].append(_action_row(action, parser))
        if isinstance(action, argparse._SubParsersAction):
            table["subcommands"] = {sub: parser_table(p) for sub, p in action.choices.items()}
    return table


def flag_table() -> dict:
    return {name: parser_table(subcommand_parser(name)) for name in cli.COMMANDS}


def main(argv: list[str]) -> int:
    table = flag_table()
    text = json.dumps(table, indent=1, sort_keys=True) + "\n"
    if "--write" in argv:
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(text)
        print(f"wrote {GOLDEN}")
    else:
        with contextlib.suppress(BrokenPipeError):
            sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
