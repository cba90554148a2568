"""The Airflow DAGs: the commands they build as plain functions, then `airflow dags test` runs.

The DAGs only build `cc100 <stage>` commands; whether a stage has work to do is the stage's
business (tests of skip / rerun / replace decisions are the stages' own). The fast `airflow dags
test` runs use a fake `cc100` (a script written here, selected with $CC100_BIN) that records its
arguments, writes each stage's output with a completion record and, like the real stages, says
"up to date" when asked again for the same output; so wiring, params, retries, the branch and
failure propagation are checked in seconds. The slow tests run the real chain on a real WET sample.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
DAGS = REPO_ROOT / "dags"
sys.path.insert(0, str(DAGS))

import cc100_commands as cc  # noqa: E402
from pipeline import contracts  # noqa: E402

AIRFLOW = Path(sys.executable).parent / "airflow"
needs_airflow = pytest.mark.skipif(not AIRFLOW.is_file(), reason="airflow not installed "
                                   "(pip install -e .[airflow])")


# ---------------------------------------------------------------------------------------------
# params and commands


def params(tmp_path: Path, **kw) -> dict:
    """The DAG's params as a run sees them: the defaults, then a conf."""
    conf = dict(work_dir=str(tmp_path / "work"), input_glob="/data/a-*.wet.gz /data/b.wet.gz",
                langs="en,fr", vocab_size=1000, model_config="tiny", max_steps=20)
    return {**{k: spec.get("default") for k, spec in cc.PARAMS.items()}, **conf, **kw}


def argv(command: str, p: dict) -> list[str]:
    """A task's command line -> its `cc100` arguments (without the cc100 prefix)."""
    words = shlex.split(command)
    prefix = cc.cc100(p)
    assert words[:len(prefix)] == prefix
    return words[len(prefix):]


@pytest.fixture
def airflow_in_process(tmp_path, monkeypatch):
    """Importing airflow writes $AIRFLOW_HOME/airflow.cfg: keep it in tmp, not in ~/airflow."""
    if importlib.util.find_spec("airflow") is None:
        pytest.skip("airflow not installed (pip install -e .[airflow])")
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path / "airflow_home"))
    monkeypatch.setenv("AIRFLOW__CORE__LOAD_EXAMPLES", "False")


def validate(p: dict) -> None:
    """What a run does with its params: the schema (as the API server), then the first task's checks."""
    from airflow.sdk import Param
    from airflow.sdk.definitions.param import ParamsDict

    ParamsDict({k: Param(p[k], **{n: v for n, v in spec.items() if n != "default"})
                for k, spec in cc.PARAMS.items()}).validate()
    cc.check_params(p)


@pytest.mark.parametrize("bad, field", [
    (dict(work_dir=""), "work_dir"),
    (dict(work_dir="gs://bucket/x"), "work_dir"),
    (dict(snapshot="CC-MAIN-2019-30"), "exactly one corpus source"),
    (dict(input_glob="", snapshot="2019-30"), "snapshot"),
    (dict(input_glob="", snapshot="CC-MAIN-2019-30", segments="9-3"), "segments"),
    (dict(vocab_size=0), "vocab_size"),
    (dict(max_steps=True), "max_steps"),
    (dict(alpha=1.5), "alpha"),
    (dict(model_config="huge"), "model_config"),
    (dict(dedup="none"), "dedup"),
    (dict(runner="Direct"), "runner"),
    (dict(runner="DataflowRunner"), "gcs_dir"),
    (dict(langs="en,f r/"), "langs"),
    (dict(stage_args={"train": "--lr 1"}), "stage_args"),
])
def test_bad_params_are_rejected_naming_the_field(tmp_path, airflow_in_process, bad, field):
    validate(params(tmp_path))  # the base is fine
    with pytest.raises(Exception, match=field):
        validate(params(tmp_path, **bad))


def test_params_are_parsed_from_strings_and_lists(tmp_path):
    assert cc.split(["de", " fr"]) == ["de", "fr"] and cc.split("en, fr de") == ["en", "fr", "de"]
    assert cc.split("/x/{a,b}.gz", r"\s+") == ["/x/{a,b}.gz"]
    corpus = argv(cc.corpus_command(params(tmp_path, langs=["de", " fr"]), "o"), {})
    assert corpus[1:5] == ["--input", "/data/a-*.wet.gz", "--input", "/data/b.wet.gz"]
    assert corpus[corpus.index("--langs") + 1] == "de,fr"


def test_segments_split_into_ranges():
    assert contracts.parse_segments("3,5,10-12") == [3, 5, 10, 11, 12]
    assert contracts.format_segments([0, 1, 2, 5, 7, 8]) == "0-2,5,7-8"
    assert cc.split_segments("0-9", 4) == ["0-3", "4-7", "8-9"]
    assert cc.split_segments("1,3-4,9", 2) == ["1,3", "4,9"]
    with pytest.raises(ValueError, match="segments"):
        contracts.parse_segments("a-b")
    with pytest.raises(ValueError, match="segments.*not 'all'"):
        cc.split_segments("all", 10)


