"""The contracts between cc100's stages, in one place.

Standard library only: the Airflow DAGs and the report import it without Beam or torch.
Every stage's output directory keeps its run metadata in META_DIR (a dot-directory, so the
Parquet readers -- pyarrow, pandas, polars, duckdb, Hugging Face `datasets` -- skip it), and
MARKER_FILE in it proves that the directory was written by that stage: a stage replaces or
deletes only directories that carry its own marker.

Ownership, for every stage that writes a directory:

* `check_claimable(dir, stage)` before the long part of a run (reads only): the directory is
  new, empty, or already carries `stage`'s marker; anything else raises OwnershipError, a
  one-line message naming the directory and what is missing or foreign (exit status 2).
* `claim(dir, stage)` when the stage starts writing: the same check, then the directory is
  created and the marker written (first, so a half-written output is still recognisably ours).
* `remove_owned_tree(dir, stage)` is the only way a stage deletes a directory: it checks the
  marker and never follows a symbolic link (a link is refused, one inside is removed as a link).

`python -m pipeline.contracts check|claim|remove|clean|adopt ...` gives the Makefile and shell
scripts the same rules (see `main`).

The corpus stage's OUTPUT is a dataset (README "The corpus as a dataset"):

    OUTPUT/{language}/{bucket}/part-{shard:05d}-of-{n:05d}.parquet   the documents
    OUTPUT/README.md                        DATASET_CARD: Hugging Face dataset card (configs)
    OUTPUT/.cc100/stage.json                MARKER_FILE: {"stage": "corpus", "format_version": 1}
    OUTPUT/.cc100/stats.json                STATS_FILE, written last: marks a finished run
    OUTPUT/.cc100/files.jsonl               FILES_REPORT: one line per input file
    OUTPUT/.cc100/cutoffs.csv               CUTOFFS_FILE: the perplexity cutoffs used
    OUTPUT/.cc100/report/                   REPORT_DIR: `cc100 report`'s default output

Outputs of cc100 before the metadata moved kept STATS_FILE, FILES_REPORT and CUTOFFS_FILE at
the root: `find_meta` still finds them there (LEGACY_NOTE says so once per process).

The other stages' directories (LM_DIR, VOCAB_DIR, SHARDS, RUN_DIR, the Hugging Face export, the
evaluate and finetune outputs, the demo input, the snapshot DAG's merged view) are named in "the
other stages' outputs"; STAGE_FILES lists every file name by the stage that writes it, and no
other module spells one (tests/test_layout_contracts.py). Also here, for every command and the
DAGs alike: the model presets (MODEL_PRESETS), the parsers of what a user types
(`validate_snapshot`, `parse_segments`, `format_segments`, `parse_languages`) and the one way
to write a file atomically (`atomic_path`, `atomic_write_bytes`/`_text`/`_json`).
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import hashlib
import json
import os
import re
import shutil
import sys
from collections.abc import Iterable, Iterator
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


# -- the other stages' outputs: one section per stage; the stage that writes a name and every
# -- module that reads it take it from here ---------------------------------------------------

# cc100 corpus, besides the metadata above: the Parquet parts and the staging side file.
PART_FILE_GLOB = "part-*.parquet"  # in OUTPUT/{language}/{bucket}/
TOP_LINES_FILE = "top_duplicate_lines.json"  # staging META_DIR only: folded into STATS_FILE
# Keys of STATS_FILE that other stages read (cc100 report). Every cc100 that wrote STATS_FILE used
# these names, so there is no fallback to older ones.
STATS_TOP_LINES = "top_duplicate_lines"  # [[line, count], ...], most frequent first
STATS_LANG_THRESHOLD = "lang_threshold"  # in stats["config"]: the language-ID score threshold


def part_name(shard: int, n: int) -> str:
    """The file name of Parquet part `shard` of `n` in a {language}/{bucket}/ directory."""
    return f"part-{shard:05d}-of-{n:05d}.parquet"


def partition_glob(language: str = "*", bucket: str = "*") -> str:
    """The Parquet files of one language (and bucket), relative to OUTPUT (dataset-card configs)."""
    return f"{language}/{bucket}/*.parquet"


# cc100 report: REPORT_DIR/
REPORT_INDEX = "index.html"
REPORT_JSON = "report.json"

# cc100 lm: LM_DIR/{lang}.sp.model and LM_DIR/{lang}.arpa.bin (cc_net's layout)
LM_SP_SUFFIX = ".sp.model"  # SentencePiece model of the language's reference text
LM_KENLM_SUFFIX = ".arpa.bin"  # KenLM 5-gram, binary


def lm_languages(lm_dir: str | os.PathLike) -> list[str]:
    """The languages with a KenLM model in a local LM_DIR, sorted."""
    return sorted(p.name[: -len(LM_KENLM_SUFFIX)] for p in Path(lm_dir).glob(f"*{LM_KENLM_SUFFIX}"))


# cc100 vocab: VOCAB_DIR/
VOCAB_MODEL = "sentencepiece.bpe.model"  # the name XLM-R and transformers' XLMRobertaTokenizer use
VOCAB_SAMPLING = "sampling.json"  # per language: raw_share, sampled_share, sentences, lines
VOCAB_CONFIG = "vocab_config.json"  # flags and run summary


# cc100 tokenize: SHARDS/
SHARDS_MANIFEST = "manifest.json"  # what pretraining reads first (train/shards.py)

# cc100 pretrain: RUN_DIR/
CHECKPOINT = "checkpoint.pt"  # the training state bundle (train/checkpoint.py)
TRAINING_LOG = "log.jsonl"  # one line per logged step (cc100 plot)
RUN_EXPORT_DIR = "hf"  # RUN_DIR/hf: the Hugging Face export written at the end

# cc100 export (and RUN_DIR/hf): Hugging Face XLMRobertaForMaskedLM files; VOCAB_MODEL too
HF_CONFIG = "config.json"
HF_WEIGHTS = "model.safetensors"
HF_TOKENIZER_CONFIG = "tokenizer_config.json"
HF_TOKENIZER = "tokenizer.json"  # the fast (Rust) tokenizer
HF_TRAINING_LANGUAGES = "cc100_training.json"  # the languages the model was trained on

# cc100 evaluate: OUTPUT/
EVAL_JSON = "eval.json"
EVAL_PLOT = "eval.png"
EVAL_MLM_BATCHES = "mlm_heldout.npz"  # the masked held-out sequences (compare models on the same)

# cc100 finetune xnli: OUTPUT/
FINETUNE_RESULT = "xnli.json"

# python -m pipeline.demo: DIR/
DEMO_WET_DIR = "wet"
DEMO_REFERENCE_DIR = "reference"  # {lang}.txt: `cc100 lm --reference`
DEMO_TRUTH = "truth.json"

# the cc100_snapshot DAG's merged view: symlinks to the ranges' Parquet files, and
MERGE_RANGES = "ranges.json"  # the ranges merged

# Every name above, by the stage that writes it (tests/test_layout_contracts.py checks that no
# other module spells one).
STAGE_FILES: dict[str, tuple[str, ...]] = {
    "corpus": (STATS_FILE, FILES_REPORT, CUTOFFS_FILE, PART_FILE_GLOB, TOP_LINES_FILE),
    "report": (REPORT_INDEX, REPORT_JSON),
    "lm": (LM_SP_SUFFIX, LM_KENLM_SUFFIX),
    "vocab": (VOCAB_MODEL, VOCAB_SAMPLING, VOCAB_CONFIG),
    "tokenize": (SHARDS_MANIFEST,),
    "pretrain": (CHECKPOINT, TRAINING_LOG),
    "export": (HF_CONFIG, HF_WEIGHTS, HF_TOKENIZER_CONFIG, HF_TOKENIZER, HF_TRAINING_LANGUAGES),
    "evaluate": (EVAL_JSON, EVAL_PLOT, EVAL_MLM_BATCHES),
    "finetune": (FINETUNE_RESULT,),
    "demo-input": (DEMO_TRUTH,),
    "merge": (MERGE_RANGES,),
}


# -- ownership: the stage markers ---------------------------------------------------------------

# The stages that write directories, with the format version of what they write: a marker with
# a higher version comes from a newer cc100 and is refused (this version may not understand it).
STAGE_FORMATS = {
    "lm": 1,
    "corpus": 1,
    "report": 1,
    "vocab": 1,
    "tokenize": 1,
    "pretrain": 1,
    "export": 1,
    "evaluate": 1,  # `cc100 evaluate --output` (eval.json, eval.png, mlm_heldout.npz)
    "finetune": 1,  # `cc100 finetune xnli --output` (xnli.json, model/)
    "merge": 1,  # the cc100_snapshot DAG's merged view (symlinks + ranges.json)
    "dag": 1,  # a DAG's work_dir (per-stage outputs and stamps)
    "demo-input": 1,  # `python -m pipeline.demo --output DIR`
    "airflow-home": 1,  # `make dag-demo`'s AIRFLOW_HOME
}


class OwnershipError(Exception):
    """A directory a stage may not write or delete; the message is one line naming it."""


def marker_path(directory: str | os.PathLike) -> str:
    return os.path.join(os.fspath(directory), META_DIR, MARKER_FILE)


def _check_stage(stage: str) -> None:
    if stage not in STAGE_FORMATS:
        raise ValueError(f"unknown stage {stage!r} (stages: {', '.join(STAGE_FORMATS)})")


def marker_record(stage: str, **extra) -> dict:
    """The marker's content for `stage` (extra keys, e.g. the cc100 version, are kept as given)."""
    _check_stage(stage)
    return {"stage": stage, "format_version": STAGE_FORMATS[stage], **extra}


