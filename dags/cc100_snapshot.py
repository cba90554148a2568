"""cc100_snapshot: one Common Crawl snapshot, processed segment range by segment range.

`plan` splits `segments` into ranges of `segments_per_task` and keeps the unfinished ones (at
most `max_tasks` per run); one mapped `corpus_range` task runs `cc100 corpus --snapshot S
--segments A-B` for each into WORK_DIR/snapshots/S/seg-A-B/. A range is finished when its corpus
is complete, so triggering the DAG again (by hand, or on a schedule via the
CC100_SNAPSHOT_SCHEDULE env, e.g. "@daily") continues where the last run stopped: a snapshot can
be spread over days. When every range is done, `merge` links their Parquet files into
WORK_DIR/snapshots/S/merged/ (+ ranges.json): pass that as `corpus_dir` to cc100_pipeline.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pendulum
from airflow.sdk import Param, dag, task

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the helpers beside this file
import cc100_commands as cc  # noqa: E402

CONCURRENCY = int(os.environ.get("CC100_SNAPSHOT_CONCURRENCY", "2"))  # ranges at once per run
SHARED = ("reference_dir", "langs", "workers", "min_len", "dedup", "lid_model", "cutoffs",
          "beam_options", "stage_args", "rebuild_changed", "cc100_bin")
PARAMS = {  # the trigger form asks only for work_dir
    "work_dir": Param(**cc.WORK_DIR_DEFAULT, type="string", minLength=1,
                      description="local directory for lm/ and snapshots/"),
    "snapshot": Param("CC-MAIN-2019-30", type="string", description="CC-MAIN-YYYY-WW"),
    "segments": Param("0-99", type="string", description="all segments to process, e.g. 0-999"),
    "segments_per_task": Param(10, type="integer", minimum=1,
                               description="segments per mapped task (one corpus job each)"),
    "max_tasks": Param(0, type="integer", minimum=0,
                       description="ranges started per DAG run; 0: every unfinished range"),
    **{name: Param(**cc.PARAMS[name]) for name in SHARED},
}


@dag(dag_id="cc100_snapshot", schedule=os.environ.get("CC100_SNAPSHOT_SCHEDULE") or None,
     start_date=pendulum.datetime(2024, 1, 1, tz="UTC"), catchup=False, max_active_runs=1,
     params=PARAMS, tags=["cc100"], doc_md=__doc__)
def cc100_snapshot():
    @task.bash
    def lm(params: dict) -> str:
        """`cc100 lm`: the perplexity models every range scores with, into WORK_DIR/lm. First
        task: it checks the params and fails with one line."""
        return cc.first_command(params, cc.lm_command)

    @task
    def plan(params: dict) -> list[str]:
        """Splits `segments` into ranges of `segments_per_task` and keeps the unfinished ones
        (at most `max_tasks`); one `corpus_range` task is mapped over each."""
        return cc.unfinished_ranges(params)

    @task.bash(**cc.RETRY, max_active_tis_per_dagrun=CONCURRENCY,
               doc_md="`cc100 corpus --snapshot S --segments A-B` into WORK_DIR/snapshots/S/seg-A-B/. "
                      "Retries with a delay (downloads).")  # mapped: no docstring doc
    def corpus_range(segments: str, params: dict) -> str:
        return cc.corpus_command(params, cc.range_dir(params, segments), segments)

    @task(trigger_rule="none_failed")  # also after a run with nothing left to do
    def merge(params: dict) -> str:
        """When every range is done: links their Parquet files into WORK_DIR/snapshots/S/merged/
        (+ ranges.json), a `corpus_dir` for cc100_pipeline."""
        return cc.merge_ranges(params)

    first, ranges = lm(), plan()
    first >> ranges
    first >> corpus_range.expand(segments=ranges) >> merge()


cc100_snapshot()
