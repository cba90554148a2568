"""The contracts between cc100's stages, in one place.

Standard library only: the Airflow DAGs and the report import it without Beam or torch.
Every stage's output directory keeps its run metadata in META_DIR (a dot-directory, so the
Parquet readers -- pyarrow, pandas, `datasets`, duckdb globs -- skip it), and MARKER_FILE in it
proves that the directory was written by that stage: a stage replaces or deletes only
directories that carry its own marker.

The corpus stage's OUTPUT is a dataset (README "The corpus as a dataset"):

    OUTPUT/{language}/{bucket}/part-{shard:05d}-of-{n:05d}.parquet   the documents
    OUTPUT/README.md                        DATASET_CARD: Hugging Face dataset card (configs)
    OUTPUT/.cc100/stats.json                STATS_FILE, written last: marks a finished run
    OUTPUT/.cc100/files.jsonl               FILES_REPORT: one line per input file
    OUTPUT/.cc100/cutoffs.csv               CUTOFFS_FILE: the perplexity cutoffs used
    OUTPUT/.cc100/report/                   REPORT_DIR: `cc100 report`'s default output

Outputs of cc100 before the metadata moved kept STATS_FILE, FILES_REPORT and CUTOFFS_FILE at
the root: `find_meta` still finds them there (LEGACY_NOTE says so once per process).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

META_DIR = ".cc100"
MARKER_FILE = "stage.json"  # {"stage": "<name>", "format_version": <int>, ...}

# -- the corpus output (cc100 corpus) ----------------------------------------------------------
STATS_FILE = "stats.json"  # counters, config, inputs; written last (marks a finished run)
FILES_REPORT = "files.jsonl"  # one line per input file (segment): records, documents, problems
CUTOFFS_FILE = "cutoffs.csv"  # the perplexity cutoffs used (cc_net format, reusable with --cutoffs)
REPORT_DIR = "report"  # cc100 report: index.html, report.json, PNGs
DATASET_CARD = "README.md"  # at the root, where the Hugging Face Hub and `datasets` look for it
PART_GLOB = "*/*/*.parquet"  # the documents, relative to OUTPUT: {language}/{bucket}/
HIDDEN_PREFIXES = (".", "_")  # names the readers skip (pyarrow's default ignore_prefixes)
LEGACY_ROOT_FILES = (STATS_FILE, FILES_REPORT, CUTOFFS_FILE)  # at the root before META_DIR
LEGACY_NOTE = ("{root}: metadata at the top level (an output of an older cc100); it is read "
               "there for now, but deprecated: re-run `cc100 corpus` to move it into {meta}/")

_warned: set[str] = set()


def part_files(root: str | os.PathLike) -> list[Path]:
    """Every Parquet file OUTPUT/{language}/{bucket}/*.parquet, sorted, skipping directories and
    files whose names start with HIDDEN_PREFIXES (META_DIR, staging, `_SUCCESS`-like names)."""
    return [path for path in sorted(Path(root).glob(PART_GLOB))
            if not any(part.startswith(HIDDEN_PREFIXES) for part in path.relative_to(root).parts)]


def meta_path(root: str | os.PathLike, name: str) -> str:
    """OUTPUT/.cc100/name, for local paths and URLs (gs://...) alike."""
    return f"{str(root).rstrip('/')}/{META_DIR}/{name}"


def legacy_path(root: str | os.PathLike, name: str) -> str:
    """Where outputs of older versions kept `name` (the top level)."""
    return f"{str(root).rstrip('/')}/{name}"


def find_meta(root: str | os.PathLike, name: str, exists=os.path.exists) -> str | None:
    """The metadata file `name` of the output `root`: in META_DIR, else (older outputs) at the
    top level with a one-time deprecation line on stderr; None when neither exists. `exists`
    tests a path (os.path.exists; pass FileSystems.exists for gs:// roots)."""
    current = meta_path(root, name)
    if exists(current):
        return current
    if name in LEGACY_ROOT_FILES and exists(legacy_path(root, name)):
        key = str(root).rstrip("/")
        if key not in _warned:
            _warned.add(key)
            print("cc100: " + LEGACY_NOTE.format(root=key, meta=META_DIR), file=sys.stderr)
        return legacy_path(root, name)
    return None