def marker_bytes(stage: str, **extra) -> bytes:
    """The marker file's bytes (the same on every filesystem)."""
    return (json.dumps(marker_record(stage, **extra), indent=1, sort_keys=True) + "\n").encode("utf-8")


def parse_marker(data: bytes | str) -> dict | None:
    """A marker's content, or None when it is not a marker (not JSON, no stage)."""
    try:
        record = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(record, dict) or not isinstance(record.get("stage"), str):
        return None
    return record


def ownership_problem(directory: str, stage: str, marker: dict | None, marker_exists: bool,
                      has_entries: bool) -> str | None:
    """Why `stage` may not write into (or replace) `directory`; None when it may.

    The rule in one place, for local directories and object-store prefixes alike: nothing
    there, or `stage`'s own marker with a format this version knows.
    """
    _check_stage(stage)
    where = f"{META_DIR}/{MARKER_FILE}"
    if marker is None:
        if marker_exists:
            return f"{directory}: {where} is unreadable or not a cc100 marker; not touched"
        if not has_entries:
            return None
        return (f"{directory}: not empty and has no {where}, so it was not written by cc100 {stage} "
                f"(or by a cc100 older than these markers): choose a new or empty directory; if it "
                f"is an older cc100 {stage} output, mark it with `python -m pipeline.contracts "
                f"adopt {directory} --stage {stage}` or delete it yourself")
    if marker.get("stage") != stage:
        return (f"{directory}: holds the output of cc100 {marker.get('stage')} ({where}), "
                f"not of cc100 {stage}; not touched")
    version = marker.get("format_version")
    if not isinstance(version, int) or version > STAGE_FORMATS[stage]:
        return (f"{directory}: {where} has format_version {version!r}, this cc100 knows "
                f"{STAGE_FORMATS[stage]} for {stage} (written by a newer cc100?); not touched")
    return None


