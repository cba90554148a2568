"""Read the corpus stage's output: OUTPUT/{lang}/{bucket}/*.parquet (pipeline/schema.py).

Two cheap passes make streaming possible without loading the corpus: `measure_file` reads
only the small integer columns (`nlines`, `length`) per row group, so sizes are known before
any text is read; `iter_paragraphs` then reads `raw_content` one row group at a time and can
skip row groups a caller does not need. The unit of sampling is a paragraph line
(raw_content is the document's paragraphs joined by "\\n", and nlines counts them).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq

from pipeline.contracts import part_files

BUCKETS = ("head", "middle", "tail", "all")


class CorpusError(ValueError):
    """Bad corpus input; the message names the path and says what is wrong."""


@dataclass(frozen=True)
class FileInfo:
    path: Path
    row_group_lines: tuple[int, ...]  # paragraph lines per row group (sum of nlines)
    docs: int
    chars: int  # sum of `length`

    @property
    def lines(self) -> int:
        return sum(self.row_group_lines)


@dataclass(frozen=True)
class LanguageData:
    lang: str
    files: tuple[FileInfo, ...]

    @property
    def docs(self) -> int:
        return sum(f.docs for f in self.files)

    @property
    def lines(self) -> int:
        return sum(f.lines for f in self.files)

    @property
    def chars(self) -> int:
        return sum(f.chars for f in self.files)


def list_languages(corpus: Path) -> dict[str, dict[str, list[Path]]]:
    """{lang: {bucket: [parquet files, sorted]}} for every language directory with data."""
    corpus = Path(corpus)
    if not corpus.is_dir():
        raise CorpusError(f"{corpus}: no such corpus directory")
    found: dict[str, dict[str, list[Path]]] = {}
    for path in part_files(corpus):  # sorted; metadata (.cc100/) and hidden names skipped
        found.setdefault(path.parent.parent.name, {}).setdefault(path.parent.name, []).append(path)
    return found


def _open(path: Path) -> pq.ParquetFile:
    try:
        return pq.ParquetFile(path)
    except Exception as e:  # pyarrow raises several types for a damaged file
        raise CorpusError(f"{path}: not a readable Parquet file ({e})") from None


def _require(pf: pq.ParquetFile, path: Path, columns: Sequence[str]) -> None:
    missing = [c for c in columns if c not in pf.schema_arrow.names]
    if missing:
        raise CorpusError(
            f"{path}: missing column(s) {', '.join(missing)} (see pipeline/schema.py)"
        )


def measure_file(path: Path) -> FileInfo:
    """Lines per row group, documents and characters, from the integer columns only."""
    path = Path(path)
    pf = _open(path)
    _require(pf, path, ("nlines", "length", "raw_content"))
    rg_lines, chars = [], 0
    for i in range(pf.num_row_groups):
        try:
            t = pf.read_row_group(i, columns=["nlines", "length"])
        except Exception as e:
            raise CorpusError(f"{path}: cannot read row group {i} ({e})") from None
        rg_lines.append(int(t.column("nlines").fill_null(0).to_numpy().sum()))
        chars += int(t.column("length").fill_null(0).to_numpy().sum())
    return FileInfo(path, tuple(rg_lines), pf.metadata.num_rows, chars)


def measure_language(lang: str, files: Iterable[Path]) -> LanguageData:
    return LanguageData(lang, tuple(measure_file(p) for p in files))


def iter_paragraphs(
    info: FileInfo, row_groups: Iterable[int] | None = None
) -> Iterator[tuple[int, str]]:
    """(row group, paragraph line) for the chosen row groups, streaming `raw_content`.

    Documents with a null raw_content yield nothing; an empty raw_content yields one "" line,
    as nlines counts it.
    """
    pf = _open(info.path)
    groups = range(pf.num_row_groups) if row_groups is None else row_groups
    for i in groups:
        try:
            column = pf.read_row_group(i, columns=["raw_content"]).column("raw_content")
        except Exception as e:
            raise CorpusError(f"{info.path}: cannot read row group {i} ({e})") from None
        for text in column.to_pylist():
            if text is None:
                continue
            for line in text.split("\n"):
                yield i, line