def test_stage_commands_follow_the_cli_contracts(tmp_path):
    p = params(tmp_path, stage_args={"pretrain": "--device cpu --lr 1e-3", "vocab": ["--quiet"]},
               beam_options={"project": "p", "use_public_ips": False}, runner="PrismRunner",
               sentences=500, reference_dir="/ref")
    work = tmp_path / "work"
    corpus = argv(cc.corpus_command(p, str(work / "corpus")), p)
    assert corpus[:5] == ["corpus", "--input", "/data/a-*.wet.gz", "--input", "/data/b.wet.gz"]
    for flag in (["--lm-dir", str(work / "lm")], ["--langs", "en,fr"], ["--min-len", "300"],
                 ["--runner", "PrismRunner"], ["--output", str(work / "corpus")]):
        assert corpus[corpus.index(flag[0]) + 1] == flag[1]
    assert "--project=p" in corpus and "--no_use_public_ips" in corpus
    assert "--overwrite" not in corpus
    assert "--overwrite" in argv(cc.corpus_command({**p, "rebuild_changed": True}, "o"), p)
    assert "--lm-dir" not in argv(cc.corpus_command({**p, "reference_dir": None}, "o"), p)
    assert "--runner" not in argv(cc.corpus_command({**p, "runner": "DirectRunner"}, "o"), p)

    vocab = argv(cc.vocab_command(p), p)
    assert vocab[vocab.index("--langs"):][:2] == ["--langs", "en,fr"]
    assert ["--sentences", "500"] == vocab[vocab.index("--sentences"):][:2] and vocab[-1] == "--quiet"
    assert "--sentences" not in argv(cc.vocab_command({**p, "sentences": 0}), p)  # the stage's default
    tok = argv(cc.tokenize_command(p), p)
    assert tok[tok.index("--langs"):][:2] == ["--langs", "en,fr"]
    pre = argv(cc.pretrain_command(p), p)
    assert pre[pre.index("--config") + 1] == "tiny" and pre[pre.index("--steps") + 1] == "20"
    assert pre[-4:] == ["--device", "cpu", "--lr", "1e-3"] and "--resume" not in pre
    (work / "run").mkdir(parents=True)
    (work / "run" / contracts.CHECKPOINT).write_text("ckpt")
    assert "--resume" in argv(cc.pretrain_command(p), p)  # continues an earlier attempt
    assert argv(cc.evaluate_command(p), p) == ["evaluate", str(work / "model"), "--shards",
                                               str(work / "shards"), "--output", str(work / "eval")]
    assert argv(cc.evaluate_command({**p, "tatoeba_dir": "/data/tatoeba"}), p)[-2:] == \
        ["--tatoeba", "/data/tatoeba"]
    assert argv(cc.lm_command(p), p)[-2:] == ["--langs", "en,fr"]  # comma form
    assert argv(cc.export_command(p), p)[2] == str(work / "run" / contracts.CHECKPOINT)
    assert "--lm-dir" not in argv(cc.corpus_command({**p, "reference_dir": None}, "o"), p)

    snap = params(tmp_path, input_glob=None, snapshot="CC-MAIN-2019-30", segments="0-99")
    args = argv(cc.corpus_command(snap, "o", "10-19"), snap)
    assert args[1:5] == ["--snapshot", "CC-MAIN-2019-30", "--segments", "10-19"]
    assert "--input" not in args


def test_relative_paths_become_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the bash tasks run in a temporary directory
    p = params(tmp_path, work_dir="out", input_glob="wet/*.gz", reference_dir="~/ref")
    corpus = argv(cc.corpus_command(p, cc.work(p, "corpus")), p)
    assert corpus[corpus.index("--input") + 1] == str(tmp_path / "wet" / "*.gz")
    assert corpus[corpus.index("--output") + 1] == str(tmp_path / "out" / "corpus")
    assert argv(cc.lm_command(p), p)[2] == os.path.expanduser("~/ref")


def test_cc100_is_found_through_param_env_or_interpreter(tmp_path, monkeypatch):
    monkeypatch.delenv("CC100_BIN", raising=False)
    beside = Path(sys.executable).parent / "cc100"
    if beside.is_file():
        assert cc.cc100({}) == [str(beside)]
    monkeypatch.setenv("CC100_BIN", f"{sys.executable} -m cc100.cli")
    assert cc.cc100({})[1:] == ["-m", "cc100.cli"]
    assert cc.cc100({"cc100_bin": sys.executable}) == [sys.executable]  # the param wins
    with pytest.raises(ValueError, match="param cc100_bin"):
        cc.cc100({"cc100_bin": str(tmp_path / "nope")})


# ---------------------------------------------------------------------------------------------
# the corpus branch: here, on Dataflow, or none


def pipeline_dag():
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS / "cc100_pipeline.py"))
    assert bag.import_errors == {}
    return bag.dags["cc100_pipeline"]


