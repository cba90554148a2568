"""cc100_pipeline: LM -> corpus -> vocab -> tokenize -> pretrain -> export -> evaluate, each a `cc100` command.

Every task runs one stage of the project's CLI (cc100_stages.py builds its arguments and
decides whether it has to run), streams the stage's output into the task log and returns the
path it made (XCom carries paths only). A finished stage is skipped on a re-run; see
docs/airflow.md for the params, idempotence and the Dataflow mode.

The LM task comes first although CCNet calls it a side branch: the corpus job scores documents
with those models (`--lm-dir`), so the corpus depends on it. It retrains only the languages
whose reference text changed or whose models are missing.
"""

from __future__ import annotations

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

D = st.PipelineConfig  # defaults of the params are the config's
RETRY = dict(retries=st.RETRIES, retry_delay=timedelta(seconds=st.RETRY_DELAY_S),
             retry_exponential_backoff=2.0, max_retry_delay=timedelta(hours=2))

# The trigger form (Airflow 3 UI) treats a param whose type does not include "null" as required:
# optional params are nullable with a null default, and only work_dir must be typed in (plus one
# corpus source: input_glob, snapshot or corpus_dir; the first task checks the combination).
PARAMS = {
    "work_dir": Param(**st.work_dir_default(), type="string", minLength=1, description="local "
                      "directory for every stage's output (lm/, corpus/, vocab/, shards/, run/, "
                      "model/, _dag/ stamps)"),
    "input_glob": Param(None, type=["null", "string", "array"], description="WET files: globs "
                        "separated by spaces (or a list); or leave empty and give snapshot or "
                        "corpus_dir"),
    "snapshot": Param(None, type=["null", "string"], description="CC-MAIN-YYYY-WW: download and "
                      "process these segments of a Common Crawl snapshot"),
    "segments": Param(D.segments, type="string", description="segments of the snapshot, "
                      "e.g. 0-99 or 3,5,10-12"),
    "corpus_dir": Param(None, type=["null", "string"], description="an existing finished corpus "
                        "(stats.json, or a cc100_snapshot merged view): skips the corpus job"),
    "reference_dir": Param(None, type=["null", "string"], description="DIR/{lang}.txt reference "
                           "text for the perplexity LMs; empty: no perplexity buckets"),
    "langs": Param(None, type=["null", "string", "array"], description="languages, e.g. en,fr,de; "
                   "empty: all"),
    "runner": Param(D.runner, type="string", enum=["DirectRunner", "PrismRunner", st.DATAFLOW],
                    description="Beam runner of the corpus job; DataflowRunner needs "
                    "apache-airflow-providers-google and gcs_dir"),
    "beam_options": Param({}, type="object", description="extra Beam flags, e.g. {\"project\": "
                          "\"p\", \"region\": \"europe-west4\", \"temp_location\": \"gs://b/tmp\"}"),
    "gcs_dir": Param(None, type=["null", "string"], description="Dataflow mode: gs:// prefix for the "
                     "uploaded LM and the corpus output (copied back into work_dir/corpus)"),
    "workers": Param(D.workers, type="integer", minimum=1, description="local processes of the "
                     "corpus and tokenize stages"),
    "min_len": Param(D.min_len, type="integer", minimum=0),
    "dedup": Param(D.dedup, type="string", enum=list(st.DEDUP_MODES)),
    "lid_model": Param(None, type=["null", "string"], description="fastText LID model; empty: the "
                       "corpus stage's default"),
    "cutoffs": Param(None, type=["null", "string"], description="perplexity cutoff CSV; empty: default"),
    "vocab_size": Param(D.vocab_size, type="integer", minimum=8),
    "alpha": Param(D.alpha, type="number", minimum=0, maximum=1,
                   description="language sampling exponent of vocab and pretrain"),
    "sentences": Param(D.sentences, type="integer", minimum=0,
                       description="lines sampled for the vocabulary; 0: the stage's default"),
    "seed": Param(D.seed, type="integer", minimum=0),
    "model_config": Param(D.model_config, type="string", enum=list(st.MODEL_CONFIGS)),
    "max_steps": Param(D.max_steps, type="integer", minimum=1),
    "batch_tokens": Param(D.batch_tokens, type="integer", minimum=0, description="0: preset's"),
    "max_len": Param(D.max_len, type="integer", minimum=0, description="0: preset's"),
    "stage_args": Param({}, type="object", description="extra flags per stage, e.g. "
                        "{\"pretrain\": \"--device cuda --lr 3e-4\"}"),
    "rebuild_changed": Param(D.rebuild_changed, type="boolean", description="rebuild a finished "
                             "stage whose settings or inputs changed (else the task fails)"),
    "tatoeba_dir": Param(None, type=["null", "string"], description="Tatoeba test set (LASER layout, "
                         "e.g. shared/data/eval/tatoeba_laser_xtreme36) for the evaluate task; empty: "
                         "held-out masked-LM loss only"),
    "cc100_bin": Param(None, type=["null", "string"], description="the cc100 command; empty: "
                       "$CC100_BIN, then next to the scheduler's python, then PATH"),
}


