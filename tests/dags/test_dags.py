"""The Airflow DAGs: helpers as plain functions, then `airflow dags test` runs of the real DAGs.

The fast `airflow dags test` runs use a fake `cc100` (a script written here, selected with
$CC100_BIN) that records its arguments and writes each stage's completion marker, so wiring,
params, idempotence, retries and failure propagation are checked in seconds. The slow test
runs the real chain on a real WET sample and ends with an exported Hugging Face model.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
DAGS = REPO_ROOT / "dags"
sys.path.insert(0, str(DAGS))

import cc100_stages as st  # noqa: E402

AIRFLOW = Path(sys.executable).parent / "airflow"


# ---------------------------------------------------------------------------------------------
# config and arguments


def cfg(tmp_path: Path, **kw) -> st.PipelineConfig:
    base = dict(work_dir=str(tmp_path / "work"), input_glob="/data/a-*.wet.gz /data/b.wet.gz",
                langs="en,fr", vocab_size=1000, model_config="tiny", max_steps=20)
    return st.PipelineConfig.from_params({**base, **kw})


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
def test_config_rejects_bad_params_naming_the_field(tmp_path, bad, field):
    with pytest.raises(ValueError, match=field):
        cfg(tmp_path, **bad)


def test_params_are_parsed_from_strings_and_lists(tmp_path):
    c = cfg(tmp_path, langs=["de", " fr"], unknown_param=1)
    assert c.langs == ("de", "fr") and c.input_glob == ("/data/a-*.wet.gz", "/data/b.wet.gz")
    assert cfg(tmp_path, langs="en, fr de").langs == ("en", "fr", "de")
    assert cfg(tmp_path, input_glob="/x/{a,b}.gz").input_glob == ("/x/{a,b}.gz",)


def test_segments_split_into_ranges():
    assert st.parse_segments("3,5,10-12") == [3, 5, 10, 11, 12]
    assert st.format_segments([0, 1, 2, 5, 7, 8]) == "0-2,5,7-8"
    assert st.split_segments("0-9", 4) == ["0-3", "4-7", "8-9"]
    assert st.split_segments("1,3-4,9", 2) == ["1,3", "4,9"]
    with pytest.raises(ValueError, match="segments"):
        st.parse_segments("a-b")
    with pytest.raises(ValueError, match="segments.*not 'all'"):
        st.split_segments("all", 10)


def test_stage_arguments_follow_the_cli_contracts(tmp_path):
    c = cfg(tmp_path, stage_args={"pretrain": "--device cpu --lr 1e-3", "vocab": ["--quiet"]},
            beam_options={"project": "p", "use_public_ips": False}, runner="PrismRunner",
            sentences=500)
    lay = st.Layout(Path(c.work_dir))
    corpus = st.corpus_args(c, str(lay.corpus), str(lay.lm))
    assert corpus[:5] == ["corpus", "--input", "/data/a-*.wet.gz", "--input", "/data/b.wet.gz"]
    for flag in (["--lm-dir", str(lay.lm)], ["--langs", "en,fr"], ["--min-len", "300"],
                 ["--runner", "PrismRunner"]):
        assert corpus[corpus.index(flag[0]) + 1] == flag[1]
    assert "--project=p" in corpus and "--no_use_public_ips" in corpus
    assert "--overwrite" not in corpus
    assert "--overwrite" in st.corpus_args(c, "o", None, overwrite=True)
    assert "--lm-dir" not in st.corpus_args(c, "o", None)

    vocab = st.vocab_args(c, lay.corpus, lay.vocab)
    assert vocab[vocab.index("--langs"):][:2] == ["--langs", "en,fr"]
    assert ["--sentences", "500"] == vocab[vocab.index("--sentences"):][:2] and vocab[-1] == "--quiet"
    tok = st.tokenize_args(c, lay.corpus, lay.vocab, lay.shards)
    assert tok[tok.index("--langs"):][:2] == ["--langs", "en,fr"]
    pre = st.pretrain_args(c, lay.shards, lay.vocab, lay.run)
    assert pre[pre.index("--config") + 1] == "tiny" and pre[pre.index("--steps") + 1] == "20"
    assert pre[-4:] == ["--device", "cpu", "--lr", "1e-3"]
    ev = st.evaluate_args(c, lay.model, lay.shards, lay.evaluation)
    assert ev == ["evaluate", str(lay.model), "--shards", str(lay.shards), "--output", str(lay.evaluation)]
    with_tatoeba = st.evaluate_args(replace(c, tatoeba_dir="/data/tatoeba"), lay.model, lay.shards, lay.evaluation)
    assert with_tatoeba[-2:] == ["--tatoeba", "/data/tatoeba"]
    assert st.lm_args(c, lay.lm, ["en", "fr"])[-2:] == ["--langs", "en,fr"]  # comma form
    assert st.export_args(c, lay.run, lay.vocab, lay.model)[2] == str(lay.run / "checkpoint.pt")

    snap = cfg(tmp_path, input_glob="", snapshot="CC-MAIN-2019-30", segments="0-99")
    args = st.corpus_args(snap, "o", None, segments="10-19")
    assert args[1:5] == ["--snapshot", "CC-MAIN-2019-30", "--segments", "10-19"]
    assert "--input" not in args


def test_dataflow_operator_runs_the_same_corpus_job(tmp_path):
    c = cfg(tmp_path, runner="DataflowRunner", gcs_dir="gs://b/cc",
            beam_options={"project": "proj", "region": "europe-west4",
                          "temp_location": "gs://b/tmp"})
    options = st.corpus_options(c, "gs://b/cc/corpus", "gs://b/cc/lm")
    kw = st.dataflow_operator_kwargs(c, options, ["/venv/bin/cc100"])
    assert kw["py_interpreter"] == "/venv/bin/python"
    assert [*kw["py_options"], kw["py_file"]] == ["-m", "cc100.cli", "corpus"]
    assert kw["runner"] == "DataflowRunner" and kw["deferrable"] is False
    po = kw["pipeline_options"]
    assert po["input"] == ["/data/a-*.wet.gz", "/data/b.wet.gz"] and po["output"] == "gs://b/cc/corpus"
    assert po["lm-dir"] == "gs://b/cc/lm" and po["temp_location"] == "gs://b/tmp"
    assert "workers" not in po  # a local-runner flag
    assert kw["dataflow_config"]["project_id"] == "proj"
    assert kw["dataflow_config"]["location"] == "europe-west4"
    kw = st.dataflow_operator_kwargs(c, options, ["/other/python", "-m", "cc100.cli"])
    assert kw["py_interpreter"] == "/other/python"


@pytest.fixture
def airflow_in_process(tmp_path, monkeypatch):
    """Importing airflow writes $AIRFLOW_HOME/airflow.cfg: keep it in tmp, not in ~/airflow."""
    if importlib.util.find_spec("airflow") is None:
        pytest.skip("airflow not installed (pip install -e .[airflow])")
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path / "airflow_home"))
    monkeypatch.setenv("AIRFLOW__CORE__LOAD_EXAMPLES", "False")


def test_dataflow_mode_without_google_provider_fails_clearly(airflow_in_process):
    try:
        import airflow.providers.google  # noqa: F401
        pytest.skip("apache-airflow-providers-google is installed here")
    except ImportError:
        pass
    with pytest.raises(st.StageError, match="apache-airflow-providers-google"):
        st.launch_dataflow({}, context={})


def test_dataflow_corpus_uploads_lm_runs_operator_and_copies_corpus_back(tmp_path, monkeypatch,
                                                                        airflow_in_process):
    """The Dataflow branch with the provider's operator replaced by a fake that "runs" the job
    and gs://bucket mapped onto a local directory (Beam's FileSystems serve both)."""
    bucket = tmp_path / "bucket"
    real_join = st._remote_join
    monkeypatch.setattr(st, "_remote_join", lambda base, *parts: real_join(
        base.replace("gs://bucket", str(bucket)), *parts))
    launched = []

    class FakeOperator:
        def __init__(self, task_id, **kwargs):
            self.kwargs = kwargs

        def execute(self, context):
            launched.append((self.kwargs, context))
            out = Path(self.kwargs["pipeline_options"]["output"])
            (out / "en" / "head").mkdir(parents=True)
            (out / "en" / "head" / "part-00000.parquet").write_text("docs")
            (out / ".cc100").mkdir()
            (out / ".cc100" / "stats.json").write_text("{}")

    fake_beam = type(sys)("fake_beam_operators")
    fake_beam.BeamRunPythonPipelineOperator = FakeOperator
    monkeypatch.setitem(sys.modules, "airflow.providers.google", type(sys)("google"))
    monkeypatch.setitem(sys.modules, "airflow.providers.apache.beam.operators.beam", fake_beam)
    monkeypatch.setenv("CC100_BIN", f"{sys.executable} -m cc100.cli")

    c = cfg(tmp_path, runner="DataflowRunner", gcs_dir="gs://bucket/cc",
            beam_options={"project": "p", "region": "r", "temp_location": "gs://bucket/tmp"})
    lay = st.work_layout(c)  # the lm task claimed the work_dir before
    lay.lm.mkdir(parents=True)
    (lay.lm / "en.sp.model").write_text("sp")
    st.write_json(lay.stamp("lm"), {"key": "lmkey", "status": "done"})
    assert st.corpus_stage(c, str(lay.lm), print, context={"ti": "x"}) == str(lay.corpus)
    (kwargs, context), = launched
    assert context == {"ti": "x"} and kwargs["py_interpreter"] == sys.executable
    assert kwargs["pipeline_options"]["lm-dir"] == str(bucket / "cc" / "lm")
    assert (bucket / "cc" / "lm" / "en.sp.model").read_text() == "sp"  # LM uploaded
    assert (lay.corpus / "en" / "head" / "part-00000.parquet").read_text() == "docs"
    assert (lay.corpus / st.CORPUS_MARKER).is_file()
    assert st.read_json(lay.stamp("corpus"))["status"] == "done"
    st.corpus_stage(c, str(lay.lm), print, context={})
    assert len(launched) == 1  # finished remotely and copied: no second job