def test_branch_picks_the_beam_operator_for_dataflow_and_the_local_task_otherwise(
        tmp_path, airflow_in_process, monkeypatch):
    from airflow.providers.apache.beam.operators.beam import BeamRunPythonPipelineOperator

    dag = pipeline_dag()
    choose = dag.get_task("choose_corpus")
    assert choose.downstream_task_ids == {"corpus", "corpus_dataflow"}
    assert choose.python_callable(params=params(tmp_path)) == ["corpus"]
    dataflow = params(tmp_path, runner="DataflowRunner", gcs_dir="gs://b/cc/", reference_dir="/ref",
                      beam_options={"project": "proj", "region": "europe-west4"})
    assert choose.python_callable(params=dataflow) == ["corpus_dataflow"]
    ready = tmp_path / "ready"
    with pytest.raises(Exception, match="not a finished corpus run"):
        choose.python_callable(params=params(tmp_path, input_glob=None, corpus_dir=str(ready)))
    contracts.write_marker(ready, "corpus")
    contracts.mark_complete(ready, "corpus", {}, {})
    assert choose.python_callable(params=params(tmp_path, input_glob=None, corpus_dir=str(ready))) == []

    op = dag.get_task("corpus_dataflow")
    assert isinstance(op, BeamRunPythonPipelineOperator) and op.retries == cc.RETRY["retries"]
    script = tmp_path / "venv" / "bin" / "cc100"
    script.parent.mkdir(parents=True)
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    monkeypatch.setenv("CC100_BIN", str(script))
    op.render_template_fields({"params": dataflow})
    assert [op.py_interpreter, *op.py_options, op.py_file] == [str(script.parent / "python"), "-m",
                                                               "cc100.cli", "corpus"]
    assert op.runner == "DataflowRunner" and op.deferrable is False
    assert op.pipeline_options == {  # the job of `make corpus-dataflow` (docs/dataflow.md)
        "input": ["/data/a-*.wet.gz", "/data/b.wet.gz"], "output": "gs://b/cc/corpus",
        "lid-model": f"gs://b/cc/models/{cc.LID_MODEL}", "lm-dir": "gs://b/cc/lm",
        "langs": "en,fr", "min-len": 300, "dedup": "ccnet", "temp_location": "gs://b/cc/tmp",
        "setup_file": str(REPO_ROOT / "setup.py"), "project": "proj", "region": "europe-west4"}
    assert "workers" not in op.pipeline_options  # a local-runner flag
    assert op.dataflow_config == {"job_name": "cc100-corpus-wet", "project_id": "proj",
                                  "location": "europe-west4", "wait_until_finished": True}
    monkeypatch.setenv("CC100_BIN", f"{sys.executable} -m cc100.cli")
    op.render_template_fields({"params": {**dataflow, "snapshot": "CC-MAIN-2019-30", "input_glob": None,
                                          "segments": "0-9", "rebuild_changed": True}})
    assert op.py_interpreter == sys.executable and op.pipeline_options["overwrite"] is True
    assert (op.pipeline_options["snapshot"], op.pipeline_options["segments"]) == ("CC-MAIN-2019-30", "0-9")
    assert op.dataflow_config["job_name"] == "cc100-corpus-cc-main-2019-30"


def test_dataflow_without_the_google_provider_fails_clearly(tmp_path, airflow_in_process, monkeypatch):
    from airflow.providers.apache.beam.operators import beam
    from airflow.sdk.exceptions import AirflowFailException

    if beam.GOOGLE_PROVIDER:
        pytest.skip("apache-airflow-providers-google is installed here")
    op = pipeline_dag().get_task("corpus_dataflow")
    with pytest.raises(AirflowFailException, match="apache-airflow-providers-google"):
        op.execute({"params": params(tmp_path)})


def test_dataflow_task_uploads_lm_runs_the_job_and_copies_the_corpus_back(tmp_path, airflow_in_process,
                                                                          monkeypatch):
    """The operator's job replaced by a fake that writes the corpus, gs://bucket by a local dir."""
    from airflow.providers.apache.beam.operators import beam

    bucket, launched = tmp_path / "bucket", []

    def job(self, context):
        launched.append(context)
        out = Path(self.pipeline_options["output"])
        (out / "en" / "head").mkdir(parents=True)
        (out / "en" / "head" / "part-00000.parquet").write_text("docs")
        contracts.write_marker(out, "corpus")
        (out / cc.CORPUS_DONE).write_text("{}")
        return {"dataflow_job_id": "j1"}

    monkeypatch.setattr(beam, "GOOGLE_PROVIDER", True)
    monkeypatch.setattr(beam.BeamRunPythonPipelineOperator, "execute", job)
    p = params(tmp_path, runner="DataflowRunner", gcs_dir="gs://bucket/cc", reference_dir="/ref",
               beam_options={"project": "p", "region": "r"})
    op = pipeline_dag().get_task("corpus_dataflow")
    op.render_template_fields({"params": p})
    op.pipeline_options.update({"lm-dir": str(bucket / "lm"), "output": str(bucket / "corpus")})
    lm = tmp_path / "work" / "lm"
    lm.mkdir(parents=True)
    (lm / "en.sp.model").write_text("sp")
    assert op.execute({"params": p, "ti": "x"}) == {"dataflow_job_id": "j1"}
    assert launched == [{"params": p, "ti": "x"}]
    assert (bucket / "lm" / "en.sp.model").read_text() == "sp"  # LM uploaded
    corpus = tmp_path / "work" / "corpus"
    assert (corpus / "en" / "head" / "part-00000.parquet").read_text() == "docs"  # copied back
    assert (corpus / cc.CORPUS_DONE).is_file()