# -- local directories ------------------------------------------------------------------------


def read_marker(directory: str | os.PathLike) -> dict | None:
    """The marker of a local directory, or None (missing or not a marker)."""
    try:
        with open(marker_path(directory), "rb") as f:
            return parse_marker(f.read())
    except OSError:
        return None


def claim_problem(directory: str, stage: str, replace: bool = False) -> str | None:
    """Why `stage` may not write into a local `directory` (None: it may). `replace`: the stage
    would delete or rename the directory itself, so a symbolic link there is refused too."""
    if replace and os.path.islink(directory):
        return (f"{directory}: is a symbolic link (to {os.readlink(directory)}); cc100 {stage} "
                f"replaces only real directories and never follows a link: give the target's path")
    if not os.path.exists(directory):
        return None if not os.path.lexists(directory) else f"{directory}: is a dangling symbolic link"
    if not os.path.isdir(directory):
        return f"{directory}: exists and is not a directory"
    try:
        has_entries = any(os.scandir(directory))
    except OSError as e:
        return f"{directory}: cannot list it ({e.strerror or e})"
    return ownership_problem(directory, stage, read_marker(directory),
                             os.path.lexists(marker_path(directory)), has_entries)


def check_claimable(directory: str | os.PathLike, stage: str, replace: bool = False) -> None:
    """OwnershipError unless `stage` may write into `directory` (new, empty, or its own)."""
    problem = claim_problem(os.fspath(directory), stage, replace)
    if problem:
        raise OwnershipError(problem)