# ---------------------------------------------------------------------------------------------
# completion checks


def test_decide_skips_runs_and_guards_changed_output(tmp_path):
    out = tmp_path / "vocab"
    argv, inputs = ["vocab", "--vocab-size", "1000"], {"corpus": "k1"}
    key = st.stage_key(argv, inputs)

    def d(done, exists, stamp, a=argv, i=inputs, rebuild=False):
        return st.decide("vocab", str(out), done, exists, stamp, st.stage_key(a, i), a, i, rebuild)

    assert d(False, False, None).action == "run"
    assert d(True, True, None).action == "skip"  # built outside the DAG: adopted
    done = {"key": key, "status": "done", "argv": argv, "inputs": inputs}
    assert d(True, True, done).action == "skip"
    running = {**done, "status": "running"}
    assert (d(False, True, running).action, d(False, True, running).resume) == ("run", True)
    assert d(False, True, running, a=["vocab", "--vocab-size", "2000"]).action == "rebuild"
    bigger = ["vocab", "--vocab-size", "2000"]
    with pytest.raises(st.StageError, match=r"removed \['1000'\], added \['2000'\].*rebuild_changed"):
        d(True, True, done, a=bigger)
    with pytest.raises(st.StageError, match="input 'corpus' changed"):
        d(True, True, done, i={"corpus": "k2"})
    assert d(True, True, done, a=bigger, rebuild=True).action == "rebuild"
    assert d(False, False, done, a=bigger).action == "run"  # output deleted by hand


