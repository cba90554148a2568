"""Every `cc100` subcommand keeps its flags and what it records, now that both derive from its config.

tests/golden/cli_flags.json is the table recorded from the hand-written argparse parsers
(tests/cli_flags_table.py): each flag's option strings, dest, default, choices, nargs, type,
required, metavar and visibility must stay; --help may be worded better but must show every flag.
tests/golden/recorded_configs.json is what the stages recorded of their config for a few command
lines before (tests/recorded_configs.py): a stage compares it to decide "up to date", so it stays.
"""

from __future__ import annotations

import json

import pytest

from cc100 import cli
from tests import recorded_configs
from tests.cli_flags_table import GOLDEN, parser_table, subcommand_parser

GOLDEN_TABLE = json.loads(GOLDEN.read_text())
GOLDEN_RECORDED = json.loads(recorded_configs.GOLDEN.read_text())
LOOSE = ("group",)  # how a row may differ: the --help group a flag is listed under


def _rows(table: dict) -> dict:
    rows = {}
    for row in table["actions"]:
        row = {k: v for k, v in row.items() if k not in LOOSE}
        rows[tuple(row["option_strings"]) or row["dest"]] = row
    return rows


def _visible_flags(table: dict) -> list[str]:
    return [flag for row in table["actions"] if not row["hidden"] for flag in row["option_strings"]]


def _words(help_text: str) -> set[str]:
    return set(help_text.replace("[", " ").replace("]", " ").replace(",", " ").split())


def test_the_golden_tables_cover_every_command():
    assert sorted(GOLDEN_TABLE) == sorted(cli.COMMANDS)
    assert set(GOLDEN_RECORDED) == set(recorded_configs.CASES)


@pytest.mark.parametrize("name", sorted(cli.COMMANDS))
def test_flags_are_unchanged(name):
    now, before = parser_table(subcommand_parser(name)), GOLDEN_TABLE[name]
    assert now["prog"] == before["prog"]
    assert _rows(now) == _rows(before)
    for sub, table in before.get("subcommands", {}).items():
        assert _rows(now["subcommands"][sub]) == _rows(table)
        assert set(_visible_flags(table)) <= _words(now["subcommands"][sub]["help"])


@pytest.mark.parametrize("name", sorted(cli.COMMANDS))
def test_help_still_shows_every_flag(name):
    words = _words(parser_table(subcommand_parser(name))["help"])
    for flag in _visible_flags(GOLDEN_TABLE[name]):
        assert flag in words, f"cc100 {name} --help lost {flag}"


@pytest.mark.parametrize("name", sorted(recorded_configs.CASES))
def test_recorded_configs_are_unchanged(name):
    assert recorded_configs.recorded_table([name])[name] == GOLDEN_RECORDED[name]