def check_owned(directory: str | os.PathLike, stage: str) -> None:
    """OwnershipError unless `directory` is a real directory carrying `stage`'s marker."""
    directory = os.fspath(directory)
    problem = claim_problem(directory, stage, replace=True)
    if problem is None and read_marker(directory) is None:
        problem = (f"{directory}: does not exist" if not os.path.lexists(directory)
                   else f"{directory}: has no {META_DIR}/{MARKER_FILE} (not written by cc100 {stage})")
    if problem:
        raise OwnershipError(problem)


def write_marker(directory: str | os.PathLike, stage: str, **extra) -> None:
    """Write `stage`'s marker into `directory` (created), atomically."""
    meta = os.path.join(os.fspath(directory), META_DIR)
    os.makedirs(meta, exist_ok=True)
    atomic_write_bytes(os.path.join(meta, MARKER_FILE), marker_bytes(stage, **extra))


def claim(directory: str | os.PathLike, stage: str, **extra) -> None:
    """Check, then create `directory` and write `stage`'s marker (kept if already there)."""
    check_claimable(directory, stage)
    if read_marker(directory) is None:
        write_marker(directory, stage, **extra)


def remove_owned_tree(directory: str | os.PathLike, stage: str, missing_ok: bool = True) -> bool:
    """Delete `directory` if it carries `stage`'s marker; OwnershipError otherwise.

    Symbolic links are never followed: the directory itself may not be one (refused), and links
    inside it are removed as links (shutil.rmtree's fd-based walk; their targets are kept).
    Returns False when there was nothing to remove.
    """
    directory = os.fspath(directory)
    if missing_ok and not os.path.lexists(directory):
        return False
    check_owned(directory, stage)
    remove_tree_no_follow(directory)
    return True


def remove_tree_no_follow(path: str | os.PathLike) -> None:
    """rmtree that never leaves the tree: a link at `path` is unlinked (its target stays), and
    shutil.rmtree unlinks the links inside (it does not descend into them; on Linux its
    fd-based walk also resists a link swapped in while it runs)."""
    path = os.fspath(path)
    if os.path.islink(path) or not os.path.isdir(path):
        os.unlink(path)
        return
    shutil.rmtree(path)


# -- model presets (cc100 pretrain --config) ----------------------------------------------------

# name -> the encoder's size (model/xlmr.py XLMRConfig fields) and the training defaults of that
# size (train/config.py; any of them can be overridden on the command line). base/large are
# XLM-R's (Conneau et al. 2020) with RoBERTa's learning rates; tiny trains on a CPU in seconds.
MODEL_PRESETS: dict[str, dict[str, dict]] = {
    "tiny": {"model": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128),
             "train": dict(max_len=128, batch_tokens=16 * 128, lr=1e-3, micro_batch=16)},
    "small": {"model": dict(hidden_size=256, num_hidden_layers=4, num_attention_heads=4, intermediate_size=1024),
              "train": dict(max_len=512, batch_tokens=256 * 512, lr=6e-4, micro_batch=32)},
    "base": {"model": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072),
             "train": dict(max_len=512, batch_tokens=8192 * 512, lr=6e-4, micro_batch=32)},
    "large": {"model": dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096),
              "train": dict(max_len=512, batch_tokens=8192 * 512, lr=4e-4, micro_batch=16)},
}


# -- shared parsers: what a user types for snapshots, segments and lists ------------------------

SNAPSHOT_RE = re.compile(r"^CC-MAIN-(\d{4})-(\d{2})$")


def validate_snapshot(name: str) -> str:
    """Return `name` if it looks like CC-MAIN-YYYY-WW (a weekly crawl id), else ValueError."""
    match = SNAPSHOT_RE.match(name.strip()) if isinstance(name, str) else None
    if not match or not 2013 <= int(match[1]) <= 2100 or not 1 <= int(match[2]) <= 53:
        raise ValueError(f"invalid snapshot name {name!r}: expected CC-MAIN-YYYY-WW "
                         "(year 2013 or later, week 01-53), e.g. CC-MAIN-2019-30")
    return name.strip()