def test_copy_tree_copies_the_marker_last_and_only_missing_files(tmp_path, monkeypatch):
    src, dst = tmp_path / "src", tmp_path / "dst"
    (src / "en" / "head").mkdir(parents=True)
    (src / "en" / "head" / "part-0.parquet").write_bytes(b"\x1f\x8b not really gzip")
    (src / "stats.json").write_text("{}")
    assert cc.copy_tree(str(src), str(dst), last="stats.json") == 2
    assert (dst / "en" / "head" / "part-0.parquet").read_bytes() == b"\x1f\x8b not really gzip"
    assert cc.copy_tree(str(src), str(dst), last="stats.json") == 0


# ---------------------------------------------------------------------------------------------
# the snapshot DAG's ranges and merged view


def finish_range(p: dict, segments: str, text: str) -> None:
    out = Path(cc.range_dir(p, segments))
    part = out / "en" / "head" / "part-00000.parquet"
    part.parent.mkdir(parents=True)
    part.write_text(text)
    contracts.write_marker(out, "corpus")
    contracts.mark_complete(out, "corpus", {"docs": 1}, {})


def snapshot_params(tmp_path: Path, **kw) -> dict:
    return {"work_dir": str(tmp_path / "work"), "snapshot": "CC-MAIN-2019-30", "segments": "0-4",
            "segments_per_task": 2, "max_tasks": 0, **kw}


def test_merge_links_every_range_once_all_are_finished(tmp_path):
    p = snapshot_params(tmp_path)
    assert cc.unfinished_ranges(p) == ["0-1", "2-3", "4"]
    assert cc.unfinished_ranges({**p, "max_tasks": 2}) == ["0-1", "2-3"]
    contracts.claim(tmp_path / "work", "dag")  # the lm task claimed the work_dir before
    for r in ("0-1", "2-3"):
        finish_range(p, r, r)
    assert cc.unfinished_ranges(p) == ["4"]
    assert cc.merge_ranges(p) == ""  # seg-4 missing
    finish_range(p, "4", "4")
    merged = Path(cc.merge_ranges(p))
    links = sorted(x.name for x in (merged / "en" / "head").iterdir())
    assert links == ["seg-0-1--part-00000.parquet", "seg-2-3--part-00000.parquet",
                     "seg-4--part-00000.parquet"]
    assert (merged / "en" / "head" / links[1]).read_text() == "2-3"
    assert json.loads((merged / contracts.MERGE_RANGES).read_text())["ranges"]["0-1"]["config"] == {"docs": 1}
    assert cc.finished_corpus(str(merged))
    legacy = tmp_path / "legacy-corpus"  # an output of an older cc100: stats.json at the top
    legacy.mkdir()
    (legacy / "stats.json").write_text("{}")
    assert cc.finished_corpus(str(legacy)) and not cc.finished_corpus(str(tmp_path))
    before = (merged / contracts.MERGE_RANGES).stat().st_mtime_ns
    assert cc.merge_ranges(p) == str(merged)
    assert (merged / contracts.MERGE_RANGES).stat().st_mtime_ns == before  # unchanged: left as it is


def test_merged_view_of_an_older_version_is_not_replaced(tmp_path):
    p = snapshot_params(tmp_path, segments="0", segments_per_task=1)
    finish_range(p, "0", "0")
    merged = tmp_path / "work" / "snapshots" / "CC-MAIN-2019-30" / "merged"
    merged.mkdir()
    (merged / contracts.MERGE_RANGES).write_text(json.dumps({"ranges": {"0": "old"}}))
    with pytest.raises(contracts.OwnershipError, match=r"merged: not empty"):
        cc.merge_ranges(p)
    assert (merged / contracts.MERGE_RANGES).is_file()


def test_work_dir_holding_other_files_is_refused_and_left_alone(tmp_path, airflow_in_process):
    from airflow.sdk.exceptions import AirflowFailException

    p = params(tmp_path)
    work = Path(p["work_dir"])
    work.mkdir()
    (work / "thesis.tex").write_text("years of work")
    with pytest.raises(AirflowFailException, match=r"work_dir .*work: not empty and has no \.cc100/stage\.json"):
        cc.first_command(p, cc.lm_command)
    assert sorted(x.name for x in work.iterdir()) == ["thesis.tex"]


# ---------------------------------------------------------------------------------------------
# airflow: DagBag and `airflow dags test`

