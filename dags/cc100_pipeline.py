"""cc100_pipeline: LM -> corpus -> vocab -> tokenize -> pretrain -> export -> evaluate, each a `cc100` command.

Every task builds one `cc100 <stage>` command (cc100_commands.py) and runs it; its output is the
task log. The stages own their idempotence: a re-run over the same params finds every stage
"up to date" and does no work. A branch runs the corpus job here (`cc100 corpus`) or on Dataflow
(BeamRunPythonPipelineOperator, runner=DataflowRunner), or skips it when `corpus_dir` is given.
See docs/airflow.md for the params, re-runs and the Dataflow mode.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pendulum
from airflow.providers.apache.beam.operators import beam
from airflow.sdk import Param, chain, dag, task
from airflow.sdk.exceptions import AirflowFailException

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the helpers beside this file
import cc100_commands as cc  # noqa: E402


class _ProviderCheckAtRunTime(beam.BeamDataflowMixin):
    def __init__(self):  # the provider's own check would refuse to build the task without Google's
        pass


class CorpusOnDataflow(beam.BeamRunPythonPipelineOperator, _ProviderCheckAtRunTime):
    """The provider's operator running `python -m cc100.cli corpus` on Dataflow (cc.dataflow_job),
    with the LM uploaded to gcs_dir/lm before and the corpus copied into work_dir/corpus after.
    Without the Google provider the DAG file still loads; the task says what to install."""

    def render_template_fields(self, context, jinja_env=None) -> None:
        super().render_template_fields(context, jinja_env)
        for name, value in cc.dataflow_job(context["params"]).items():
            setattr(self, name, value)

    def execute(self, context):
        if not beam.GOOGLE_PROVIDER:
            raise AirflowFailException(f"runner={cc.DATAFLOW} needs apache-airflow-providers-google "
                                       "in the Airflow environment; or use runner=DirectRunner")
        p = context["params"]
        if p.get("reference_dir"):
            cc.copy_tree(cc.work(p, "lm"), self.pipeline_options["lm-dir"])
        result = super().execute(context)
        corpus = cc.work(p, "corpus")  # a copy of the job's output, for the local stages
        cc.contracts.remove_owned_tree(corpus, "corpus")
        cc.contracts.claim(corpus, "corpus")
        cc.copy_tree(self.pipeline_options["output"], corpus, last=cc.CORPUS_DONE)
        return result


DOCS = {  # each task's doc (Task Instance -> "Task Docs")
    "vocab": "`cc100 vocab`: SentencePiece unigram vocabulary (`vocab_size`, alpha sampling) into "
             "WORK_DIR/vocab.",
    "tokenize": "`cc100 tokenize`: the corpus -> token shards in WORK_DIR/shards.",
    "pretrain": "`cc100 pretrain`: masked-LM pretraining (`model_config`, `max_steps`) into "
                "WORK_DIR/run; continues an earlier attempt's checkpoint.",
    "export": "`cc100 export`: the checkpoint -> a Hugging Face directory in WORK_DIR/model.",
    "evaluate": "`cc100 evaluate`: the export's held-out masked-LM loss per language against the "
                "unigram baseline, and Tatoeba retrieval when tatoeba_dir is set -> WORK_DIR/eval.",
}


def stage_task(stage: str, **kwargs):
    """A task running the `cc100 STAGE` command that cc100_commands.py builds from the params."""
    build = getattr(cc, f"{stage}_command")

    @task.bash(task_id=stage, doc_md=DOCS[stage], **kwargs)
    def run(params: dict) -> str:
        return build(params)

    return run()


@dag(dag_id="cc100_pipeline", schedule=None, start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
     catchup=False, max_active_runs=1, tags=["cc100"], doc_md=__doc__,
     params={name: Param(**spec) for name, spec in cc.PARAMS.items()})
def cc100_pipeline():
    @task.bash
    def lm(params: dict) -> str:
        """`cc100 lm`: per-language SentencePiece + KenLM models from `reference_dir` into
        WORK_DIR/lm (the stage retrains only what changed). First task: it checks the params
        (exactly one corpus source, ...) and fails with one line, without retries."""
        return cc.first_command(params, cc.lm_command)

    @task.branch
    def choose_corpus(params: dict) -> list[str]:
        """The corpus job here (`corpus`), on Dataflow (`corpus_dataflow`), or none (`corpus_dir`)."""
        if params.get("corpus_dir"):
            if not cc.finished_corpus(cc.local(params["corpus_dir"])):
                raise AirflowFailException(f"corpus_dir {params['corpus_dir']}: not a finished corpus run")
            return []
        return ["corpus_dataflow" if params["runner"] == cc.DATAFLOW else "corpus"]

    @task.bash(**cc.RETRY)  # downloads WET files (snapshot mode)
    def corpus(params: dict) -> str:
        """`cc100 corpus`: WET files (`input_glob`, or `snapshot` + `segments`) -> CCNet documents
        -> WORK_DIR/corpus Parquet. Retries with a delay."""
        return cc.corpus_command(params, cc.work(params, "corpus"))

    dataflow = CorpusOnDataflow(task_id="corpus_dataflow", py_file="corpus", runner=cc.DATAFLOW,
                                py_options=["-m", cc.CLI_MODULE], deferrable=False,
                                doc_md=CorpusOnDataflow.__doc__, **cc.RETRY)

    @task
    def summary(params: dict) -> None:
        """Each stage's output and whether it is complete."""
        print(cc.summary(params))

    corpora = lm() >> choose_corpus() >> [corpus(), dataflow]
    chain(corpora, stage_task("vocab", trigger_rule="none_failed"),  # after either corpus task, or none
          *map(stage_task, ("tokenize", "pretrain", "export", "evaluate")), summary())


cc100_pipeline()
