"""`cc100 corpus`: WET segments -> documents -> CCNet dedup -> language ID -> perplexity buckets -> Parquet.

    cc100 corpus (--input GLOB [--input GLOB ...] | --snapshot CC-MAIN-YYYY-WW --segments 0-99)
                 --output DIR [--workers N] [--min-len 300] [--dedup ccnet|keep-first]
                 [--dedup-group-size N] [--lm-dir DIR] [--langs en,fr] [--overwrite] [Beam flags]

`main` removes what killed runs on the same output left (pipeline/utils/leftovers.py), checks inputs,
output, models and the work directory before anything runs, builds the chain of stages
(`build_pipeline`), runs it on the local FnApiRunner (or the --runner given), checks that no
stage lost data (pipeline/utils/conservation.py; a mismatch commits nothing and exits 1), then writes
the dataset card README.md and .cc100/stats.json and commits the staging directory to --output by rename. Segments whose
download failed for good are reported; without --allow-failed-segments nothing is committed,
the run exits 1, and the work directory keeps every finished segment for the re-run.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import sys
import time
from datetime import datetime, timezone

import apache_beam as beam  # noqa: E402
from apache_beam.io.filesystems import FileSystems  # noqa: E402

from pipeline.quality.buckets import AssignBuckets, format_language_table, summarize_counters  # noqa: E402
from pipeline.writers.card import render_card  # noqa: E402
from pipeline.utils.conservation import check_conservation  # noqa: E402
from pipeline.contracts import (  # noqa: E402
    CUTOFFS_FILE,
    DATASET_CARD,
    FILES_REPORT,
    STATS_FILE,
    STATS_TOP_LINES,
    TOP_LINES_FILE,
    decisive,
    describe_os_error,
    find_meta,
    find_os_error,
    mark_complete,
    meta_path,
    pop_force,
    skip_if_up_to_date,
    stat_fingerprint,
    undecodable_name,
)
from pipeline.contracts import fingerprint as input_fingerprint  # noqa: E402
from pipeline.dedup.paragraphs import DedupParagraphs  # noqa: E402
from pipeline.readers.download import DownloadError, redact_url  # noqa: E402
from pipeline.writers.parquet import (  # noqa: E402
    CorpusIOError,
    WriteByLanguage,
    check_output,
    commit_output,
    create_staging,
    list_parts,
    match_inputs,
    output_problem,
    remove_tree,
    write_json,
    write_text,
)
from pipeline.utils import logs  # noqa: E402
from pipeline.utils.leftovers import committed_run_left_work_dir, remove_dead_staging  # noqa: E402
from pipeline.quality.lid import IdentifyLanguage  # noqa: E402
from pipeline.dedup.near import NearDedup  # noqa: E402
from pipeline.options import (  # noqa: E402
    LOCAL_RUNNER,
    CorpusConfig,
    make_runner,
    parse_args,
    pipeline_options,
    prepare_worker_package,
)
from pipeline.quality.perplexity import ScorePerplexity, validate_models  # noqa: E402
from pipeline.readers.segments import (  # noqa: E402
    FAILED_RUN_STATS,
    WORK_CONFIG,
    ReadSegments,
    Segment,
    check_work_dir,
    clear_work_dir,
    failed_segments,
    finished_segments,
    input_segments,
    prepare_work_dir,
    resolve_download_cache,
    segment_progress,
    segment_sources,
    snapshot_segments,
    work_fingerprint,
)
from pipeline.readers.snapshot import select_segments, wet_paths  # noqa: E402
from pipeline.writers.stats import COUNTER_HELP, counters_from_result, format_summary, partitions, read_file_reports  # noqa: E402
from pipeline.utils.tools import ModelFileError  # noqa: E402

LOG = logging.getLogger("cc100.corpus")
PROGRESS_EVERY_S = float(os.environ.get("CC100_PROGRESS_EVERY_S", "30"))  # log lines, not a tty


def build_pipeline(p: beam.Pipeline, config: CorpusConfig, segments: list[Segment], root: str,
                   work_dir: str) -> None:
    """The chain of stages; each is one labelled composite transform.

    `root` receives the output (the staging directory), `work_dir` the per-segment spools.
    """
    metadata = {"stage": "corpus", "config": config.to_dict()}
    fetch = config.fetch if config.snapshot else None
    docs = p | "ReadSegments" >> ReadSegments(
        segments, work_dir, config.min_len, fetch, report_path=meta_path(root, FILES_REPORT),
        max_record_bytes=config.max_record_bytes)
    docs = docs | "DedupParagraphs" >> DedupParagraphs(
        [s.name for s in segments], config.dedup, config.dedup_group_size,
        top_lines_path=meta_path(root, TOP_LINES_FILE))
    if config.near_dedup:
        docs = docs | "NearDedup" >> NearDedup(config.near)
    docs = docs | "IdentifyLanguage" >> IdentifyLanguage(
        config.language.model, config.language.threshold, config.language.mode, config.language.langs)
    docs = docs | "ScorePerplexity" >> ScorePerplexity(config.lm_dir, config.perplexity_per_line)
    docs = docs | "AssignBuckets" >> AssignBuckets(
        config.cutoffs, cutoffs_output=meta_path(root, CUTOFFS_FILE))
    _ = docs | "WriteByLanguage" >> WriteByLanguage(root, metadata, config.docs_per_file)


def resolve_segments(config: CorpusConfig, work_dir: str, files: list[str]) -> list[Segment]:
    """The run's segments: the matched --input `files`, or the selected lines of the snapshot's
    wet.paths.gz (downloaded once, with the same retries as the segments, into the cache)."""
    if not config.snapshot:
        return input_segments(files)
    cache = resolve_download_cache(config.fetch.download_cache, work_dir)
    try:
        listing = wet_paths(config.snapshot, config.fetch.base_url, cache, policy=config.fetch.policy)
    except DownloadError as e:
        raise CorpusIOError(
            f"--snapshot {config.snapshot}: cannot download the segment list "
            f"{e.url}: {e.reason} "
            f"(after {e.attempts} attempt{'s' if e.attempts != 1 else ''})") from None
    except ValueError as e:
        raise CorpusIOError(f"--snapshot {config.snapshot}: {e}") from None
    try:
        return snapshot_segments(select_segments(listing, config.segments,
                                                 allow_invalid=config.allow_failed_segments))
    except ValueError as e:
        raise CorpusIOError(str(e)) from None


def check_path_names(config: CorpusConfig) -> None:
    """CorpusIOError for a path flag that is not valid UTF-8: stats.json and the Parquet footers
    record every path as UTF-8, so such a run would fail at its very end."""
    for flag, path in (("--output", config.output), ("--work-dir", config.work),
                       ("--download-cache", config.fetch.download_cache), ("--lm-dir", config.lm_dir),
                       ("--lid-model", config.language.model), ("--cutoffs", config.cutoffs)):
        name = path and undecodable_name(path)
        if name:
            raise CorpusIOError(f"{flag} {name}: the path is not valid UTF-8; choose another name")


def n_dedup_groups(n_files: int, group_size: int | None) -> int:
    return -(-n_files // group_size) if group_size else 1


def _setup_logging(verbose: bool) -> None:
    logs.setup(verbose)
    # Worker processes print their own log lines; the runner's copy of each is a duplicate.
    relay = logging.getLogger("apache_beam.runners.portability.local_job_service")
    relay.setLevel(logging.NOTSET if verbose else logging.ERROR)


def _read_top_lines(path: str) -> list:
    """The dedup stage's most duplicated paragraphs; the file is folded into stats.json."""
    lines = json.loads("\n".join(_read_text(path)) or "[]")
    if FileSystems.exists(path):
        FileSystems.delete([path])
    return lines


