"""`cc100 corpus`: WET files -> documents -> CCNet paragraph dedup -> per-language Parquet.

    cc100 corpus --input GLOB [--input GLOB ...] --output DIR [--workers N] [--min-len 300]
                 [--dedup ccnet|keep-first] [--dedup-group-size N] [--overwrite] [Beam flags]

`main` checks inputs and output before anything runs, builds the chain of stages
(`build_pipeline`), runs it on the local FnApiRunner (or the --runner given), then writes
stats.json and commits the staging directory to --output by rename.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from datetime import datetime, timezone


class _DropImportNoise(logging.Filter):
    """Beam logs a warning at import time when the optional GCP client (apitools) is absent."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("apitools not found")


logging.getLogger().addFilter(_DropImportNoise())

import apache_beam as beam  # noqa: E402
from apache_beam.io.filesystems import FileSystems  # noqa: E402

from pipeline.dedup import DedupParagraphs  # noqa: E402
from pipeline.io import (  # noqa: E402
    FILES_REPORT,
    STATS_FILE,
    CorpusIOError,
    ReadWet,
    WriteByLanguage,
    check_output,
    commit_output,
    create_staging,
    list_parts,
    match_inputs,
    remove_tree,
)
from pipeline.options import LOCAL_RUNNER, CorpusConfig, make_runner, parse_args, pipeline_options  # noqa: E402
from pipeline.stats import COUNTER_HELP, counters_from_result, format_summary, partitions, read_file_reports  # noqa: E402

LOG = logging.getLogger("cc100.corpus")


def build_pipeline(p: beam.Pipeline, config: CorpusConfig, files: list[str], root: str) -> None:
    """The chain of stages; each is one labelled composite transform."""
    metadata = {"stage": "corpus", "config": config.to_dict()}
    docs = p | "ReadWet" >> ReadWet(files, config.min_len, report_path=FileSystems.join(root, FILES_REPORT))
    docs = docs | "DedupParagraphs" >> DedupParagraphs(files, config.dedup, config.dedup_group_size)
    # Language identification (pipeline/lid.py) and perplexity buckets (pipeline/perplexity.py)
    # go here: docs = docs | "IdentifyLanguage" >> ... | "ScorePerplexity" >> ...
    _ = docs | "WriteByLanguage" >> WriteByLanguage(root, metadata, config.docs_per_file)


def n_dedup_groups(n_files: int, group_size: int | None) -> int:
    return -(-n_files // group_size) if group_size else 1


def _setup_logging(verbose: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
    ours = logging.getLogger("cc100")
    ours.handlers[:] = [handler]
    ours.setLevel(logging.INFO)
    ours.propagate = False
    logging.getLogger().setLevel(logging.INFO if verbose else logging.WARNING)
    # Worker processes print their own log lines; the runner's copy of each is a duplicate.
    relay = logging.getLogger("apache_beam.runners.portability.local_job_service")
    relay.setLevel(logging.NOTSET if verbose else logging.ERROR)


def _read_text(path: str) -> list[str]:
    try:
        with FileSystems.open(path, compression_type="uncompressed") as f:
            return f.read().decode("utf-8").splitlines()
    except OSError:
        return []


def _write_json(path: str, data: dict) -> None:
    with FileSystems.create(path) as f:
        f.write(json.dumps(data, indent=2, ensure_ascii=False).encode("utf-8") + b"\n")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        config, args = parse_args(argv)
    except SystemExit as e:  # argparse printed usage or help
        return int(e.code or 0)
    _setup_logging(args.verbose)
    try:
        files = match_inputs(config.inputs)
        check_output(config.output, config.overwrite)
        staging = create_staging(config.output)
    except CorpusIOError as e:
        print(f"cc100 corpus: {e}", file=sys.stderr)
        return 2

    runner = config.runner or LOCAL_RUNNER
    groups = n_dedup_groups(len(files), config.dedup_group_size)
    LOG.info("%d input files, dedup %s over %d group(s), runner %s, staging %s",
             len(files), config.dedup, groups, runner, staging)
    started = datetime.now(timezone.utc)
    t0 = time.perf_counter()
    try:
        options = pipeline_options(config)
        p = beam.Pipeline(runner=make_runner(config, options), options=options)
        build_pipeline(p, config, files, staging)
        result = p.run()
        result.wait_until_finish()
        counters = counters_from_result(result)
        reports = read_file_reports(_read_text(FileSystems.join(staging, FILES_REPORT)))
        parts = list_parts(staging)
        stats = {
            "command": "cc100 corpus",
            "config": config.to_dict(),
            "runner": runner,
            "inputs": {"patterns": config.inputs, "files": files},
            "output": config.output,
            "dedup_groups": groups,
            "started": started.isoformat(timespec="seconds"),
            "seconds": round(time.perf_counter() - t0, 3),
            "counters": counters,
            "counter_help": {k: v for k, v in COUNTER_HELP.items() if k in counters},
            "partitions": partitions(parts),
            "parts": parts,
            "problem_files": [{"path": r["path"], "problems": r["problems"]} for r in reports if r["problems"]],
        }
        _write_json(FileSystems.join(staging, STATS_FILE), stats)  # last: marks the run finished
        commit_output(staging, config.output, config.overwrite)
    except (Exception, KeyboardInterrupt) as e:  # noqa: BLE001 - one readable line, no worker traceback
        remove_tree(staging)
        first_line = (str(e).strip().splitlines() or [""])[0][:500]
        print(f"cc100 corpus: failed: {type(e).__name__}: {first_line}", file=sys.stderr)
        if args.verbose:
            raise
        return 1
    print(format_summary(stats))
    return 0


if __name__ == "__main__":
    sys.exit(main())
