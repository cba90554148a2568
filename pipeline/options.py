"""`cc100 corpus` options: the argparse flags, the validated `CorpusConfig`, and runner set-up.

Flags this parser does not know are Beam pipeline options (wordcount.py's parse_known_args
pattern), so `--runner DataflowRunner --project ... --region ...` pass straight through.
Later stages add their flags here (one argparse group and the matching config fields).
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field

from apache_beam.options.pipeline_options import (
    DirectOptions,
    PipelineOptions,
    StandardOptions,
    WorkerOptions,
)

from pipeline.dedup import DEDUP_MODES

# The local runner used when no --runner is given. Beam 2.77's DirectRunner first tries the
# Prism runner, which downloads a Go binary from the internet (it fails offline, then falls
# back); the FnApiRunner is the batch engine the DirectRunner falls back to, without that try.
LOCAL_RUNNER = "FnApiRunner"


@dataclass
class CorpusConfig:
    inputs: list[str]  # globs or paths of WET files (any Beam filesystem)
    output: str  # output directory (local path or gs://...)
    workers: int = 1  # local runner parallelism (processes)
    min_len: int = 300  # cc_net: documents with a shorter raw_content are dropped
    dedup: str = "ccnet"  # ccnet | keep-first
    dedup_group_size: int | None = None  # segments per dedup group; None = all input
    docs_per_file: int = 50_000  # upper bound of documents per Parquet file (memory of a writer)
    overwrite: bool = False  # replace an output directory that holds a finished run
    runner: str | None = None  # Beam runner from the pass-through flags; None = LOCAL_RUNNER
    beam_args: list[str] = field(default_factory=list)  # flags passed through to Beam

    def __post_init__(self):
        if not self.inputs or not all(isinstance(p, str) and p for p in self.inputs):
            raise ValueError("inputs: give at least one --input GLOB")
        if not self.output:
            raise ValueError("output: --output DIR is required")
        if self.workers < 1:
            raise ValueError(f"workers: --workers must be >= 1, got {self.workers}")
        if self.min_len < 0:
            raise ValueError(f"min_len: --min-len must be >= 0, got {self.min_len}")
        if self.dedup not in DEDUP_MODES:
            raise ValueError(f"dedup: --dedup must be one of {', '.join(DEDUP_MODES)}, got {self.dedup!r}")
        if self.dedup_group_size is not None and self.dedup_group_size < 1:
            raise ValueError(f"dedup_group_size: --dedup-group-size must be >= 1, got {self.dedup_group_size}")
        if self.docs_per_file < 1:
            raise ValueError(f"docs_per_file: --docs-per-file must be >= 1, got {self.docs_per_file}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cc100 corpus",
        description="Common Crawl WET files -> CCNet documents (paragraph-deduplicated) -> Parquet. "
        "Unknown flags are passed to Apache Beam (e.g. --runner DataflowRunner).",
    )
    parser.add_argument("--input", action="append", required=True, metavar="GLOB", dest="inputs",
                        help="WET files (.warc.wet.gz or plain); repeat for several globs")
    parser.add_argument("--output", required=True, metavar="DIR",
                        help="output directory: {language}/{bucket}/part-*.parquet + stats.json")
    parser.add_argument("--workers", type=int, default=1, metavar="N",
                        help="parallel worker processes of the local runner (default 1)")
    parser.add_argument("--min-len", type=int, default=300, metavar="CHARS",
                        help="drop documents whose text is shorter (default 300, cc_net's value)")
    parser.add_argument("--dedup", choices=DEDUP_MODES, default="ccnet",
                        help="ccnet: a paragraph found in 2+ documents is removed from all of them "
                        "(default); keep-first: keep its first copy by (segment, record)")
    parser.add_argument("--dedup-group-size", type=int, default=None, metavar="N",
                        help="deduplicate within groups of N consecutive input files "
                        "(cc_net uses 50); default: the whole input is one group")
    parser.add_argument("--docs-per-file", type=int, default=50_000, metavar="N",
                        help="at most about N documents per Parquet file (default 50000)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an output directory that holds a finished run")
    parser.add_argument("--verbose", action="store_true",
                        help="log Beam's own messages and re-raise a failure with its traceback")
    return parser


def parse_args(argv: list[str]) -> tuple[CorpusConfig, argparse.Namespace]:
    """argv -> (validated config, the parsed namespace). Raises SystemExit on usage errors."""
    parser = build_parser()
    args, beam_args = parser.parse_known_args(argv)
    unknown = unknown_beam_flags(beam_args)
    if unknown:  # a typo must not be silently discarded by Beam
        parser.error(f"unrecognized arguments (neither cc100 corpus flags nor Beam options): {' '.join(unknown)}")
    runner = PipelineOptions(beam_args).view_as(StandardOptions).runner
    try:
        config = CorpusConfig(
            inputs=args.inputs,
            output=args.output,
            workers=args.workers,
            min_len=args.min_len,
            dedup=args.dedup,
            dedup_group_size=args.dedup_group_size,
            docs_per_file=args.docs_per_file,
            overwrite=args.overwrite,
            runner=runner,
            beam_args=beam_args,
        )
    except ValueError as e:
        parser.error(str(e))
    return config, args


def unknown_beam_flags(beam_args: list[str]) -> list[str]:
    """Flags in `beam_args` that no Beam PipelineOptions class defines."""
    known = set(PipelineOptions([]).get_all_options())
    flags = [a for a in beam_args if a.startswith("--")]
    return [f for f in flags if f[2:].split("=", 1)[0].replace("-", "_") not in known]


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
            harness.sdk_harness_log_level_overrides = {"cc100": "INFO"}
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

    encoded = JobServiceHandle.encode_pipeline_options(options.get_all_options(drop_default=True))
    info = beam_provision_api_pb2.ProvisionInfo(pipeline_options=encoded)
    return fn_runner.FnApiRunner(provision_info=fn_runner.ExtendedProvisionInfo(info))