def _read_text(path: str) -> list[str]:
    try:
        with FileSystems.open(path, compression_type="uncompressed") as f:
            return f.read().decode("utf-8").splitlines()
    except OSError:
        return []


def _inputs(config: CorpusConfig, segments: list[Segment]) -> dict:
    names = [s.name for s in segments]
    if config.snapshot:
        return {"snapshot": config.snapshot, "segments": config.segments,
                "cc_base_url": redact_url(config.fetch.base_url), "files": names}
    return {"patterns": config.inputs, "files": names}


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


def remove_leftovers(config: CorpusConfig, work_dir: str) -> None:
    """What killed runs of this stage on this output left (pipeline/utils/leftovers.py): their staging
    directories, and the work directory of a run killed right after its commit (unless this
    run, with --overwrite, resumes from it and removes it at its end)."""
    remove_dead_staging(config.output)
    if output_problem(config.output) is not None:  # not this stage's output: none of its leftovers
        return
    stats_path = find_meta(config.output, STATS_FILE, exists=FileSystems.exists) or meta_path(config.output, STATS_FILE)
    if not config.overwrite and committed_run_left_work_dir(config.output, stats_path, work_dir, WORK_CONFIG):
        LOG.info("removing %s, the work directory of the run committed to %s", work_dir, config.output)
        clear_work_dir(work_dir)


