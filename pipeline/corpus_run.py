"""One `cc100 corpus` run and the directories it owns, in three phases.

    corpus = CorpusRun(config)
    if corpus.preflight():                 # checks; claims a staging directory and the work dir
        result = corpus.run(build_pipeline)  # the Beam job, writing into the staging directory
        exit_code = corpus.commit(result)  # checks, reports, rename staging -> output, summary

The directories of a run:

    OUTPUT                    claimed in preflight (it must be empty, absent or this stage's own
                              finished output with --overwrite), replaced only by the commit
    OUTPUT.tmp-{host}-{pid}-* the staging directory (pipeline/utils/leftovers.py names it): the job's
                              Parquet parts, and the side reports the run writes in one place
                              (`WriteRunReports`); renamed to OUTPUT by the commit
    WORK (--work-dir)         the segment spools (resume), the download cache, and the
                              accounting of a run that did not commit (pipeline/readers/segments.py)

Every refusal of preflight is one line (`RunRefused`, exit 2) and leaves nothing behind; a run
that fails after it removes its staging directory and keeps the work directory, so re-running
the same command resumes from the finished segments.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import NamedTuple

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from pipeline.contracts import (
    CUTOFFS_FILE,
    DATASET_CARD,
    FILES_REPORT,
    STATS_FILE,
    STATS_TOP_LINES,
    TOP_LINES_FILE,
    decisive,
    find_meta,
    meta_path,
    skip_if_up_to_date,
    stat_fingerprint,
    undecodable_name,
)
from pipeline.contracts import fingerprint as input_fingerprint
from pipeline.options import LOCAL_RUNNER, CorpusConfig, make_runner, pipeline_options, prepare_worker_package
from pipeline.quality.buckets import WriteCutoffs, format_language_table, summarize_counters
from pipeline.quality.perplexity import validate_models
from pipeline.readers.download import DownloadError, redact_url
from pipeline.readers.segments import (
    FAILED_RUN_STATS,
    WORK_CONFIG,
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
from pipeline.readers.snapshot import select_segments, wet_paths
from pipeline.utils.conservation import Imbalance, check_conservation
from pipeline.utils.leftovers import committed_run_left_work_dir, remove_dead_staging
from pipeline.utils.tools import ModelFileError
from pipeline.writers.card import render_card
from pipeline.writers.parquet import (
    CorpusIOError,
    check_output,
    commit_output,
    create_staging,
    list_parts,
    match_inputs,
    output_problem,
    remote_fingerprint,
    remote_stat_fingerprint,
    remove_tree,
    up_to_date_hooks,
    write_completion,
    write_json,
    write_text,
)
from pipeline.writers.stats import COUNTER_HELP, counters_from_result, format_summary, partitions, read_file_reports

LOG = logging.getLogger("cc100.corpus")
PROGRESS_EVERY_S = float(os.environ.get("CC100_PROGRESS_EVERY_S", "30"))  # log lines, not a tty
TOP_LINES = 30  # most duplicated paragraphs kept in stats.json
# settings that do not change what a corpus run writes: where and how it runs, how hard it
# tries to download (the inputs are fingerprinted instead of their paths)
RUN_ONLY = ("output", "workers", "overwrite", "lid_model", "lm_dir", "cutoffs", "download_cache",
            "max_downloads", "max_attempts", "download_backoff", "download_deadline", "max_retry_after",
            "work_dir", "keep_work", "runner", "beam_args")


class RunRefused(Exception):
    """Preflight said no, in one line for the user (exit 2); nothing was created."""


class RunFailed(Exception):
    """The run ended without committing (exit 1); the message says why and where its counters are."""


class RunReports(NamedTuple):
    """What the stages report besides documents: PCollections that `WriteRunReports` writes."""

    files: beam.PCollection  # one dict per segment (ReadSegments.reports) -> files.jsonl
    top_lines: beam.PCollection  # one list [[line, documents], ...] (DedupParagraphs) -> stats.json
    cutoffs: beam.PCollection  # (language, percentiles) pairs (AssignBuckets) -> cutoffs.csv


class WriteRunReports(beam.PTransform):
    """RunReports -> the staging directory's META_DIR: the one place a run writes side files."""

    def __init__(self, staging: str):
        super().__init__()
        self.staging = staging

    def expand(self, reports: RunReports):
        _ = (
            reports.files
            | "FileReportsToJson" >> beam.Map(lambda r: json.dumps(r, ensure_ascii=False, sort_keys=True))
            | "WriteFileReports" >> beam.io.WriteToText(
                meta_path(self.staging, FILES_REPORT), num_shards=1, shard_name_template="")
        )
        _ = reports.top_lines | "WriteTopLines" >> beam.Map(_write_json, meta_path(self.staging, TOP_LINES_FILE))
        return reports.cutoffs | "WriteCutoffs" >> WriteCutoffs(meta_path(self.staging, CUTOFFS_FILE))