# The DAG files must import with neither the Google provider, Beam nor torch present (of the
# project's own modules only the standard-library pipeline/contracts.py, and pipeline/utils/logs.py,
# which the package's __init__ imports).
_IMPORT_CHECK = textwrap.dedent("""
    import importlib.abc, json, sys
    BLOCKED = ("airflow.providers.google", "apache_beam", "torch", "pipeline", "train", "model")
    ALLOWED = ("pipeline", "pipeline.utils", "pipeline.utils.logs", "pipeline.contracts")
    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name in ALLOWED:
                return None
            if any(name == b or name.startswith(b + ".") for b in BLOCKED):
                raise ImportError(f"blocked: {name}", name=name)
    sys.meta_path.insert(0, Block())
    from airflow.dag_processing.dagbag import DagBag
    bag = DagBag(dag_folder=sys.argv[1])
    out = {"errors": {k: str(v) for k, v in bag.import_errors.items()}, "dags": {}}
    for dag_id, dag in bag.dags.items():
        out["dags"][dag_id] = {"params": sorted(dag.params.keys()),
                               "upstream": {t.task_id: sorted(t.upstream_task_ids) for t in dag.tasks},
                               "retries": {t.task_id: t.retries for t in dag.tasks},
                               "kinds": {t.task_id: type(t).__name__ for t in dag.tasks}}
    print("RESULT" + json.dumps(out))
""")