# settings that do not change what a corpus run writes: where and how it runs, how hard it
# tries to download (the inputs are fingerprinted instead of their paths)
RUN_ONLY = ("output", "workers", "overwrite", "lid_model", "lm_dir", "cutoffs", "download_cache",
            "max_downloads", "max_attempts", "download_backoff", "download_deadline", "max_retry_after",
            "work_dir", "keep_work", "runner", "beam_args")


def completion(config: CorpusConfig, files: list[str]) -> tuple[dict, dict] | None:
    """(config, inputs) that decide a corpus run (pipeline/contracts.py): the settings, the WET
    files by path, size and time, the LM directory, LID model and cutoffs; None when the output
    or an input is not local (no completion records on object stores)."""
    models = {"lm": config.lm_dir, "lid_model": config.language.model, "cutoffs": config.cutoffs}
    if any("://" in path for path in [config.output, *files, *filter(None, models.values())]):
        return None
    inputs = {name: input_fingerprint(path) for name, path in models.items() if path}
    if files:
        inputs["wet"] = stat_fingerprint(files)
    return decisive(config.to_dict(), RUN_ONLY), inputs


def up_to_date(config: CorpusConfig, force: bool) -> bool:
    """The corpus run's one up-to-date check, first in its preflight: True when OUTPUT holds a
    finished run of the same settings and inputs (the caller exits 0, touching nothing)."""
    try:
        files = [] if config.snapshot else match_inputs(config.inputs)
    except CorpusIOError:
        return False  # the preflight reports it
    decided = completion(config, files)
    return decided is not None and skip_if_up_to_date(config.output, "corpus", *decided, force=force)