def test_lm_retrains_only_changed_or_missing_languages(tmp_path):
    ref, lm = tmp_path / "ref", tmp_path / "lm"
    ref.mkdir()
    lm.mkdir()
    for lang in ("en", "fr", "de"):
        (ref / f"{lang}.txt").write_text(f"{lang} text\n")
    current = st.reference_hashes(ref, ("en", "fr", "de"))
    assert st.lm_to_train(current, {}, lm) == ["de", "en", "fr"]
    for lang in ("en", "fr"):
        for suffix in st.LM_SUFFIXES:
            (lm / f"{lang}{suffix}").write_text("model")
    assert st.lm_to_train(current, current, lm) == ["de"]  # de has no model
    (ref / "fr.txt").write_text("fr changed\n")
    changed = st.reference_hashes(ref, ("en", "fr", "de"))
    assert st.lm_to_train(changed, current, lm) == ["de", "fr"]
    assert set(st.reference_hashes(ref, ())) == {"en", "fr", "de"}  # no langs: every *.txt
    with pytest.raises(st.StageError, match="xx.txt"):
        st.reference_hashes(ref, ("en", "xx"))


def test_run_cc100_streams_output_and_reports_failures(tmp_path):
    lines: list[str] = []
    script = "import sys; print('progress 1'); print('progress 2', flush=True); sys.exit(int(sys.argv[2]))"
    st.run_cc100([sys.executable, "-c", script], ["vocab", "0"], lines.append)
    assert lines[1:] == ["progress 1", "progress 2"]
    with pytest.raises(st.StageError, match=r"`cc100 vocab` failed with exit status 3(.|\n)*progress 2"):
        st.run_cc100([sys.executable, "-c", script], ["vocab", "3"], lines.append)
    with pytest.raises(st.StageError, match="cannot start"):
        st.run_cc100([str(tmp_path / "missing")], ["vocab"], lines.append)