@needs_airflow
def test_dagbag_imports_without_google_beam_or_torch(tmp_path):
    env = {**os.environ, "AIRFLOW_HOME": str(tmp_path), "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
    proc = subprocess.run([sys.executable, "-c", _IMPORT_CHECK, str(DAGS)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.split("RESULT", 1)[1])
    assert result["errors"] == {}
    pipeline = result["dags"]["cc100_pipeline"]
    for name in ("input_glob", "reference_dir", "work_dir", "langs", "vocab_size", "model_config",
                 "max_steps", "snapshot", "segments", "runner", "alpha", "tatoeba_dir"):
        assert name in pipeline["params"]
    assert pipeline["upstream"] == {
        "lm": [], "choose_corpus": ["lm"], "corpus": ["choose_corpus"],
        "corpus_dataflow": ["choose_corpus"], "vocab": ["corpus", "corpus_dataflow"],
        "tokenize": ["vocab"], "pretrain": ["tokenize"], "export": ["pretrain"],
        "evaluate": ["export"], "summary": ["evaluate"]}
    assert pipeline["kinds"]["corpus_dataflow"] == "CorpusOnDataflow"  # a BeamRunPythonPipelineOperator
    assert pipeline["retries"]["corpus"] == pipeline["retries"]["corpus_dataflow"] == 3
    assert pipeline["retries"]["lm"] == pipeline["retries"]["vocab"] == 0
    snapshot = result["dags"]["cc100_snapshot"]
    assert snapshot["upstream"]["corpus_range"] == ["lm", "plan"]
    assert snapshot["upstream"]["merge"] == ["corpus_range"] and snapshot["retries"]["corpus_range"] == 3


# What the Airflow 3 UI's trigger form does with the params (airflow/ui, FlexibleForm): a param
# whose schema has a type without "null" is required, and an empty required field (null, or ""
# for a string) disables the Trigger button. The API then validates the conf it sends (every
# param, untouched ones with their defaults) with ParamsDict.validate() -- as below.
_UI_CHECK = textwrap.dedent("""
    import copy, json, sys
    from airflow.dag_processing.dagbag import DagBag
    bag = DagBag(dag_folder=sys.argv[1])
    out = {"errors": {k: str(v) for k, v in bag.import_errors.items()}, "dags": {}}
    for dag_id, dag in bag.dags.items():
        form, blocked = {}, []
        for name in dag.params:
            param = dag.params.get_param(name)
            kind = param.schema.get("type")
            required = bool(kind) and not (isinstance(kind, list) and "null" in kind)
            value = param.value if param.has_value else None
            if required and value in (None, ""):
                blocked.append(name)
            form[name] = value
        def validates(conf):
            params = copy.deepcopy(dag.params)
            try:
                params.update({**form, **conf})
                params.validate()
                return "ok"
            except Exception as e:
                return str(e)
        inputs = json.loads(sys.argv[2])[dag_id]
        out["dags"][dag_id] = {
            "blocked": blocked, "defaults_plus_inputs": validates(inputs),
            "without_inputs": validates({}),
            "undocumented_tasks": sorted(t.task_id for t in dag.tasks if not t.doc_md)}
    print("RESULT" + json.dumps(out))
""")


@needs_airflow
def test_trigger_form_needs_only_the_inputs_a_user_must_give(tmp_path):
    inputs = {"cc100_pipeline": {"work_dir": "/w", "input_glob": "/data/*.warc.wet.gz"},
              "cc100_snapshot": {"work_dir": "/w"}}
    env = {**os.environ, "AIRFLOW_HOME": str(tmp_path), "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
    env.pop("CC100_WORK_DIR", None)
    proc = subprocess.run([sys.executable, "-c", _UI_CHECK, str(DAGS), json.dumps(inputs)],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.split("RESULT", 1)[1])
    assert result["errors"] == {}
    for dag_id in inputs:
        found = result["dags"][dag_id]
        assert found["blocked"] == ["work_dir"], found  # the one field the form asks for
        assert found["defaults_plus_inputs"] == "ok"
        assert "work_dir" in found["without_inputs"]
        assert found["undocumented_tasks"] == []


FAKE_CC100 = """\
#!{python}
# A stand-in for `cc100`: records its argv, fails on request, writes each stage's output and,
# last, its completion record; asked again for the same output with the same arguments it says
# "up to date" and touches nothing, as the real stages do.
import json, os, pathlib, sys
argv = sys.argv[1:]
stage = argv[0]
opt = lambda name: argv[argv.index(name) + 1]
out = pathlib.Path(opt("--output"))
record = out / ".cc100" / "complete.json"
config = [a for a in argv if a not in ("--resume", "--overwrite")]
up_to_date = record.is_file() and json.loads(record.read_text())["config"]["argv"] == config
with open(os.environ["FAKE_CC100_LOG"], "a") as f:
    f.write(json.dumps({{"argv": argv, "up_to_date": up_to_date}}) + "\\n")
if stage == os.environ.get("FAKE_CC100_FAIL"):
    print(f"fake {{stage}}: out of disk space", file=sys.stderr)
    sys.exit(3)
flag = pathlib.Path(os.environ["FAKE_CC100_LOG"] + ".failed-once")
if stage == os.environ.get("FAKE_CC100_FAIL_ONCE") and not flag.exists():
    flag.touch()
    print(f"fake {{stage}}: HTTP 503 from data.commoncrawl.org", file=sys.stderr)
    sys.exit(4)
if up_to_date:
    print(f"cc100 {{stage}}: up to date ({{out}})")
    sys.exit(0)
(out / ".cc100").mkdir(parents=True, exist_ok=True)  # the stage's marker, as the real ones write it
(out / ".cc100" / "stage.json").write_text(json.dumps({{"stage": stage, "format_version": 1}}))
print(f"fake {{stage}}: writing {{out}}")
if stage == "lm":
    for lang in opt("--langs").split(","):
        (out / f"{{lang}}.sp.model").write_text("sp")
        (out / f"{{lang}}.arpa.bin").write_text("lm")
elif stage == "corpus":
    (out / "en" / "head").mkdir(parents=True, exist_ok=True)
    (out / "en" / "head" / "part-00000.parquet").write_text(" ".join(argv))
else:
    marker = {{"vocab": "sentencepiece.bpe.model", "tokenize": "manifest.json",
              "pretrain": "checkpoint.pt", "export": "config.json", "evaluate": "eval.json"}}[stage]
    (out / marker).write_text("{{}}")
record.write_text(json.dumps({{"stage": stage, "format_version": 1, "config": {{"argv": config}},
                               "inputs": {{}}}}))
"""


@pytest.fixture(scope="module")
def airflow_home(tmp_path_factory):
    """One migrated SQLite metadata DB for this module's `airflow dags test` runs."""
    if not AIRFLOW.is_file():
        pytest.skip("airflow not installed (pip install -e .[airflow])")
    home = tmp_path_factory.mktemp("airflow_home")
    env = airflow_env(home)
    proc = subprocess.run([str(AIRFLOW), "db", "migrate"], env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return home


def airflow_env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "CC100_BIN", "FAKE_"))}
    env.update(AIRFLOW_HOME=str(home), AIRFLOW__CORE__DAGS_FOLDER=str(DAGS),
               AIRFLOW__CORE__LOAD_EXAMPLES="False",
               CC100_DAG_RETRY_DELAY_S="1")
    env.update(extra)
    return env


def dags_test(home: Path, dag_id: str, conf: dict, timeout: int = 600, **env) -> subprocess.CompletedProcess:
    return subprocess.run([str(AIRFLOW), "dags", "test", dag_id, "-c", json.dumps(conf)],
                          env=airflow_env(home, **env), capture_output=True, text=True,
                          timeout=timeout, cwd=home)


@pytest.fixture
def fake(tmp_path):
    """(env for the fake cc100, its call log reader: calls() -> argv lists; calls(True) -> (argv,
    up to date) pairs)."""
    script = tmp_path / "fake-cc100"
    script.write_text(FAKE_CC100.format(python=sys.executable))
    script.chmod(0o755)
    log = tmp_path / "calls.jsonl"

    def calls(with_state: bool = False) -> list:
        found = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
        log.unlink(missing_ok=True)
        return [(c["argv"], c["up_to_date"]) if with_state else c["argv"] for c in found]

    return {"CC100_BIN": str(script), "FAKE_CC100_LOG": str(log)}, calls


def pipeline_conf(tmp_path: Path, **kw) -> dict:
    ref = tmp_path / "ref"
    ref.mkdir(exist_ok=True)
    for lang in ("en", "fr"):
        (ref / f"{lang}.txt").write_text(f"{lang} reference\n")
    return {"work_dir": str(tmp_path / "work"), "input_glob": "/data/CC-*.warc.wet.gz",
            "reference_dir": str(ref), "langs": "en,fr", "vocab_size": 1000,
            "model_config": "tiny", "max_steps": 20, **kw}


def check(proc: subprocess.CompletedProcess, ok: bool = True) -> str:
    out = proc.stdout + proc.stderr
    assert (proc.returncode == 0) == ok, f"exit {proc.returncode}:\n{out[-6000:]}"
    return out


def mtimes(root: Path) -> dict[str, int]:
    return {str(p): p.lstat().st_mtime_ns for p in root.rglob("*")}


@needs_airflow
def test_exclusive_sources_fail_the_first_task_with_one_line(airflow_home, tmp_path, fake):
    env, calls = fake
    conf = pipeline_conf(tmp_path, snapshot="CC-MAIN-2019-30")  # and input_glob
    out = check(dags_test(airflow_home, "cc100_pipeline", conf, **env), ok=False)
    assert "invalid params: give exactly one corpus source: input_glob, snapshot" in out
    assert calls() == []  # the lm task failed before running anything, and was not retried


@needs_airflow
def test_dag_runs_the_chain_then_a_second_run_does_no_work(airflow_home, tmp_path, fake):
    env, calls = fake
    conf = pipeline_conf(tmp_path)
    # the corpus (download) task fails once and is retried (delay shortened by the env)
    out = check(dags_test(airflow_home, "cc100_pipeline", conf, FAKE_CC100_FAIL_ONCE="corpus", **env))
    assert "HTTP 503" in out and "fake export: writing" in out  # stage output in the task log
    assert "cc100 pipeline in " + str(tmp_path / "work") in out  # the summary at the end
    made = calls()
    assert [c[0] for c in made] == ["lm", "corpus", "corpus", "vocab", "tokenize", "pretrain",
                                    "export", "evaluate"]
    del made[1]
    work = tmp_path / "work"
    corpus = made[1]
    assert corpus[corpus.index("--lm-dir") + 1] == str(work / "lm")
    assert corpus[corpus.index("--input") + 1] == "/data/CC-*.warc.wet.gz"
    assert made[2][made[2].index("--corpus") + 1] == str(work / "corpus")
    assert made[4][made[4].index("--config") + 1] == "tiny" and "--resume" not in made[4]
    assert (work / "model" / "config.json").is_file()
    assert made[-1] == ["evaluate", str(work / "model"), "--shards", str(work / "shards"),
                        "--output", str(work / "eval")]  # the export, judged on the held-out shards

    before = mtimes(work)
    out = check(dags_test(airflow_home, "cc100_pipeline", conf, **env))
    again = calls(with_state=True)
    assert [c[0][0] for c in again] == ["lm", "corpus", "vocab", "tokenize", "pretrain", "export",
                                        "evaluate"]
    assert all(up_to_date for _, up_to_date in again), again  # every stage: nothing to do
    assert out.count("up to date (") >= 7 and mtimes(work) == before  # and nothing rewritten
    assert "--resume" in again[4][0]  # the run's checkpoint is there: continue it, never restart

    conf.update(rebuild_changed=True, vocab_size=2000)
    check(dags_test(airflow_home, "cc100_pipeline", conf, **env))
    rerun = calls()
    assert "--overwrite" in rerun[1] and "2000" in rerun[2]  # the stage replaces what changed


@needs_airflow
def test_failing_stage_fails_the_dag_run(airflow_home, tmp_path, fake):
    env, calls = fake
    proc = dags_test(airflow_home, "cc100_pipeline", pipeline_conf(tmp_path),
                     FAKE_CC100_FAIL="tokenize", **env)
    out = check(proc, ok=False)
    assert "out of disk space" in out and "exit code 3" in out
    assert [c[0] for c in calls()] == ["lm", "corpus", "vocab", "tokenize"]  # nothing after it


@needs_airflow
def test_corpus_dir_skips_the_corpus_tasks(airflow_home, tmp_path, fake):
    env, calls = fake
    corpus = tmp_path / "ready"
    contracts.write_marker(corpus, "corpus")
    contracts.mark_complete(corpus, "corpus", {}, {})
    conf = pipeline_conf(tmp_path, input_glob=None, corpus_dir=str(corpus))
    check(dags_test(airflow_home, "cc100_pipeline", conf, **env))
    made = calls()
    assert [c[0] for c in made] == ["lm", "vocab", "tokenize", "pretrain", "export", "evaluate"]
    assert made[1][made[1].index("--corpus") + 1] == str(corpus)


@needs_airflow
def test_dataflow_runner_takes_the_beam_operator_branch(airflow_home, tmp_path, fake):
    from airflow.providers.apache.beam.operators import beam

    if beam.GOOGLE_PROVIDER:
        pytest.skip("apache-airflow-providers-google is installed here: it would submit the job")
    env, calls = fake
    conf = pipeline_conf(tmp_path, runner="DataflowRunner", gcs_dir="gs://b/cc")
    out = check(dags_test(airflow_home, "cc100_pipeline", conf, CC100_DAG_RETRIES="0", **env), ok=False)
    assert "runner=DataflowRunner needs apache-airflow-providers-google" in out  # the operator ran
    assert [c[0] for c in calls()] == ["lm"]  # and the local corpus task did not


@needs_airflow
def test_snapshot_dag_maps_ranges_and_continues_across_runs(airflow_home, tmp_path, fake):
    env, calls = fake
    conf = {"work_dir": str(tmp_path / "work"), "snapshot": "CC-MAIN-2019-30",
            "segments": "0-4", "segments_per_task": 2, "max_tasks": 2}
    check(dags_test(airflow_home, "cc100_snapshot", conf, **env))
    first = calls()
    assert sorted(c[c.index("--segments") + 1] for c in first) == ["0-1", "2-3"]
    merged = tmp_path / "work" / "snapshots" / "CC-MAIN-2019-30" / "merged"
    assert not merged.exists()
    check(dags_test(airflow_home, "cc100_snapshot", conf, **env))
    assert [c[c.index("--segments") + 1] for c in calls()] == ["4"]
    assert json.loads((merged / "ranges.json").read_text())["segments"] == "0-4"
    assert len(list((merged / "en" / "head").iterdir())) == 3


# ---------------------------------------------------------------------------------------------
# the real chain


@needs_airflow
@pytest.mark.slow
def test_real_chain_exports_a_model(airflow_home, tmp_path, shared_data):
    """`airflow dags test cc100_pipeline` on one real WET sample: LM for 2 languages, corpus,
    a 1000-piece vocabulary, a tiny model trained 20 steps, exported for transformers."""
    ref = tmp_path / "reference"
    ref.mkdir()
    for lang in ("en", "fr"):
        (ref / f"{lang}.txt").symlink_to(shared_data / "reference" / f"{lang}.txt")
    conf = {"work_dir": str(tmp_path / "work"),
            "input_glob": str(shared_data / "wet" / "CC-MAIN-2019-30-sample-00000.warc.wet.gz"),
            "reference_dir": str(ref), "langs": "en,fr", "workers": 1, "vocab_size": 1000,
            "sentences": 20000, "model_config": "tiny", "max_steps": 20,
            "stage_args": {"vocab": "--allow-smaller-vocab",
                           "pretrain": "--device cpu --eval-every 0 --checkpoint-every 0"}}
    out = check(dags_test(airflow_home, "cc100_pipeline", conf, timeout=1500, CC100_DAG_RETRIES="0"))
    model = tmp_path / "work" / "model"
    assert json.loads((model / "config.json").read_text())["model_type"] == "xlm-roberta"
    transformers = pytest.importorskip("transformers")
    tok = transformers.AutoTokenizer.from_pretrained(model)
    mlm = transformers.AutoModelForMaskedLM.from_pretrained(model)
    ids = tok("The weather is nice today.", return_tensors="pt")
    assert mlm(**ids).logits.shape[-1] == mlm.config.vocab_size
    assert "complete" in out.split("cc100 pipeline in ", 1)[1]  # the summary
    evaluation = json.loads((tmp_path / "work" / "eval" / "eval.json").read_text())
    assert evaluation["model"]["path"] == str(model) and evaluation["training_languages"] is not None
    # a second run: every stage finds its output up to date and redoes nothing
    before = mtimes(tmp_path / "work")
    again = check(dags_test(airflow_home, "cc100_pipeline", conf, timeout=600))
    assert again.count("up to date (") >= 7, again[-6000:]
    assert mtimes(tmp_path / "work") == before


@needs_airflow
@pytest.mark.slow
def test_real_snapshot_dag_over_a_local_crawl_mirror(airflow_home, tmp_path, shared_data):
    """`airflow dags test cc100_snapshot`: two mapped `cc100 corpus --snapshot` jobs download
    their segment from a local stand-in for data.commoncrawl.org; the merged view links both."""
    pq = pytest.importorskip("pyarrow.parquet")
    from tests.pipeline.ccserver import CCServer, build_crawl_tree

    wet = [shared_data / "wet" / f"CC-MAIN-2019-30-sample-0000{i}.warc.wet.gz" for i in (0, 1)]
    build_crawl_tree(tmp_path / "cc", "CC-MAIN-2019-30", wet)
    with CCServer(tmp_path / "cc") as server:
        conf = {"work_dir": str(tmp_path / "work"), "snapshot": "CC-MAIN-2019-30",
                "segments": "0-1", "segments_per_task": 1, "langs": "en,fr", "workers": 1,
                "stage_args": {"corpus": f"--cc-base-url {server.base_url}"}}
        check(dags_test(airflow_home, "cc100_snapshot", conf, timeout=900, CC100_DAG_RETRIES="0",
                        no_proxy="127.0.0.1", NO_PROXY="127.0.0.1"))
    merged = tmp_path / "work" / "snapshots" / "CC-MAIN-2019-30" / "merged"
    assert sorted(json.loads((merged / "ranges.json").read_text())["ranges"]) == ["0", "1"]
    files = sorted(merged.glob("*/*/*.parquet"))
    assert {f.name.split("--")[0] for f in files} == {"seg-0", "seg-1"}
    assert {f.parent.parent.name for f in files} <= {"en", "fr"}
    assert sum(pq.ParquetFile(f).metadata.num_rows for f in files) > 0