def parse_segments(spec: str) -> list[int]:
    """'0-99' or '3,5,10-12' -> sorted unique indices; 'all' -> [] meaning every segment."""
    text = spec.strip()
    if text.lower() in ("all", "*"):
        return []
    indices: set[int] = set()
    for token in text.split(","):
        token = token.strip()
        first, dash, last = token.partition("-")
        if not first.strip().isdigit() or (dash and not last.strip().isdigit()):
            raise ValueError(f"invalid --segments {spec!r}: bad item {token!r} (expected N, "
                             "N-M or a comma-separated list, e.g. '0-99' or '3,5,10-12')")
        lo, hi = int(first), int(last) if dash else int(first)
        if hi < lo:
            raise ValueError(f"invalid --segments {spec!r}: range {token!r} ends before it starts")
        indices.update(range(lo, hi + 1))
    return sorted(indices)


def format_segments(indices: Iterable[int]) -> str:
    """[0, 1, 2, 5, 7, 8] -> '0-2,5,7-8' (the inverse of parse_segments)."""
    runs: list[list[int]] = []
    for i in sorted(set(indices)):
        if runs and i == runs[-1][1] + 1:
            runs[-1][1] = i
        else:
            runs.append([i, i])
    return ",".join(f"{a}" if a == b else f"{a}-{b}" for a, b in runs)


def parse_comma_list(text: str | None) -> tuple[str, ...]:
    """'en,fr, de,,en' -> ('en', 'fr', 'de'): stripped, empty items and repeats dropped; None -> ()."""
    if not text:
        return ()
    return tuple(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))


def parse_languages(text: str | None) -> tuple[str, ...]:
    """`--langs en,fr, de` -> ("en", "fr", "de"); empty or None -> () (every language)."""
    return parse_comma_list(text)


# -- atomic writes: a reader sees the old file or the new one, never half of one ----------------


def temporary_path(path: str | os.PathLike) -> Path:
    """A hidden temporary name beside `path` (same directory, so a rename replaces it atomically):
    DIR/.NAME.tmpPID (the writer's pid: train/checkpoint.py clears those of dead writers)."""
    path = Path(path)
    return path.with_name(f".{path.name}.tmp{os.getpid()}")


