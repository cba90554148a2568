"""`cc100 corpus`: WET segments -> documents -> CCNet dedup -> language ID -> perplexity buckets -> Parquet.

    cc100 corpus (--input GLOB [--input GLOB ...] | --snapshot CC-MAIN-YYYY-WW --segments 0-99)
                 --output DIR [--workers N] [--min-len 300] [--dedup ccnet|keep-first]
                 [--dedup-group-size N] [--lm-dir DIR] [--langs en,fr] [--overwrite] [Beam flags]

`main` parses the flags and chains the three phases of one run (pipeline/corpus_run.py
`CorpusRun`): preflight (leftovers of killed runs removed; inputs, output, models and the work
directory checked before anything runs), run (the chain of stages, `build_pipeline`, on the
local FnApiRunner or the --runner given) and commit (no stage lost data,
pipeline/utils/conservation.py, else nothing is committed and the run exits 1; the dataset card
README.md and .cc100/stats.json written; the staging directory renamed to --output). Segments
whose download failed for good are reported; without --allow-failed-segments nothing is
committed, the run exits 1, and the work directory keeps every finished segment for the re-run.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import sys

import apache_beam as beam

from pipeline.contracts import describe_os_error, find_os_error, pop_force
from pipeline.corpus_run import TOP_LINES, CorpusRun, RunFailed, RunRefused, RunReports
from pipeline.dedup.near import NearDedup
from pipeline.dedup.paragraphs import DedupParagraphs
from pipeline.options import CorpusConfig, parse_args
from pipeline.quality.buckets import AssignBuckets
from pipeline.quality.lid import IdentifyLanguage
from pipeline.quality.perplexity import ScorePerplexity
from pipeline.readers.segments import ReadSegments, Segment
from pipeline.utils import logs
from pipeline.writers.parquet import WriteByLanguage

LOG = logging.getLogger("cc100.corpus")


def build_pipeline(p: beam.Pipeline, config: CorpusConfig, segments: list[Segment], root: str,
                   work_dir: str) -> RunReports:
    """The chain of stages; each is one labelled composite transform.

    `root` receives the Parquet output (the staging directory), `work_dir` the per-segment
    spools. Returns what the stages report besides documents, for the run to write.
    """
    metadata = {"stage": "corpus", "config": config.to_dict()}
    fetch = config.fetch if config.snapshot else None
    read = ReadSegments(segments, work_dir, config.min_len, fetch, max_record_bytes=config.max_record_bytes)
    docs = p | "ReadSegments" >> read
    dedup = DedupParagraphs([s.name for s in segments], config.dedup, config.dedup_group_size, top_lines=TOP_LINES)
    docs = docs | "DedupParagraphs" >> dedup
    if config.near_dedup:
        docs = docs | "NearDedup" >> NearDedup(config.near)
    docs = docs | "IdentifyLanguage" >> IdentifyLanguage(
        config.language.model, config.language.threshold, config.language.mode, config.language.langs)
    docs = docs | "ScorePerplexity" >> ScorePerplexity(config.lm_dir, config.perplexity_per_line)
    buckets = AssignBuckets(config.cutoffs)
    docs = docs | "AssignBuckets" >> buckets
    _ = docs | "WriteByLanguage" >> WriteByLanguage(root, metadata, config.docs_per_file)
    return RunReports(files=read.reports, top_lines=dedup.top_duplicated, cutoffs=buckets.cutoffs_used)


def _setup_logging(verbose: bool) -> None:
    logs.setup(verbose)
    # Worker processes print their own log lines; the runner's copy of each is a duplicate.
    relay = logging.getLogger("apache_beam.runners.portability.local_job_service")
    relay.setLevel(logging.NOTSET if verbose else logging.ERROR)


# the exception line of a worker's traceback (portable runners report it as a RuntimeError's text)
_EXCEPTION_LINE = re.compile(r"^(?:[\w.]+\.)?(\w+(?:Error|Exception|Interrupt)): (.*)$", re.MULTILINE)
_ERRNO = re.compile(r"^\[Errno (\d+)\] ([^:\[]+?)(?:: '([^']*)')?(?: \[while running .*)?$")


def failure_line(e: BaseException) -> str:
    """What failed, in one line: "no space left on device writing PATH" for a full disk (raised
    here or in a worker), else the innermost exception of a worker's traceback, else the first
    line of the message."""
    os_error = find_os_error(e)
    if os_error is not None:
        return describe_os_error(os_error)
    text = str(e).strip()
    found = _EXCEPTION_LINE.findall(text) if "Traceback (most recent call last)" in text else []
    if found:
        name, message = found[-1]
        errno_match = _ERRNO.match(message.strip())
        if errno_match:  # an OSError (or subclass) in a worker: name the error and the file
            number, strerror, path = errno_match.groups()
            return describe_os_error(OSError(int(number), strerror, path))
        return f"{name}: {message.strip()[:500]}"
    first_line = (text.splitlines() or [""])[0][:500]
    return f"{type(e).__name__}: {first_line}"


def _error(message: str) -> None:
    print(f"cc100 corpus: {message}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    force, argv = pop_force(list(sys.argv[1:] if argv is None else argv))
    try:
        config, args = parse_args(argv)
    except SystemExit as e:  # argparse printed usage or help
        return int(e.code or 0)
    _setup_logging(args.verbose)
    if force:  # --force replaces a finished run, up to date or not
        config = dataclasses.replace(config, overwrite=True)
    corpus = CorpusRun(config, force=force)
    try:
        if not corpus.preflight():  # the output is up to date
            return 0
    except RunRefused as e:
        _error(str(e))
        return 2
    try:
        return corpus.commit(corpus.run(build_pipeline))
    except RunFailed as e:  # nothing committed; the run said why
        _error(str(e))
        return 1
    except (Exception, KeyboardInterrupt) as e:  # noqa: BLE001 - one readable line, no worker traceback
        corpus.abort()
        _error(f"failed: {failure_line(e)}")
        LOG.info("finished segments stay in %s: re-running the same command resumes from them", corpus.work_dir)
        if args.verbose:
            raise
        return 1


if __name__ == "__main__":
    sys.exit(main())