def _config() -> st.PipelineConfig:
    try:
        return st.PipelineConfig.from_params(get_current_context()["params"])
    except ValueError as e:  # a bad combination of params: fail now, one line, no retries
        raise AirflowFailException(f"invalid params: {e}") from None


@dag(dag_id="cc100_pipeline", schedule=None, start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
     catchup=False, max_active_runs=1, params=PARAMS, tags=["cc100"], doc_md=__doc__)
def cc100_pipeline():
    @task
    def lm() -> str:
        """`cc100 lm`: per-language SentencePiece + KenLM models from `reference_dir` into
        WORK_DIR/lm (only languages whose reference text changed or whose models are missing).
        First task: it checks the params (exactly one corpus source, ...) and fails with one line."""
        return st.lm_stage(_config())

    @task(**RETRY)  # downloads WET files (snapshot mode) or runs a remote Dataflow job
    def corpus(lm_dir: str) -> str:
        """`cc100 corpus`: WET files (`input_glob`, or `snapshot` + `segments`) -> CCNet documents
        -> WORK_DIR/corpus Parquet; skipped when `corpus_dir` is given. Retries with a delay."""
        return st.corpus_stage(_config(), lm_dir, context=get_current_context())

    @task
    def vocab(corpus_dir: str) -> str:
        """`cc100 vocab`: SentencePiece unigram vocabulary (`vocab_size`, alpha sampling) into
        WORK_DIR/vocab."""
        return st.vocab_stage(_config(), corpus_dir)

    @task
    def tokenize(corpus_dir: str, vocab_dir: str) -> str:
        """`cc100 tokenize`: the corpus -> token shards in WORK_DIR/shards."""
        return st.tokenize_stage(_config(), corpus_dir, vocab_dir)

    @task
    def pretrain(shards: str, vocab_dir: str) -> str:
        """`cc100 pretrain`: masked-LM pretraining (`model_config`, `max_steps`) into WORK_DIR/run."""
        return st.pretrain_stage(_config(), shards, vocab_dir)

    @task
    def export(run_dir: str, vocab_dir: str) -> str:
        """`cc100 export`: the checkpoint -> a Hugging Face directory in WORK_DIR/model."""
        return st.export_stage(_config(), run_dir, vocab_dir)

    @task
    def evaluate(model_dir: str) -> str:
        """`cc100 evaluate`: the export's held-out masked-LM loss per language against the unigram
        baseline, and Tatoeba retrieval when tatoeba_dir is set -> WORK_DIR/eval/eval.json."""
        return st.evaluate_stage(_config(), model_dir)

    corpus_dir = corpus(lm())
    vocab_dir = vocab(corpus_dir)
    evaluate(export(pretrain(tokenize(corpus_dir, vocab_dir), vocab_dir), vocab_dir))


cc100_pipeline()
