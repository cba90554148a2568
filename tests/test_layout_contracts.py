"""Each stage's file names are spelled once, in pipeline/contracts.py (issue #17).

Every other module takes them from there: a string literal that spells a name of
contracts.STAGE_FILES as a name, path or pattern (a literal without white space: "stats.json",
f"{lang}.sp.model", "*/*/part-*.parquet") anywhere under SCANNED fails this test, with the file,
line and name. Prose may mention a name -- docstrings, comments, help texts and messages (any
literal with white space) -- as documentation does. To cover another directory, add it to SCANNED.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from pipeline import contracts

ROOT = Path(__file__).resolve().parents[1]
SCANNED = ("pipeline", "train", "model", "bench", "cc100")  # dags/ joins once it is thin
OWNER = ROOT / "pipeline" / "contracts.py"
# Modules that may not import pipeline.contracts, with the reason.
EXEMPT = {
    "bench/ccnet_run.py": "runs in cc_net's own virtualenv and imports nothing from this repository",
}


def _pattern(name: str) -> re.Pattern:
    """`name` as a whole file name: not part of a longer one (vocab_config.json is not config.json)."""
    before = "" if name.startswith(".") else r"(?<![\w.-])"
    return re.compile(before + re.escape(name) + r"(?![\w-])")


PROSE = re.compile(r"\s")  # help texts and messages may name a file, as docstrings do
NAMES = {name: _pattern(name) for names in contracts.STAGE_FILES.values() for name in names}


def _docstrings(tree: ast.AST) -> set[int]:
    """ids of the docstring nodes (module, class, function)."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):
                out.add(id(body[0].value))
    return out


def spelled_names(path: Path) -> list[tuple[int, str]]:
    """(line, name) of every stage file name in the string literals of one module."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    skip = _docstrings(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip \
                and not PROSE.search(node.value):
            found += [(node.lineno, name) for name, pattern in NAMES.items() if pattern.search(node.value)]
    return found


def modules() -> list[Path]:
    return sorted(p for d in SCANNED for p in (ROOT / d).rglob("*.py")
                  if p != OWNER and p.relative_to(ROOT).as_posix() not in EXEMPT)


def test_the_registry_names_every_stage_and_no_name_twice():
    names = [name for names in contracts.STAGE_FILES.values() for name in names]
    assert len(names) == len(set(names))
    assert set(contracts.STAGE_FILES) <= set(contracts.STAGE_FORMATS)


def test_the_scan_finds_a_spelled_name(tmp_path):
    module = tmp_path / "m.py"
    module.write_text('"""Reads sentencepiece.bpe.model (a docstring may say so)."""\n'
                      'NAME = "sentencepiece.bpe.model"\nOTHER = "vocab_config.json"\n'
                      'PATH = f"{DIR}/stats.json"\nHELP = "reads DIR/stats.json"\n', encoding="utf-8")
    assert spelled_names(module) == [(2, contracts.VOCAB_MODEL), (3, contracts.VOCAB_CONFIG),
                                     (4, contracts.STATS_FILE)]


@pytest.mark.parametrize("directory", SCANNED)
def test_no_module_spells_a_stage_file_name(directory):
    spelled = [f"{p.relative_to(ROOT)}:{line}: {name!r} (use pipeline.contracts)"
               for p in modules() if p.relative_to(ROOT).parts[0] == directory
               for line, name in spelled_names(p)]
    assert not spelled, "\n".join(spelled)
