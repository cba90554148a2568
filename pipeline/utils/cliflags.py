"""One spelling per concept for every `cc100` command's flags (standard library only).

Every stage builds its own argparse parser, but the concepts they share are spelled here once:

- lists are comma-separated (`--langs en,fr`, `--buckets head,middle`), as `--segments 0-9,12`
  already was; the space-separated form (`--langs en fr`) still parses, with a deprecation line;
- the languages flag is `--langs`, the output flag `--output`, the download concurrency
  `--max-downloads`, the download cache `--download-cache`.

A spelling a command used before keeps working through `add_deprecated_alias`: hidden from
`--help`, it prints one line on stderr and sets the new flag. `tests/test_cli.py` walks every
subcommand's parser and enforces this vocabulary.

Each command's flags are derived from its config dataclass (`option`, `add_config_flags`,
`config_from_args` below), so a default, a help text and a flag's spelling exist once.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import typing
from dataclasses import MISSING, dataclass, field
from pathlib import Path
from typing import Any, Callable

from pipeline.contracts import FORCE_FLAG
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


# -- flags derived from a stage's config --------------------------------------------------------
#
# A stage declares its config once, as a (nested) dataclass whose fields carry their flag in
# `option(...)` metadata; `add_config_flags` derives the argparse flags from it and
# `config_from_args` builds the config back from the parsed namespace. Defaults live only in
# the dataclass. Sub-configs (a dataclass-typed field) add their flags flat, without a prefix,
# so every flag keeps its spelling; a field without `option` metadata gets no flag.

FLAG = "cc100.flag"  # the metadata key of a field's Flag
GROUP = "cc100.group"  # the metadata key of a sub-config's --help group


@dataclass(frozen=True)
class Flag:
    names: tuple[str, ...]  # option strings ("--min-len"), or one positional name ("logs")
    help: str | None = None
    metavar: str | None = None
    choices: tuple | None = None
    type: Callable[[str], Any] | None = None  # default: int/float/Path from the annotation
    action: str | None = None  # e.g. "append"; a bool field is "store_true"
    nargs: str | None = None
    comma_list: bool = False  # a CommaList (`--langs en,fr`)
    aliases: tuple[str, ...] = ()  # deprecated spellings: hidden, one line on stderr
    required: bool = False
    hidden: bool = False
    group: str | None = None  # title of the argument group in --help
    exclusive: str | None = None  # flags sharing this key exclude each other; one is required
    dest: str | None = None  # default: argparse's, from the first long option string
    unset: bool = False  # the flag's default is None ("not given"): the stage resolves it
    convert: Callable[[Any], Any] | None = None  # parsed value -> field value (inside the config's checks)

    @property
    def key(self) -> str:
        """The argparse dest, which is also the field's key in a recorded (flat) config."""
        if self.dest:
            return self.dest
        long = next((n for n in self.names if n.startswith("--")), self.names[0])
        return long.lstrip("-").replace("-", "_")


def option(*names: str, default=MISSING, default_factory=MISSING, **spec):
    """A config field with its flag: `workers: int = option("--workers", default=1, help=...)`."""
    return field(default=default, default_factory=default_factory,
                 metadata={FLAG: Flag(names, **{k: tuple(v) if k in ("choices", "aliases") else v
                                                for k, v in spec.items()})})


def sub_config(kind, *, group: str | None = None):
    """A nested sub-config field: its flags are added flat, under `group` in --help."""
    return field(default_factory=kind, metadata={GROUP: group} if group else {})


_TYPES = {"int": int, "float": float, "Path": Path}


def _field_type(f) -> str:
    """The name of the field's annotation without `| None`: 'int', 'Path', 'list[str]' ..."""
    kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    return kind.replace(" | None", "").replace("None | ", "").strip()


def _nested_class(cls, f) -> type | None:
    """The dataclass of a nested sub-config field, else None."""
    kind = typing.get_type_hints(cls).get(f.name)
    return kind if dataclasses.is_dataclass(kind) else None


def _flag_default(f, spec: Flag):
    if spec.unset or spec.required or spec.action == "append":
        return None
    if f.default_factory is not MISSING:
        return f.default_factory()
    return None if f.default is MISSING else f.default


