"""cc100_snapshot: one Common Crawl snapshot, processed segment range by segment range.

`plan` splits `segments` into ranges of `segments_per_task` and keeps the unfinished ones (at
most `max_tasks` per run); one mapped `corpus_range` task runs `cc100 corpus --snapshot S
--segments A-B` for each into WORK_DIR/snapshots/S/seg-A-B/. A range is finished when its
stats.json exists, so triggering the DAG again (by hand, or on a schedule via the
CC100_SNAPSHOT_SCHEDULE env, e.g. "@daily") continues where the last run stopped: a snapshot can
be spread over days. When every range is done, `merge` links their Parquet files into
WORK_DIR/snapshots/S/merged/ (+ ranges.json): pass that as `corpus_dir` to cc100_pipeline.
"""

from __future__ import annotations

import os
import sys
from datetime import timedelta
from pathlib import Path

import pendulum
from airflow.sdk import Param, dag, get_current_context, task
from airflow.sdk.exceptions import AirflowFailException

# the helpers live beside this file, which may be a subfolder (or symlink) of the dags_folder
_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)
import cc100_stages as st  # noqa: E402

D = st.PipelineConfig
CONCURRENCY = int(os.environ.get("CC100_SNAPSHOT_CONCURRENCY", "2"))  # ranges at once per run

# Optional params are nullable (the Airflow 3 trigger form requires every other one): the form
# asks only for work_dir.
PARAMS = {
    "work_dir": Param(**st.work_dir_default(), type="string", minLength=1,
                      description="local directory for lm/, snapshots/, _dag/"),
    "snapshot": Param("CC-MAIN-2019-30", type="string", description="CC-MAIN-YYYY-WW"),
    "segments": Param(D.segments, type="string", description="all segments to process, e.g. 0-999"),
    "segments_per_task": Param(10, type="integer", minimum=1,
                               description="segments per mapped task (one corpus job each)"),
    "max_tasks": Param(0, type="integer", minimum=0,
                       description="ranges started per DAG run; 0: every unfinished range"),
    "reference_dir": Param(None, type=["null", "string"],
                           description="DIR/{lang}.txt for the perplexity LMs; empty: unscored"),
    "langs": Param(None, type=["null", "string", "array"], description="languages; empty: all"),
    "workers": Param(D.workers, type="integer", minimum=1),
    "min_len": Param(D.min_len, type="integer", minimum=0),
    "dedup": Param(D.dedup, type="string", enum=list(st.DEDUP_MODES)),
    "lid_model": Param(None, type=["null", "string"], description="fastText LID model; empty: "
                       "the corpus stage's default"),
    "cutoffs": Param(None, type=["null", "string"], description="perplexity cutoff CSV; empty: "
                     "computed from the data"),
    "beam_options": Param({}, type="object", description="extra Beam flags of the corpus jobs"),
    "stage_args": Param({}, type="object", description="extra flags, e.g. {\"corpus\": \"...\"}"),
    "rebuild_changed": Param(D.rebuild_changed, type="boolean"),
    "cc100_bin": Param(None, type=["null", "string"], description="the cc100 command; empty: "
                       "$CC100_BIN, then next to the scheduler's python, then PATH"),
}


RANGE_DOC = """`cc100 corpus --snapshot S --segments A-B` into WORK_DIR/snapshots/S/seg-A-B/; done
when its stats.json exists. Retries with a delay (downloads)."""


def _config() -> st.PipelineConfig:
    try:
        return st.PipelineConfig.from_params(get_current_context()["params"])
    except ValueError as e:  # bad params: fail now, one line, no retries
        raise AirflowFailException(f"invalid params: {e}") from None


def _params() -> dict:
    return get_current_context()["params"]


@dag(dag_id="cc100_snapshot", schedule=os.environ.get("CC100_SNAPSHOT_SCHEDULE") or None,
     start_date=pendulum.datetime(2024, 1, 1, tz="UTC"), catchup=False, max_active_runs=1,
     params=PARAMS, tags=["cc100"], doc_md=__doc__)
def cc100_snapshot():
    @task
    def lm() -> str:
        """`cc100 lm`: the perplexity models every range scores with, into WORK_DIR/lm. First
        task: it checks the params and fails with one line."""
        return st.lm_stage(_config())

    @task
    def plan() -> list[str]:
        """Splits `segments` into ranges of `segments_per_task` and keeps the unfinished ones
        (at most `max_tasks`); one `corpus_range` task is mapped over each."""
        p = _params()
        return st.plan_ranges(_config(), int(p["segments_per_task"]), int(p["max_tasks"]))

    @task(retries=st.RETRIES, retry_delay=timedelta(seconds=st.RETRY_DELAY_S),
          retry_exponential_backoff=2.0, max_retry_delay=timedelta(hours=2),
          max_active_tis_per_dagrun=CONCURRENCY, doc_md=RANGE_DOC)  # mapped: no docstring doc
    def corpus_range(segments: str, lm_dir: str) -> str:
        return st.range_stage(_config(), segments, lm_dir)

    @task(trigger_rule="none_failed")  # also after a run with nothing left to do
    def merge() -> str:
        """When every range is done: links their Parquet files into WORK_DIR/snapshots/S/merged/
        (+ ranges.json), a `corpus_dir` for cc100_pipeline."""
        return st.merge_ranges(_config(), int(_params()["segments_per_task"]))

    lm_dir = lm()
    ranges = plan()
    lm_dir >> ranges
    corpus_range.partial(lm_dir=lm_dir).expand(segments=ranges) >> merge()


cc100_snapshot()