def main(argv: list[str] | None = None) -> int:
    force, argv = pop_force(list(sys.argv[1:] if argv is None else argv))
    try:
        config, args = parse_args(argv)
    except SystemExit as e:  # argparse printed usage or help
        return int(e.code or 0)
    _setup_logging(args.verbose)
    if up_to_date(config, force):
        return 0
    if force:  # --force replaces a finished run, up to date or not
        config = dataclasses.replace(config, overwrite=True)
    work_dir = config.work
    fingerprint = work_fingerprint(config.min_len, config.max_record_bytes)
    work_state = None
    remove_leftovers(config, work_dir)
    work_existed = "://" not in work_dir and os.path.isdir(work_dir)
    try:
        files = [] if config.snapshot else match_inputs(config.inputs)  # a bad glob comes first
        check_path_names(config)
        check_output(config.output, config.overwrite)
        models = validate_models(config.language.model, config.lm_dir, config.language.langs, config.cutoffs)
        work_state = check_work_dir(work_dir, fingerprint, config.overwrite)
        segments = resolve_segments(config, work_dir, files)
        staging = create_staging(config.output)
    except (CorpusIOError, ModelFileError) as e:
        if work_state == "new":  # e.g. the snapshot listing was fetched into it, then a failure
            clear_work_dir(work_dir, remove_dir=not work_existed)
        _error(str(e))
        return 2
    try:
        prepare_work_dir(work_dir, fingerprint, work_state)
    except Exception as e:  # noqa: BLE001 - unwritable --work-dir
        remove_tree(staging)
        _error(f"--work-dir {work_dir}: cannot write there ({type(e).__name__}: {e})")
        return 2

    runner = config.runner or LOCAL_RUNNER
    groups = n_dedup_groups(len(segments), config.dedup_group_size)
    source = (f"{len(segments)} segments of {config.snapshot} ({config.segments}) from {redact_url(config.fetch.base_url)}"
              if config.snapshot else f"{len(segments)} input files")
    LOG.info("%s, dedup %s over %d group(s), runner %s, staging %s",
             source, config.dedup, groups, runner, staging)
    done = finished_segments(work_dir, segments)
    if done:
        LOG.info("work dir %s: %d of %d segments already finished (spooled); only the others are "
                 "downloaded and parsed, dedup and later stages run on all", work_dir, done, len(segments))
    else:
        LOG.info("work dir %s", work_dir)
    for line in models.lines():
        LOG.info("%s", line)
    started = datetime.now(timezone.utc)
    t0 = time.perf_counter()
    try:
        options = pipeline_options(config)
        prepare_worker_package(options)
        p = beam.Pipeline(runner=make_runner(config, options), options=options)
        build_pipeline(p, config, segments, staging, work_dir)
        with segment_progress(work_dir, segments, LOG.info, every=PROGRESS_EVERY_S):
            result = p.run()
            result.wait_until_finish()
        counters = counters_from_result(result)
        reports = read_file_reports(_read_text(meta_path(staging, FILES_REPORT)))
        failed = failed_segments(reports)
        parts = list_parts(staging)
        stats = {
            "command": "cc100 corpus",
            "config": config.to_dict(),
            "runner": runner,
            "inputs": _inputs(config, segments),
            "output": config.output,
            "work_dir": work_dir,
            "dedup_groups": groups,
            "started": started.isoformat(timespec="seconds"),
            "seconds": round(time.perf_counter() - t0, 3),
            "segments": segment_sources(reports),
            "failed_segments": failed,
            "counters": counters,
            "counter_help": {k: v for k, v in COUNTER_HELP.items() if k in counters},
            "languages": summarize_counters(counters),
            STATS_TOP_LINES: _read_top_lines(meta_path(staging, TOP_LINES_FILE)),
            "partitions": partitions(parts),
            "parts": parts,
            "problem_files": [{"path": r["path"], "problems": r["problems"]}
                              for r in reports if r["problems"] and not r.get("failed")],
        }
        imbalances = check_conservation(counters, parts, len(reports), len(segments), config.near_dedup)
        stats["conservation"] = {"failed": [i.to_dict() for i in imbalances]}
        committed = not imbalances and (not failed or config.allow_failed_segments)
        stats["committed"] = committed
        if committed:
            write_text(FileSystems.join(staging, DATASET_CARD), render_card(stats))
            write_json(meta_path(staging, STATS_FILE), stats)  # marks the run finished
            if (decided := completion(config, files)) is not None:
                mark_complete(staging, "corpus", *decided)  # what a later run compares with
            commit_output(staging, config.output, config.overwrite)
        else:  # nothing is committed; the spools of the finished segments stay for the re-run
            write_json(FileSystems.join(work_dir, FAILED_RUN_STATS), stats)
            remove_tree(staging)
    except (Exception, KeyboardInterrupt) as e:  # noqa: BLE001 - one readable line, no worker traceback
        remove_tree(staging)
        _error(f"failed: {failure_line(e)}")
        LOG.info("finished segments stay in %s: re-running the same command resumes from them", work_dir)
        if args.verbose:
            raise
        return 1
    if imbalances:
        more = f" (and {len(imbalances) - 1} more)" if len(imbalances) > 1 else ""
        _error(f"conservation check failed, so {config.output} was not written: {imbalances[0].line()}"
               f"{more}; the counters are in {FileSystems.join(work_dir, FAILED_RUN_STATS)}")
        return 1
    if committed and not failed and not config.keep_work:
        clear_work_dir(work_dir)
    print(format_summary(stats))
    print()
    print(format_language_table(stats["languages"]))
    if not committed:
        _error(f"{len(failed)} of {len(segments)} segments failed (listed above), so {config.output} "
               f"was not written; the {len(segments) - len(failed)} finished segments are kept in "
               f"{work_dir}: re-run the same command to fetch only the missing ones, or add "
               "--allow-failed-segments to write the output without them")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