def _add_flag(target, f, spec: Flag) -> None:
    kwargs = dict(help=argparse.SUPPRESS if spec.hidden else spec.help, default=_flag_default(f, spec))
    kind = _field_type(f)
    if spec.names[0].startswith("-"):
        kwargs.update(required=spec.required, dest=spec.key)
    if spec.metavar:
        kwargs["metavar"] = spec.metavar
    if spec.comma_list:
        add_list(target, *spec.names, **kwargs)
        return
    if kind == "bool":
        kwargs["action"] = "store_true"
    else:
        kwargs.update(type=spec.type or _TYPES.get(kind), action=spec.action, nargs=spec.nargs,
                      choices=spec.choices)
        kwargs = {k: v for k, v in kwargs.items() if v is not None or k in ("default", "type")}
    target.add_argument(*spec.names, **kwargs)


def add_config_flags(parser: argparse.ArgumentParser, cls, omit: frozenset = frozenset()) -> None:
    """Add the flags of `cls` and its sub-configs to `parser` (groups by title, in field order);
    flags named in `omit` are left out (their fields keep the dataclass default)."""
    groups: dict[str, Any] = {}

    def target_of(spec: Flag, inherited: str | None):
        if spec.exclusive:
            key = ("exclusive", spec.exclusive)
            if key not in groups:
                groups[key] = parser.add_mutually_exclusive_group(required=True)
            return groups[key]
        title = spec.group or inherited
        if title and title not in groups:
            groups[title] = parser.add_argument_group(title)
        return groups[title] if title else parser

    def walk(kind, group: str | None) -> None:
        for f in dataclasses.fields(kind):
            sub = _nested_class(kind, f)
            spec = f.metadata.get(FLAG)
            if sub is not None:
                walk(sub, f.metadata.get(GROUP, group))
            elif spec is not None and spec.names[0] not in omit:
                target = target_of(spec, group)
                _add_flag(target, f, spec)
                for alias in spec.aliases:
                    add_deprecated_alias(target, alias, spec.names[0])

    walk(cls, None)


def config_from_args(cls, args: argparse.Namespace, **values):
    """Build `cls` (and its sub-configs) from the namespace of `add_config_flags`; `values` set
    top-level fields that have no flag. A flag left at None keeps the field's default."""
    kwargs = {}
    for f in dataclasses.fields(cls):
        sub = _nested_class(cls, f)
        spec = f.metadata.get(FLAG)
        if sub is not None:
            try:
                kwargs[f.name] = config_from_args(sub, args)
            except ValueError as e:
                raise ValueError(_named_by_flag(sub, str(e))) from None
        elif spec is not None and hasattr(args, spec.key):
            value = getattr(args, spec.key)
            has_default = f.default is not MISSING or f.default_factory is not MISSING
            if value is None and has_default:
                continue
            kwargs[f.name] = spec.convert(value) if spec.convert and value is not None else value
    return cls(**{**kwargs, **values})


def _named_by_flag(kind, message: str) -> str:
    """A sub-config's 'threshold: must be ...' -> 'near_dedup_threshold: must be ...': a bad value
    is named as the command line knows it (unless the message names the flag already)."""
    name, sep, rest = message.partition(":")
    for f in dataclasses.fields(kind):
        spec = f.metadata.get(FLAG)
        if sep and f.name == name and spec is not None and spec.names[0] not in rest:
            return f"{spec.key}:{rest}"
    return message


def flag_values(config) -> dict:
    """{flag key: value} of every flagged field of `config` and its sub-configs, depth first:
    the flat form a stage records (the keys are the flags' argparse dests)."""
    out = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        spec = f.metadata.get(FLAG)
        if dataclasses.is_dataclass(value):
            out.update(flag_values(value))
        elif spec is not None:
            out[spec.key] = value
    return out


def flag_names(cls) -> dict[str, str]:
    """{field name: its flag} of the flagged fields of `cls` (not its sub-configs)."""
    return {f.name: f.metadata[FLAG].names[0] for f in dataclasses.fields(cls) if FLAG in f.metadata}


def cores() -> int:
    """The default of a --workers or --threads flag that follows the machine: its CPU cores."""
    return os.cpu_count() or 1


def add_force_flag(parser: argparse.ArgumentParser) -> None:
    """`--force`, which every stage takes (pipeline/contracts.py FORCE_FLAG): listed in --help
    here; each stage's main takes it out of argv before parsing (`contracts.pop_force`)."""
    parser.add_argument(FORCE_FLAG, action="store_true",
                        help="run even when OUTPUT is up to date (same config and inputs)")