def test_cc100_is_found_through_param_env_or_interpreter(tmp_path, monkeypatch):
    monkeypatch.delenv("CC100_BIN", raising=False)
    beside = Path(sys.executable).parent / "cc100"
    if beside.is_file():
        assert st.resolve_cc100() == [str(beside)]
    monkeypatch.setenv("CC100_BIN", f"{sys.executable} -m cc100.cli")
    assert st.resolve_cc100()[1:] == ["-m", "cc100.cli"]
    assert st.resolve_cc100(sys.executable) == [sys.executable]  # the param wins
    with pytest.raises(st.StageError, match="param cc100_bin"):
        st.resolve_cc100(str(tmp_path / "nope"))


def test_copy_tree_copies_marker_last_and_only_missing_files(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    (src / "en" / "head").mkdir(parents=True)
    (src / "en" / "head" / "part-0.parquet").write_bytes(b"\x1f\x8b not really gzip")
    (src / "stats.json").write_text("{}")
    order: list[str] = []
    assert st.copy_tree(str(src), str(dst), order.append, last="stats.json") == 2
    assert (dst / "en" / "head" / "part-0.parquet").read_bytes() == b"\x1f\x8b not really gzip"
    assert st.copy_tree(str(src), str(dst), order.append, last="stats.json") == 0


def test_merge_links_every_range_once_all_are_finished(tmp_path):
    c = cfg(tmp_path, input_glob="", snapshot="CC-MAIN-2019-30", segments="0-4")
    assert st.plan_ranges(c, 2, 0, print) == ["0-1", "2-3", "4"]
    st.work_layout(c)  # the lm task claimed the work_dir before
    base = st.snapshot_dir(c)
    for r in ("0-1", "2-3"):
        part = base / st.range_slug(r) / "en" / "head" / "part-00000.parquet"
        part.parent.mkdir(parents=True)
        part.write_text(r)
        (base / st.range_slug(r) / st.CORPUS_MARKER).parent.mkdir()
        (base / st.range_slug(r) / st.CORPUS_MARKER).write_text(json.dumps({"docs": 1}))
    assert st.plan_ranges(c, 2, 0, print) == ["4"]
    assert st.merge_ranges(c, 2, print) == ""  # seg-4 missing
    (base / "seg-4" / ".cc100").mkdir(parents=True)
    (base / "seg-4" / st.CORPUS_MARKER).write_text("{}")
    merged = Path(st.merge_ranges(c, 2, print))
    links = sorted(p.name for p in (merged / "en" / "head").iterdir())
    assert links == ["seg-0-1--part-00000.parquet", "seg-2-3--part-00000.parquet"]
    assert (merged / "en" / "head" / links[1]).read_text() == "2-3"
    assert json.loads((merged / "ranges.json").read_text())["ranges"]["0-1"] == {"docs": 1}
    assert st.corpus_marker(merged) == merged / "ranges.json"
    legacy = tmp_path / "legacy-corpus"  # an output of an older cc100: stats.json at the top
    legacy.mkdir()
    (legacy / "stats.json").write_text("{}")
    assert st.corpus_marker(legacy) == legacy / "stats.json"
    before = (merged / "ranges.json").read_text()
    assert st.merge_ranges(c, 2, print) == str(merged)
    assert (merged / "ranges.json").read_text() == before  # unchanged: same corpus key downstream


# ---------------------------------------------------------------------------------------------
# airflow: DagBag and `airflow dags test`

needs_airflow = pytest.mark.skipif(not AIRFLOW.is_file(), reason="airflow not installed "
                                   "(pip install -e .[airflow])")

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
                               "upstream": {t.task_id: sorted(t.upstream_task_ids) for t in dag.tasks}}
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
        "lm": [], "corpus": ["lm"], "vocab": ["corpus"], "tokenize": ["corpus", "vocab"],
        "pretrain": ["tokenize", "vocab"], "export": ["pretrain", "vocab"], "evaluate": ["export"]}
    snapshot = result["dags"]["cc100_snapshot"]["upstream"]
    assert snapshot["corpus_range"] == ["lm", "plan"] and snapshot["merge"] == ["corpus_range"]


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


