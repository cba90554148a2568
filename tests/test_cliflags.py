"""pipeline.utils.cliflags: flags derived from a nested config dataclass, and the config built back."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from pipeline.utils.cliflags import (
    add_config_flags,
    config_from_args,
    flag_names,
    flag_values,
    option,
    sub_config,
)


@dataclass(frozen=True)
class Retry:
    attempts: int = option("--max-attempts", default=8, metavar="N", help="tries (default %(default)s)")
    backoff: float = option("--download-backoff", default=1.0, hidden=True)
    timeout: float = option("--timeout", default=60.0)
    cap: float = 120.0  # no flag

    def __post_init__(self):
        if self.attempts < 1:
            raise ValueError(f"attempts: must be >= 1, got {self.attempts}")


@dataclass
class Stage:
    output: Path = option("--output", required=True, metavar="DIR")
    langs: tuple[str, ...] | None = option("--langs", default=None, comma_list=True, metavar="L,L",
                                           aliases=("--languages",))
    bands: int | None = option("--bands", default=14, convert=lambda v: v or None)
    mode: str = option("--mode", default="doc", choices=("doc", "line"), group="modes")
    fast: bool = option("--fast", default=False)
    retry: Retry = sub_config(Retry, group="downloads")
    note: str = "set by the stage"
    seen: list[str] = field(default_factory=list)


def parse(argv, omit=frozenset()):
    parser = argparse.ArgumentParser(prog="cc100 test")
    add_config_flags(parser, Stage, omit=omit)
    return parser, parser.parse_args(argv)


def test_defaults_come_from_the_dataclass_and_sub_configs_add_flat_flags():
    parser, args = parse(["--output", "o"])
    config = config_from_args(Stage, args, note="given")
    assert config == Stage(output=Path("o"), note="given")
    assert config.retry == Retry() and config.bands == 14
    options = {s for a in parser._actions for s in a.option_strings}
    assert {"--max-attempts", "--download-backoff", "--timeout", "--langs", "--languages"} <= options
    assert "--cap" not in options and "--note" not in options
    help_text = parser.format_help()
    assert "tries (default 8)" in help_text and "--download-backoff" not in help_text
    assert "downloads:" in help_text and "modes:" in help_text


def test_flags_reach_nested_fields_converted_and_typed():
    _, args = parse(["--output", "o", "--langs", "en,fr", "--bands", "0", "--mode", "line",
                     "--fast", "--max-attempts", "3", "--download-backoff", "0.5"])
    config = config_from_args(Stage, args)
    assert (config.langs, config.bands, config.mode, config.fast) == (("en", "fr"), None, "line", True)
    assert config.retry == Retry(attempts=3, backoff=0.5)
    assert flag_values(config) == {"output": Path("o"), "langs": ("en", "fr"), "bands": None, "mode": "line",
                                   "fast": True, "max_attempts": 3, "download_backoff": 0.5, "timeout": 60.0}


def test_a_deprecated_alias_still_works(capsys):
    _, args = parse(["--output", "o", "--languages", "de"])
    assert config_from_args(Stage, args).langs == ("de",)
    assert "--languages is renamed --langs" in capsys.readouterr().err


def test_omitted_flags_keep_the_default():
    parser, args = parse(["--output", "o"], omit=frozenset({"--timeout"}))
    assert "--timeout" not in parser.format_help()
    assert config_from_args(Stage, args).retry.timeout == 60.0
    with pytest.raises(SystemExit):
        parser.parse_args(["--output", "o", "--timeout", "1"])


def test_a_sub_config_error_names_the_flag_key():
    _, args = parse(["--output", "o", "--max-attempts", "0"])
    with pytest.raises(ValueError, match=r"^max_attempts: must be >= 1, got 0$"):
        config_from_args(Stage, args)


def test_flag_names():
    assert flag_names(Retry) == {"attempts": "--max-attempts", "backoff": "--download-backoff",
                                 "timeout": "--timeout"}
