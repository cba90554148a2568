"""One spelling per concept for every `cc100` command's flags (standard library only).

Every stage builds its own argparse parser, but the concepts they share are spelled here once:

- lists are comma-separated (`--langs en,fr`, `--buckets head,middle`), as `--segments 0-9,12`
  already was; the space-separated form (`--langs en fr`) still parses, with a deprecation line;
- the languages flag is `--langs`, the output flag `--output`, the download concurrency
  `--max-downloads`, the download cache `--download-cache`.

A spelling a command used before keeps working through `add_deprecated_alias`: hidden from
`--help`, it prints one line on stderr and sets the new flag. `tests/test_cli.py` walks every
subcommand's parser and enforces this vocabulary.
"""

from __future__ import annotations

import argparse
import sys

from pipeline.contracts import parse_comma_list as comma_list

# concept -> its one flag; OLD_SPELLINGS are refused in a parser unless registered as aliases
LANGS = "--langs"
OUTPUT = "--output"
MAX_DOWNLOADS = "--max-downloads"
DOWNLOAD_CACHE = "--download-cache"
OLD_SPELLINGS = {
    "--languages": LANGS, "--lang-list": LANGS,
    "--out": OUTPUT, "--output-dir": OUTPUT, "--out-dir": OUTPUT, "--outdir": OUTPUT,
    "--max-concurrent": MAX_DOWNLOADS, "--concurrency": MAX_DOWNLOADS,
    "--cache-dir": DOWNLOAD_CACHE,
}


def deprecation(parser: argparse.ArgumentParser, message: str) -> None:
    """One line on stderr, prefixed by the command, e.g. `cc100 tokenize: --languages is ...`."""
    print(f"{parser.prog}: deprecated: {message}", file=sys.stderr)


class CommaList(argparse.Action):
    """`--flag a,b,c` -> ('a', 'b', 'c'). The old space-separated form `--flag a b` is still
    accepted (nargs='+') and says once that it is deprecated."""

    def __init__(self, option_strings, dest, nargs=None, **kwargs):
        super().__init__(option_strings, dest, nargs="+", **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        if len(values) > 1:
            deprecation(parser, f"space-separated lists: write {option_string} {','.join(values)}")
        setattr(namespace, self.dest, comma_list(",".join(values)))


def add_list(parser, flag: str, *, metavar: str, help: str, default=None, **kwargs):
    """A comma-separated list flag; `default` may be given as 'a,b' and is parsed the same way."""
    if isinstance(default, str):
        default = comma_list(default)
    return parser.add_argument(flag, action=CommaList, metavar=metavar, default=default,
                               help=help, **kwargs)


def add_deprecated_alias(parser, old: str, new: str) -> None:
    """`old` keeps working as `new` (same dest, same parsing), hidden from --help, with one
    deprecation line when used. `new` must already be defined on `parser` (or its group)."""
    target = _find_action(parser, new)
    kind = type(target) if isinstance(target, CommaList) else None

    class Alias(argparse.Action):
        def __call__(self, p, namespace, values, option_string=None):
            deprecation(p, f"{old} is renamed {new}")
            if kind is not None:
                kind(target.option_strings, target.dest)(p, namespace, values, new)
            else:
                setattr(namespace, target.dest, values)

    nargs = "+" if kind is not None else target.nargs
    parser.add_argument(old, dest=target.dest, action=Alias, nargs=nargs, type=target.type,
                        default=argparse.SUPPRESS, help=argparse.SUPPRESS)


def _find_action(parser, flag: str) -> argparse.Action:
    for action in parser._actions:
        if flag in action.option_strings:
            return action
    raise ValueError(f"{flag} is not defined on this parser")