@needs_airflow
def test_exclusive_sources_fail_the_first_task_with_one_line(airflow_home, tmp_path, fake):
    env, calls = fake
    conf = pipeline_conf(tmp_path, snapshot="CC-MAIN-2019-30")  # and input_glob
    out = check(dags_test(airflow_home, "cc100_pipeline", conf, **env), ok=False)
    assert "invalid params: give exactly one corpus source: input_glob, snapshot" in out
    assert calls() == []  # the lm task failed before running anything, and was not retried


FAKE_CC100 = """\
#!{python}
# A stand-in for `cc100`: records its argv, fails on request, writes each stage's marker.
import json, os, pathlib, sys
argv = sys.argv[1:]
log = os.environ["FAKE_CC100_LOG"]
with open(log, "a") as f:
    f.write(json.dumps(argv) + "\\n")
stage = argv[0]
opt = lambda name: argv[argv.index(name) + 1]
if stage == os.environ.get("FAKE_CC100_FAIL"):
    print(f"fake {{stage}}: out of disk space", file=sys.stderr)
    sys.exit(3)
flag = pathlib.Path(log + ".failed-once")
if stage == os.environ.get("FAKE_CC100_FAIL_ONCE") and not flag.exists():
    flag.touch()
    print(f"fake {{stage}}: HTTP 503 from data.commoncrawl.org", file=sys.stderr)
    sys.exit(4)
out = pathlib.Path(opt("--output"))
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
    (out / ".cc100").mkdir(exist_ok=True)
    (out / ".cc100" / "stats.json").write_text(json.dumps({{"argv": argv}}))
else:
    marker = {{"vocab": "sentencepiece.bpe.model", "tokenize": "manifest.json",
              "pretrain": "hf/config.json", "export": "config.json", "evaluate": "eval.json"}}[stage]
    (out / marker).parent.mkdir(parents=True, exist_ok=True)
    (out / marker).write_text("{{}}")
    if stage == "pretrain":
        (out / "checkpoint.pt").write_text("ckpt")
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
    """(env for the fake cc100, its call log reader)."""
    script = tmp_path / "fake-cc100"
    script.write_text(FAKE_CC100.format(python=sys.executable))
    script.chmod(0o755)
    log = tmp_path / "calls.jsonl"

    def calls() -> list[list[str]]:
        found = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
        log.unlink(missing_ok=True)
        return found

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


@needs_airflow
def test_dag_runs_the_chain_once_then_skips_then_guards_changes(airflow_home, tmp_path, fake):
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
    assert made[2][made[2].index("--corpus") + 1] == str(work / "corpus")  # XCom path
    assert made[4][made[4].index("--config") + 1] == "tiny"
    assert (work / "model" / "config.json").is_file()
    assert made[-1] == ["evaluate", str(work / "model"), "--shards", str(work / "shards"),
                        "--output", str(work / "eval")]  # the export, judged on the held-out shards

    check(dags_test(airflow_home, "cc100_pipeline", conf, **env))
    assert calls() == []  # idempotent: every stage's marker and stamp match

    (tmp_path / "ref" / "fr.txt").write_text("new French reference\n")
    out = check(dags_test(airflow_home, "cc100_pipeline", conf, **env), ok=False)
    assert calls() == [["lm", "--reference", str(tmp_path / "ref"), "--output", str(work / "lm"),
                        "--langs", "fr"]]  # only the changed language is retrained
    assert "input 'lm' changed" in out and "rebuild_changed=true" in out  # stale corpus guarded

    conf.update(rebuild_changed=True, vocab_size=2000)
    check(dags_test(airflow_home, "cc100_pipeline", conf, **env))
    rerun = calls()
    assert [c[0] for c in rerun] == ["corpus", "vocab", "tokenize", "pretrain", "export", "evaluate"]
    assert "--overwrite" in rerun[0] and "2000" in rerun[1]


@needs_airflow
def test_failing_stage_fails_the_dag_run(airflow_home, tmp_path, fake):
    env, calls = fake
    proc = dags_test(airflow_home, "cc100_pipeline", pipeline_conf(tmp_path),
                     FAKE_CC100_FAIL="tokenize", **env)
    out = check(proc, ok=False)
    assert "out of disk space" in out and "`cc100 tokenize` failed with exit status 3" in out
    assert [c[0] for c in calls()] == ["lm", "corpus", "vocab", "tokenize"]  # nothing after it


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
    assert "[export] done" in out and "[evaluate] done" in out
    evaluation = json.loads((tmp_path / "work" / "eval" / "eval.json").read_text())
    assert evaluation["model"]["path"] == str(model) and evaluation["training_languages"] is not None
    # a second run finds every marker and redoes nothing
    again = check(dags_test(airflow_home, "cc100_pipeline", conf, timeout=600))
    assert again.count("skipped:") >= 7 and "running:" not in again


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


# ---------------------------------------------------------------------------------------------
# ownership: the DAGs delete only what the stages (or the DAG itself) wrote


def test_work_dir_holding_other_files_is_refused_and_left_alone(tmp_path):
    c = cfg(tmp_path)
    work = Path(c.work_dir)
    work.mkdir()
    (work / "thesis.tex").write_text("years of work")
    with pytest.raises(st.StageError, match=r"work_dir .*work: not empty and has no \.cc100/stage\.json"):
        st.lm_stage(c, print)
    assert sorted(p.name for p in work.iterdir()) == ["thesis.tex"]


def test_rebuild_deletes_only_an_output_with_the_stages_marker(tmp_path, monkeypatch):
    c = cfg(tmp_path, rebuild_changed=True)
    lay = st.work_layout(c)
    foreign = lay.vocab
    foreign.mkdir()
    (foreign / "sentencepiece.bpe.model").write_text("someone else's")
    (foreign / "notes.txt").write_text("keep me")
    st.write_json(lay.stamp("vocab"), {"key": "old", "status": "done", "argv": [], "inputs": {}})
    st.write_json(lay.stamp("corpus"), {"key": "c", "status": "done"})
    monkeypatch.setattr(st, "run_cc100", lambda *a, **k: pytest.fail("must not run"))
    with pytest.raises(st.StageError, match=r"\[vocab\] not rebuilt: .*vocab: not empty and has no"):
        st.vocab_stage(c, str(lay.corpus), print)
    assert (foreign / "notes.txt").read_text() == "keep me"

    # the vocab stage's own output is replaced; a link inside it is removed, not followed
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious").write_text("x")
    (foreign / "notes.txt").unlink()
    (foreign / "link").symlink_to(outside)
    st.contracts().write_marker(foreign, "vocab")
    ran = []
    monkeypatch.setattr(st, "run_cc100", lambda prefix, argv, log: ran.append(argv) or _fake_vocab(foreign))
    monkeypatch.setattr(st, "resolve_cc100", lambda explicit: ["cc100"])
    st.vocab_stage(c, str(lay.corpus), print)
    assert ran and not (foreign / "link").exists() and (outside / "precious").read_text() == "x"


def _fake_vocab(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "sentencepiece.bpe.model").write_text("new")


def test_rebuild_refuses_an_output_that_is_a_symlink(tmp_path):
    target = tmp_path / "elsewhere"
    target.mkdir()
    st.contracts().write_marker(target, "tokenize")
    (tmp_path / "shards").symlink_to(target)
    with pytest.raises(st.StageError, match="is a symbolic link"):
        st.remove_output(tmp_path / "shards", "tokenize")
    assert st.contracts().read_marker(target)["stage"] == "tokenize"


def test_merged_view_of_an_older_version_is_not_replaced(tmp_path):
    c = cfg(tmp_path, input_glob="", snapshot="CC-MAIN-2019-30", segments="0")
    st.work_layout(c)
    base = st.snapshot_dir(c)
    (base / "seg-0" / st.CORPUS_MARKER).parent.mkdir(parents=True)
    (base / "seg-0" / st.CORPUS_MARKER).write_text("{}")
    (base / "merged").mkdir()
    (base / "merged" / "ranges.json").write_text(json.dumps({"ranges": {"0": "old"}}))
    with pytest.raises(st.StageError, match=r"\[merge\] not rebuilt: .*merged: not empty"):
        st.merge_ranges(c, 1, print)
    assert (base / "merged" / "ranges.json").is_file()