def commit_file(tmp: str | os.PathLike, path: str | os.PathLike) -> None:
    """Make the finished temporary file `tmp` durable (fsync) and rename it over `path`."""
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, tmp: str | os.PathLike | None = None) -> Iterator[Path]:
    """Write to the yielded temporary path; when the block ends without an error it is fsynced and
    renamed over `path`; on an error it is removed and `path` is left as it was. `tmp` overrides
    the temporary name (default `temporary_path`)."""
    tmp = Path(tmp) if tmp is not None else temporary_path(path)
    try:
        yield tmp
        commit_file(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_bytes(path: str | os.PathLike, data: bytes, tmp: str | os.PathLike | None = None) -> None:
    """`path` gets `data`, atomically (see atomic_path)."""
    with atomic_path(path, tmp) as t:
        t.write_bytes(data)


def atomic_write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> None:
    atomic_write_bytes(path, text.encode(encoding))


def atomic_write_json(path: str | os.PathLike, obj, **dumps) -> None:
    """json.dumps(obj, **dumps) and a newline, UTF-8, atomically."""
    atomic_write_text(path, json.dumps(obj, **dumps) + "\n")


# -- completion: a stage says "up to date" (like make) ------------------------------------------
#
# At the end of a successful run a stage writes META_DIR/COMPLETE_FILE: its config (the settings
# that decide the output) and a fingerprint of each input. A later run with the same config and
# inputs finds nothing to do: `out_of_date` returns None and the stage prints UP_TO_DATE, exit 0.
# The fingerprint of an upstream cc100 output is the hash of its own completion record, a chain:
# a rebuilt corpus makes vocab, tokenize, pretrain... out of date without rehashing gigabytes.

COMPLETE_FILE = "complete.json"  # {"stage", "format_version", "config": {...}, "inputs": {...}}
FORCE_FLAG = "--force"  # every stage: rebuild even an up-to-date output
UP_TO_DATE = "cc100 {stage}: up to date ({output})"
NOT_UP_TO_DATE = "cc100 {stage}: not up to date ({reason})"
FORCED = "cc100 {stage}: " + FORCE_FLAG + " given: running whether up to date or not"


def complete_path(directory: str | os.PathLike) -> str:
    return os.path.join(os.fspath(directory), META_DIR, COMPLETE_FILE)


def _canonical(value):
    """A config value as JSON would give it back (tuples as lists, paths as strings)."""
    return json.loads(json.dumps(value, sort_keys=True, default=os.fspath))


def completion_record(stage: str, config: dict, inputs: dict) -> dict:
    """What `mark_complete` writes: the stage, its config and its inputs' fingerprints."""
    _check_stage(stage)
    return {"stage": stage, "format_version": STAGE_FORMATS[stage],
            "config": _canonical(config), "inputs": _canonical(inputs)}


def completion_bytes(record: dict) -> bytes:
    return (json.dumps(record, indent=1, sort_keys=True) + "\n").encode("utf-8")


def mark_complete(directory: str | os.PathLike, stage: str, config: dict, inputs: dict) -> dict:
    """Record, last, that `directory` holds a complete run of `stage` with this config and these
    inputs (atomically: a crash leaves the previous record or none)."""
    record = completion_record(stage, config, inputs)
    os.makedirs(os.path.join(os.fspath(directory), META_DIR), exist_ok=True)
    atomic_write_bytes(complete_path(directory), completion_bytes(record))
    return record


def read_completion(directory: str | os.PathLike) -> dict | None:
    """The completion record of a local output, or None (none, unreadable, not a record; a
    record, like a marker, is a JSON object naming its stage: `parse_marker` reads both)."""
    try:
        with open(complete_path(directory), "rb") as f:
            return parse_marker(f.read())
    except OSError:
        return None


def clear_completion(directory: str | os.PathLike) -> None:
    """Forget that `directory` was complete (a stage about to rewrite it in place)."""
    try:
        os.unlink(complete_path(directory))
    except FileNotFoundError:
        pass


def _sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def stat_digest(entries: Iterable[tuple[str, int, int | float]]) -> str:
    """`stat:` + a hash of (path, size, modification time) per file, in path order: the one
    form of a stat fingerprint, local (`stat_fingerprint`) or on an object store."""
    h = hashlib.sha256()
    for path, size, mtime in sorted(entries):
        h.update(f"{path}\0{size}\0{mtime}\n".encode("utf-8", "surrogateescape"))
    return "stat:" + h.hexdigest()


def stat_fingerprint(paths: Iterable[str | os.PathLike]) -> str:
    """`stat:` + a hash of each file's path, size and mtime (big raw inputs: WET files)."""
    entries = []
    for path in map(os.fspath, paths):
        st = os.stat(path)
        entries.append((path, st.st_size, st.st_mtime_ns))
    return stat_digest(entries)


def content_fingerprint(path: str | os.PathLike) -> str:
    """`sha256:` + the file's content hash (small raw inputs: reference texts)."""
    return "sha256:" + _sha256_file(path)


def own_files(directory: str) -> list[str]:
    """The files of a directory, without its META_DIR and without nested cc100 outputs (a run's
    hf/ and eval/ are outputs of their own, and must not change what the run is)."""
    files = []
    for d, subdirs, names in os.walk(directory):
        subdirs[:] = [s for s in subdirs if s != META_DIR
                      and not os.path.isfile(marker_path(os.path.join(d, s)))]
        files += [os.path.join(d, name) for name in names]
    return files


def fingerprint(path: str | os.PathLike) -> str:
    """What an input is, cheaply: a cc100 output with a completion record -> `record:` + the
    hash of that record (the chain); a file -> its content hash; another directory -> stat of
    its own files (`own_files`); a missing path -> `missing`."""
    path = os.fspath(path)
    if os.path.isdir(path):
        if os.path.isfile(complete_path(path)):
            return "record:" + _sha256_file(complete_path(path))
        return stat_fingerprint(own_files(path))
    if os.path.isfile(path):
        return content_fingerprint(path)
    return "missing"


def _flat(d: dict, prefix: str = "") -> dict:
    """{"data": {"seed": 0}} -> {"data.seed": 0}, so a change names the nested setting."""
    out = {}
    for key, value in d.items():
        if isinstance(value, dict) and value:
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def describe_changes(recorded: dict, current: dict, what: str) -> list[str]:
    """`config vocab_size: 1000 -> 2000`, `input corpus changed`: one item per differing key."""
    if what == "config":
        recorded, current = _flat(recorded), _flat(current)
    items = []
    for key in sorted(set(recorded) | set(current)):
        old, new = recorded.get(key), current.get(key)
        if old == new:
            continue
        if what == "config":
            items.append(f"config {key}: {json.dumps(old)} -> {json.dumps(new)}")
        else:
            items.append(f"input {key} " + ("is new" if key not in recorded else
                                            "is gone" if key not in current else "changed"))
    return items


def out_of_date(directory: str | os.PathLike, stage: str, config: dict, inputs: dict,
                read=read_completion, exists=os.path.isdir) -> str | None:
    """None when `directory` holds a complete run of `stage` with this config and these inputs
    (up to date: nothing to do); otherwise why not, in a few words naming what changed. `read`
    and `exists` reach another file system (the corpus on gs://, through Beam's FileSystems)."""
    record = read(directory)
    if record is None:
        return "no completion record" if exists(directory) else "no output yet"
    if record.get("stage") != stage:
        return f"completion record of cc100 {record.get('stage')}"
    current = completion_record(stage, config, inputs)
    changes = (describe_changes(record.get("config") or {}, current["config"], "config")
               + describe_changes(record.get("inputs") or {}, current["inputs"], "inputs"))
    if record.get("format_version") != current["format_version"]:
        changes.insert(0, f"format_version {record.get('format_version')} -> {current['format_version']}")
    return "; ".join(changes) or None


def decisive(config: dict, exclude: Iterable[str]) -> dict:
    """`config` without the settings that do not change a stage's output (workers, paths of the
    output, verbosity...): keys named in `exclude` are dropped at any depth of a nested config."""
    exclude = set(exclude)
    return {key: decisive(value, exclude) if isinstance(value, dict) else value
            for key, value in config.items() if key not in exclude}


def skip_if_up_to_date(directory: str | os.PathLike, stage: str, config: dict, inputs: dict,
                       force: bool = False, log=print, read=read_completion, exists=os.path.isdir,
                       marker=None) -> bool:
    """The one check every stage makes before its work: True (and UP_TO_DATE logged) when
    `directory` is up to date, so the stage has nothing to do and exits 0. False otherwise,
    after logging why an existing output is not up to date (or that `force` asked for a run).
    `read`, `exists` and `marker` (default read_marker) reach another file system."""
    if force:
        log(FORCED.format(stage=stage))
        return False
    reason = out_of_date(directory, stage, config, inputs, read=read, exists=exists)
    if reason is None:
        log(UP_TO_DATE.format(stage=stage, output=os.fspath(directory)))
        return True
    if ((marker or read_marker)(directory) or {}).get("stage") == stage:  # an earlier output of this stage
        log(NOT_UP_TO_DATE.format(stage=stage, reason=reason))
    return False


def pop_force(argv: list[str] | None) -> tuple[bool, list[str] | None]:
    """(whether FORCE_FLAG was given, argv without it): every stage's main takes `--force`."""
    if argv is None:
        argv = sys.argv[1:]
    rest = [a for a in argv if a != FORCE_FLAG]
    return len(rest) != len(argv), rest


# -- failures: one line that says what and where ------------------------------------------------


def describe_os_error(e: OSError, where: str | os.PathLike | None = None) -> str:
    """An OSError as one line naming the file: "no space left on device writing out/x.bin"."""
    path = where if where is not None else e.filename
    if e.errno == errno.ENOSPC:
        return "no space left on device" + (f" writing {describe_path(path)}" if path is not None else "")
    what = e.strerror or str(e) or type(e).__name__
    return what + (f": {describe_path(path)}" if path is not None else "")


def find_os_error(e: BaseException) -> OSError | None:
    """The OSError behind `e` (itself, or what it was raised from or while handling): torch, for
    one, reports a failed write as a RuntimeError whose context is the OSError."""
    seen = set()
    while e is not None and id(e) not in seen:
        if isinstance(e, OSError):
            return e
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return None


def describe_path(path: str | os.PathLike) -> str:
    """A path for a message: as it is, or ascii() of it when its name is not valid UTF-8."""
    return undecodable_name(path) or os.fsdecode(path)


def undecodable_name(path: str | os.PathLike) -> str | None:
    """ascii() of a file name that is not valid UTF-8 (None when it is valid)."""
    name = os.fsdecode(path)
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return ascii(name)
    return None


# -- make clean: only what cc100 wrote ----------------------------------------------------------


def plan_clean(root: str) -> tuple[list[str], list[str]]:
    """(directories to remove, foreign entries) under `root`.

    A directory with any stage's marker is removed whole; a plain directory is a container
    (such as out/ or out/demo/) removed when everything in it is; anything else is foreign.
    """
    if os.path.islink(root) or not os.path.isdir(root):
        return ([], [] if not os.path.lexists(root) else [root])
    if read_marker(root) is not None:
        return [root], []
    remove, foreign = [], []
    with os.scandir(root) as entries:
        for entry in sorted(entries, key=lambda e: e.name):
            sub_remove, sub_foreign = plan_clean(entry.path)
            remove += sub_remove
            foreign += sub_foreign
    return remove, foreign


def clean(roots: Iterable[str]) -> list[str]:
    """Remove every cc100 output under `roots` (then the emptied containers); nothing is removed
    when anything else is there (OwnershipError naming it). Returns what was removed."""
    plans = [(root, *plan_clean(root)) for root in roots]
    foreign = [path for _, _, bad in plans for path in bad]
    if foreign:
        more = f" (and {len(foreign) - 1} more)" if len(foreign) > 1 else ""
        raise OwnershipError(f"{foreign[0]}{more}: not written by cc100 (no {META_DIR}/{MARKER_FILE} "
                             f"in it or above it); nothing removed: move it elsewhere first")
    removed = []
    for root, remove, _ in plans:
        for path in remove:
            remove_tree_no_follow(path)
            removed.append(path)
        for dirpath, _dirs, _files in os.walk(root, topdown=False):
            try:
                os.rmdir(dirpath)  # the emptied containers
            except OSError:
                pass
    return removed


# -- command line (for the Makefile and shell scripts) -----------------------------------------


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m pipeline.contracts",
        description="Check, claim or remove directories by their cc100 stage marker "
                    f"(DIR/{META_DIR}/{MARKER_FILE}).")
    sub = p.add_subparsers(dest="command", required=True)
    stages = sorted(STAGE_FORMATS)
    for name, text in (("check", "exit 0 if DIR may be written by STAGE (new, empty or its own)"),
                       ("claim", "create DIR if needed and write STAGE's marker (after `check`)"),
                       ("remove", "delete DIR if it carries STAGE's marker (a missing DIR is fine)"),
                       ("adopt", "write STAGE's marker into an existing DIR without one: say that "
                                 "an output of an older cc100 is STAGE's")):
        s = sub.add_parser(name, help=text, description=text)
        s.add_argument("dir")
        s.add_argument("--stage", required=True, choices=stages)
    s = sub.add_parser("clean", help="remove every cc100 output under each DIR; refuse (and "
                                     "remove nothing) if anything else is there")
    s.add_argument("dirs", nargs="+", metavar="DIR")
    a = p.parse_args(argv)
    try:
        if a.command == "check":
            check_claimable(a.dir, a.stage)
        elif a.command == "claim":
            claim(a.dir, a.stage)
        elif a.command == "remove":
            if remove_owned_tree(a.dir, a.stage):
                print(f"removed {a.dir}")
        elif a.command == "adopt":
            if not os.path.isdir(a.dir) or os.path.islink(a.dir):
                raise OwnershipError(f"{a.dir}: not a directory")
            if read_marker(a.dir) is not None:
                check_claimable(a.dir, a.stage)  # already ours: nothing to do; else say whose
            else:
                write_marker(a.dir, a.stage, adopted=True)
                print(f"{a.dir}: marked as the output of cc100 {a.stage}")
        else:
            for path in clean(a.dirs):
                print(f"removed {path}")
    except OwnershipError as e:
        print(f"cc100: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