def _write_json(data, path: str) -> None:
    write_json(path, data)


@dataclass(frozen=True)
class RunResult:
    """What `run` hands to `commit`: the job's counters and when it ran."""

    counters: dict
    started: datetime
    t0: float  # time.perf_counter() at the start


BuildPipeline = Callable[[beam.Pipeline, CorpusConfig, list, str, str], RunReports]


class CorpusRun:
    """The directories of one `cc100 corpus` run (see the module docstring) and its phases."""

    def __init__(self, config: CorpusConfig, force: bool = False):
        self.config = config
        self.force = force  # --force: run even when the output is up to date
        self.work_dir = config.work
        self.fingerprint = work_fingerprint(config.min_len, config.max_record_bytes)
        self.files: list[str] = []  # the matched --input files (none with --snapshot)
        self.decided: tuple[dict, dict] | None = None  # (config, inputs): compared, then recorded at commit
        self.segments: list[Segment] = []
        self.staging: str | None = None
        self.models = None  # pipeline.quality.perplexity.validate_models' summary

    # -- preflight ------------------------------------------------------------------------------

    def preflight(self) -> bool:
        """Check inputs, output, models and the work directory before anything runs, then claim a
        staging directory and the work directory; True. RunRefused names the first problem;
        False (nothing created) when the output is already up to date."""
        config = self.config
        self.remove_leftovers()  # only what killed runs provably left; the output is not touched
        try:
            self.files = [] if config.snapshot else match_inputs(config.inputs)  # a bad glob comes first
        except CorpusIOError as e:
            raise RunRefused(str(e)) from None
        self.decided = completion(config, self.files)
        if self.up_to_date():
            return False
        work_existed = "://" not in self.work_dir and os.path.isdir(self.work_dir)
        work_state = None
        try:
            check_path_names(config)
            check_output(config.output, config.overwrite)
            self.models = validate_models(config.language.model, config.lm_dir, config.language.langs, config.cutoffs)
            work_state = check_work_dir(self.work_dir, self.fingerprint, config.overwrite)
            self.segments = resolve_segments(config, self.work_dir, self.files)
            self.staging = create_staging(config.output)
        except (CorpusIOError, ModelFileError) as e:
            if work_state == "new":  # e.g. the snapshot listing was fetched into it, then a failure
                clear_work_dir(self.work_dir, remove_dir=not work_existed)
            raise RunRefused(str(e)) from None
        try:
            prepare_work_dir(self.work_dir, self.fingerprint, work_state)
        except Exception as e:  # noqa: BLE001 - unwritable --work-dir
            self.abort()
            raise RunRefused(f"--work-dir {self.work_dir}: cannot write there ({type(e).__name__}: {e})") from None
        return True

    def up_to_date(self) -> bool:
        """True when OUTPUT holds a finished run of the same settings and inputs (its completion
        record, pipeline/contracts.py), so there is nothing to do. Preflight asks once the inputs
        are matched, before it checks or creates anything else."""
        output = self.config.output
        return skip_if_up_to_date(output, "corpus", *self.decided, force=self.force, **up_to_date_hooks(output))

    def remove_leftovers(self) -> None:
        """What killed runs of this stage on this output left (pipeline/utils/leftovers.py): their staging
        directories, and the work directory of a run killed right after its commit (unless this
        run, with --overwrite, resumes from it and removes it at its end)."""
        output = self.config.output
        remove_dead_staging(output)
        if output_problem(output) is not None:  # not this stage's output: none of its leftovers
            return
        stats_path = find_meta(output, STATS_FILE, exists=FileSystems.exists) or meta_path(output, STATS_FILE)
        if not self.config.overwrite and committed_run_left_work_dir(output, stats_path, self.work_dir, WORK_CONFIG):
            LOG.info("removing %s, the work directory of the run committed to %s", self.work_dir, output)
            clear_work_dir(self.work_dir)

    # -- run ------------------------------------------------------------------------------------

    def run(self, build_pipeline: BuildPipeline) -> RunResult:
        """Build the pipeline into the staging directory, add the side reports, run it."""
        config = self.config
        self._log_plan()
        started = datetime.now(timezone.utc)
        t0 = time.perf_counter()
        options = pipeline_options(config)
        prepare_worker_package(options)
        p = beam.Pipeline(runner=make_runner(config, options), options=options)
        reports = build_pipeline(p, config, self.segments, self.staging, self.work_dir)
        _ = reports | "WriteRunReports" >> WriteRunReports(self.staging)
        with segment_progress(self.work_dir, self.segments, LOG.info, every=PROGRESS_EVERY_S):
            result = p.run()
            result.wait_until_finish()
        return RunResult(counters_from_result(result), started, t0)

    def _log_plan(self) -> None:
        config, segments = self.config, self.segments
        source = (f"{len(segments)} segments of {config.snapshot} ({config.segments}) from {redact_url(config.fetch.base_url)}"
                  if config.snapshot else f"{len(segments)} input files")
        LOG.info("%s, dedup %s over %d group(s), runner %s, staging %s",
                 source, config.dedup, self.dedup_groups(), self.runner(), self.staging)
        done = finished_segments(self.work_dir, segments)
        if done:
            LOG.info("work dir %s: %d of %d segments already finished (spooled); only the others are "
                     "downloaded and parsed, dedup and later stages run on all", self.work_dir, done, len(segments))
        else:
            LOG.info("work dir %s", self.work_dir)
        for line in self.models.lines():
            LOG.info("%s", line)

    def runner(self) -> str:
        return self.config.runner or LOCAL_RUNNER

    def dedup_groups(self) -> int:
        return n_dedup_groups(len(self.segments), self.config.dedup_group_size)

    # -- commit ---------------------------------------------------------------------------------

    def commit(self, result: RunResult) -> int:
        """Account for the run (stats.json), check that no stage lost data, then commit: the card
        and stats.json into the staging directory, and the staging directory renamed to OUTPUT.
        With a conservation failure or failed segments nothing is committed and the accounting
        goes to WORK/stats.json instead. Prints the summary; returns the exit code."""
        stats, imbalances = self.account(result)
        if stats["committed"]:
            write_text(FileSystems.join(self.staging, DATASET_CARD), render_card(stats))
            write_json(meta_path(self.staging, STATS_FILE), stats)  # marks the run finished
            # what a later run compares with: the inputs as preflight saw them, before the run read them
            write_completion(self.staging, "corpus", *self.decided)
            commit_output(self.staging, self.config.output, self.config.overwrite)
        else:  # nothing is committed; the spools of the finished segments stay for the re-run
            write_json(self.failed_run_stats(), stats)
            self.abort()
        if imbalances:
            more = f" (and {len(imbalances) - 1} more)" if len(imbalances) > 1 else ""
            raise RunFailed(f"conservation check failed, so {self.config.output} was not written: "
                            f"{imbalances[0].line()}{more}; the counters are in {self.failed_run_stats()}")
        return self.finish(stats)

    def account(self, result: RunResult) -> tuple[dict, list[Imbalance]]:
        """stats.json of this run (read from its staging directory and counters), and what the
        conservation checks found."""
        config = self.config
        reports = read_file_reports(_read_lines(meta_path(self.staging, FILES_REPORT)))
        failed = failed_segments(reports)
        parts = list_parts(self.staging)
        counters = result.counters
        stats = {
            "command": "cc100 corpus",
            "config": config.to_dict(),
            "runner": self.runner(),
            "inputs": self.inputs_record(),
            "output": config.output,
            "work_dir": self.work_dir,
            "dedup_groups": self.dedup_groups(),
            "started": result.started.isoformat(timespec="seconds"),
            "seconds": round(time.perf_counter() - result.t0, 3),
            "segments": segment_sources(reports),
            "failed_segments": failed,
            "counters": counters,
            "counter_help": {k: v for k, v in COUNTER_HELP.items() if k in counters},
            "languages": summarize_counters(counters),
            STATS_TOP_LINES: self._take_top_lines(),
            "partitions": partitions(parts),
            "parts": parts,
            "problem_files": [{"path": r["path"], "problems": r["problems"]}
                              for r in reports if r["problems"] and not r.get("failed")],
        }
        imbalances = check_conservation(counters, parts, len(reports), len(self.segments), config.near_dedup)
        stats["conservation"] = {"failed": [i.to_dict() for i in imbalances]}
        stats["committed"] = not imbalances and (not failed or config.allow_failed_segments)
        return stats, imbalances

    def inputs_record(self) -> dict:
        config = self.config
        names = [s.name for s in self.segments]
        if config.snapshot:
            return {"snapshot": config.snapshot, "segments": config.segments,
                    "cc_base_url": redact_url(config.fetch.base_url), "files": names}
        return {"patterns": config.inputs, "files": names}

    def _take_top_lines(self) -> list:
        """The dedup stage's most duplicated paragraphs, out of the staging directory (they go
        into stats.json)."""
        path = meta_path(self.staging, TOP_LINES_FILE)
        lines = json.loads("\n".join(_read_lines(path)) or "[]")
        if FileSystems.exists(path):
            FileSystems.delete([path])
        return lines

    def finish(self, stats: dict) -> int:
        """After the commit (or not, for failed segments): drop the work directory of a complete
        run, print the summary; 1 when segments failed."""
        config = self.config
        failed = stats["failed_segments"]
        if stats["committed"] and not failed and not config.keep_work:
            clear_work_dir(self.work_dir)
        print(format_summary(stats))
        print()
        print(format_language_table(stats["languages"]))
        if not stats["committed"]:
            n = len(self.segments)
            raise RunFailed(
                f"{len(failed)} of {n} segments failed (listed above), so {config.output} "
                f"was not written; the {n - len(failed)} finished segments are kept in "
                f"{self.work_dir}: re-run the same command to fetch only the missing ones, or add "
                "--allow-failed-segments to write the output without them")
        return 0

    def failed_run_stats(self) -> str:
        return FileSystems.join(self.work_dir, FAILED_RUN_STATS)

    # -- cleanup --------------------------------------------------------------------------------

    def abort(self) -> None:
        """Remove the staging directory (after a failure); the work directory stays for a re-run."""
        if self.staging is not None:
            remove_tree(self.staging)


def completion(config: CorpusConfig, files: list[str]) -> tuple[dict, dict]:
    """(config, inputs) that decide a corpus run (pipeline/contracts.py): the settings, the WET
    files by path, size and time, the LM directory, LID model and cutoffs (on an object store:
    the same through Beam's FileSystems, with the update time for the modification time)."""
    models = {"lm": config.lm_dir, "lid_model": config.language.model, "cutoffs": config.cutoffs}
    inputs = {name: remote_fingerprint(path) if "://" in path else input_fingerprint(path)
              for name, path in models.items() if path}
    if files:
        remote = any("://" in path for path in files)
        inputs["wet"] = remote_stat_fingerprint(files) if remote else stat_fingerprint(files)
    return decisive(config.to_dict(), RUN_ONLY), inputs


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


def _read_lines(path: str) -> list[str]:
    try:
        with FileSystems.open(path, compression_type="uncompressed") as f:
            return f.read().decode("utf-8").splitlines()
    except OSError:
        return []
