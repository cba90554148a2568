"""What can be proven here about the corpus job on Dataflow (no Google Cloud, no apache-beam[gcp]).

* Options: a DataflowRunner command line builds PipelineOptions that Beam's own validator (run by
  `beam.Pipeline`) accepts, and rejects without project/region/temp_location; our pre-flight
  refuses local paths and the machine-local default LID model before anything starts.
* Job graph: `build_pipeline` on a Pipeline whose runner is DataflowRunner, submitted with
  `--dry_run`, goes through DataflowRunner.run_pipeline itself: its graph rewrites, the runner-API
  proto with a Docker environment, Beam's stager building the --setup_file package (setup.py's
  worker sdist), pre-optimisation. Only `apiclient` (the Dataflow REST client, which imports
  google-auth from the gcp extra) is replaced by a stub recording the job.
* Filesystems: the whole job - inputs, models, work-dir spools, staging, output, cutoffs,
  stats - runs on `memfs://`, an in-memory Beam FileSystem with gs:// semantics (no directories,
  rename = copy + delete). Any open()/os.path on a data path would fail there.

Not proven: the job submission request, GCS itself, worker start-up (pip install of the sdist).
"""

from __future__ import annotations

import hashlib
import io
import json
import sys
import tarfile
import threading
import time
import types
from pathlib import Path

import apache_beam as beam
import pyarrow.parquet as pq
import pytest
from apache_beam.io.filesystem import BeamIOError, CompressedFile, CompressionTypes, FileMetadata, FileSystem
from apache_beam.io.filesystems import FileSystems

from pipeline.corpus_run import WriteRunReports
from pipeline.corpus import build_pipeline, main
from pipeline.options import WORKER_SDIST_ENV, parse_args, pipeline_options
from pipeline.readers.segments import resolve_download_cache, snapshot_segments

REPO = Path(__file__).resolve().parents[2]
DATAFLOW_FLAGS = ["--runner", "DataflowRunner", "--project", "my-project-123", "--region", "europe-west4",
                  "--temp_location", "gs://my-bucket/tmp"]


# -- an in-memory filesystem with gs:// semantics ----------------------------------------------


class _Written(io.BytesIO):
    mode = "wb"

    def __init__(self, store: "MemFileSystem", path: str):
        super().__init__()
        self.store, self.path = store, path

    def close(self):
        if not self.closed:
            with MemFileSystem.lock:
                MemFileSystem.files[self.path] = (self.getvalue(), time.time())
        super().close()


class MemFileSystem(FileSystem):
    """`memfs://...`: a dict of objects, listed by prefix like GCS (has_dirs False)."""

    files: dict[str, tuple[bytes, float]] = {}
    lock = threading.Lock()
    PREFIX = "memfs://"

    @classmethod
    def scheme(cls):
        return "memfs"

    def join(self, basepath, *paths):
        path = basepath
        for p in paths:
            path = path.rstrip("/") + "/" + p.lstrip("/")
        return path

    def split(self, path):
        head, _, tail = path[len(self.PREFIX):].rpartition("/")
        return self.PREFIX + head, tail

    def mkdirs(self, path):
        pass

    def has_dirs(self):
        return False

    def _list(self, prefix):
        with self.lock:
            items = sorted(self.files.items())
        for path, (data, updated) in items:
            if path.startswith(prefix):
                yield FileMetadata(path, len(data), updated)

    def _open(self, path, mode, compression_type):
        compression_type = FileSystem._get_compression_type(path, compression_type)
        if mode == "wb":
            raw = _Written(self, path)
        else:
            with self.lock:
                if path not in self.files:
                    raise FileNotFoundError(path)
                raw = io.BytesIO(self.files[path][0])
                raw.mode = "rb"
        return raw if compression_type == CompressionTypes.UNCOMPRESSED else CompressedFile(raw, compression_type)

    def create(self, path, mime_type="application/octet-stream", compression_type=CompressionTypes.AUTO):
        return self._open(path, "wb", compression_type)

    def open(self, path, mime_type="application/octet-stream", compression_type=CompressionTypes.AUTO):
        return self._open(path, "rb", compression_type)

    def copy(self, sources, destinations):
        with self.lock:
            missing = {s: FileNotFoundError(s) for s in sources if s not in self.files}
            if missing:
                raise BeamIOError("Copy operation failed", missing)
            for s, d in zip(sources, destinations):
                self.files[d] = (self.files[s][0], time.time())

    def rename(self, sources, destinations):
        self.copy(sources, destinations)
        self.delete(sources)

    def exists(self, path):
        with self.lock:
            return path in self.files

    def size(self, path):
        return len(self.files[path][0])

    def last_updated(self, path):
        return self.files[path][1]

    def checksum(self, path):
        return hashlib.sha1(self.files[path][0]).hexdigest()

    def metadata(self, path):
        return FileMetadata(path, self.size(path), self.last_updated(path))

    def delete(self, paths):
        for path in paths:  # like GCS: a "directory" path matches no object, deletes nothing
            targets = [m.path for m in self.match([path + "*" if path.endswith("/") else path])[0].metadata_list]
            with self.lock:
                for target in targets:
                    self.files.pop(target, None)


def put(path: str, data: bytes) -> None:
    with FileSystems.create(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
        f.write(data)


def get(path: str) -> bytes:
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
        return f.read()


def listing(prefix: str) -> list[str]:
    return sorted(p for p in MemFileSystem.files if p.startswith(prefix))


def test_memfs_behaves_like_an_object_store():
    put("memfs://t/a/b.txt", b"x")
    assert FileSystems.exists("memfs://t/a/b.txt") and not FileSystems.exists("memfs://t/a")
    assert [m.path for m in FileSystems.match(["memfs://t/*/*.txt"])[0].metadata_list] == ["memfs://t/a/b.txt"]
    FileSystems.rename(["memfs://t/a/b.txt"], ["memfs://t/c.txt"])
    assert listing("memfs://t/") == ["memfs://t/c.txt"] and get("memfs://t/c.txt") == b"x"
    FileSystems.delete(["memfs://t/c.txt"])
    assert listing("memfs://t/") == []


# -- options ------------------------------------------------------------------------------------


def _dataflow_argv(**paths) -> list[str]:
    flags = {"--snapshot": "CC-MAIN-2019-30", "--segments": "0-9", "--output": "memfs://bucket/corpus",
             "--lid-model": "memfs://bucket/models/lid.176.ftz", "--lm-dir": "memfs://bucket/lm", **paths}
    return [x for k, v in flags.items() if v is not None for x in (k, v)] + DATAFLOW_FLAGS


def test_dataflow_options_build_and_validate():
    config, _ = parse_args(_dataflow_argv() + ["--setup_file", str(REPO / "setup.py"),
                                               "--max_num_workers", "20", "--no_use_public_ips"])
    assert config.runner == "DataflowRunner" and config.work == "memfs://bucket/corpus.work"
    options = pipeline_options(config)
    from apache_beam.options.pipeline_options import GoogleCloudOptions, SetupOptions, WorkerOptions

    cloud = options.view_as(GoogleCloudOptions)
    assert (cloud.project, cloud.region, cloud.temp_location) == ("my-project-123", "europe-west4", "gs://my-bucket/tmp")
    assert options.view_as(SetupOptions).setup_file == str(REPO / "setup.py")
    assert options.view_as(WorkerOptions).max_num_workers == 20
    p = beam.Pipeline(options=options)  # Beam's PipelineOptionsValidator for DataflowRunner runs here
    assert type(p.runner).__name__ == "DataflowRunner"
    for missing, message in [("--project", "Missing required option: project"),
                             ("--region", "Missing required option: region"),
                             ("--temp_location", "Missing GCS path option: temp_location")]:
        i = DATAFLOW_FLAGS.index(missing)
        argv = _dataflow_argv()[: -len(DATAFLOW_FLAGS)] + DATAFLOW_FLAGS[:i] + DATAFLOW_FLAGS[i + 2:]
        config, _ = parse_args(argv)
        with pytest.raises(ValueError, match=message):
            beam.Pipeline(options=pipeline_options(config))


@pytest.mark.parametrize("flags, message", [
    ({"--lid-model": None}, "DataflowRunner needs --lid-model gs://"),
    ({"--output": "/tmp/corpus"}, "--output /tmp/corpus is a local path, which DataflowRunner workers cannot"),
    ({"--lm-dir": "out/lm"}, "--lm-dir out/lm is a local path"),
    ({"--work-dir": "/tmp/work"}, "--work-dir /tmp/work is a local path"),
])
def test_dataflow_refuses_local_paths_before_anything_starts(tmp_path, capsys, monkeypatch, flags, message):
    monkeypatch.chdir(tmp_path)
    assert main(_dataflow_argv(**flags)) == 2
    assert message in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_download_cache_is_the_workers_own_disk_when_the_work_dir_is_remote(tmp_path):
    import tempfile

    assert resolve_download_cache(None, "gs://b/out.work") == str(Path(tempfile.gettempdir()) / "cc100-downloads")
    assert resolve_download_cache(None, str(tmp_path)) == str(tmp_path / "downloads")
    assert resolve_download_cache("/mnt/ssd", "gs://b/w") == "/mnt/ssd"
    with pytest.raises(SystemExit):
        parse_args(["--input", "x", "--output", "o", "--download-cache", "gs://b/cache"])


# -- the job graph for DataflowRunner -------------------------------------------------------------


class _StubJob:
    def __init__(self, options, proto_pipeline):
        self.options, self.proto = options, proto_pipeline


@pytest.fixture
def stub_dataflow_client(monkeypatch):
    """Stand-in for apiclient (needs google-auth): the image name and a Job that records the proto."""
    stub = types.ModuleType("apache_beam.runners.dataflow.internal.apiclient")
    stub.get_container_image_from_options = lambda options: (
        f"apache/beam_python{sys.version_info[0]}.{sys.version_info[1]}_sdk:{beam.__version__}")
    stub.Job = _StubJob
    monkeypatch.setitem(sys.modules, "apache_beam.runners.dataflow.internal.apiclient", stub)
    monkeypatch.setenv(WORKER_SDIST_ENV, "0")  # restored (unset) after the test


@pytest.mark.slow
def test_job_graph_translates_for_dataflow_with_the_worker_package(stub_dataflow_client, tmp_path, monkeypatch):
    from apache_beam.options.pipeline_options import SetupOptions
    from apache_beam.portability import common_urns
    from apache_beam.portability.api import beam_runner_api_pb2

    from pipeline.options import prepare_worker_package

    config, _ = parse_args(_dataflow_argv() + ["--setup_file", str(REPO / "setup.py"), "--dry_run=True"])
    options = pipeline_options(config)
    prepare_worker_package(options)  # what main does before p.run()
    p = beam.Pipeline(options=options)
    wet = [f"crawl-data/CC-MAIN-2019-30/segments/1563195523840.{i:02d}/wet/CC-MAIN-20190715-{i:05d}.warc.wet.gz"
           for i in range(10)]
    staging = "memfs://bucket/corpus.tmp-test"
    _ = build_pipeline(p, config, snapshot_segments(wet), staging, config.work) | WriteRunReports(staging)
    result = p.run()  # DataflowRunner.run_pipeline up to the (stubbed) job; --dry_run: not submitted
    assert result.state == "DONE"
    proto = result.job.proto
    names = {t.unique_name for t in proto.components.transforms.values()}
    for stage in ("ReadSegments/SpreadSegments", "ReadSegments/ProcessSegments", "DedupParagraphs/JoinBlocksWithLosses",
                  "IdentifyLanguage/Predict", "ScorePerplexity/Score", "AssignBuckets/ComputeCutoffs",
                  "WriteByLanguage/WriteParquet", "WriteRunReports/WriteFileReports"):
        assert any(n == stage or n.startswith(stage + "/") for n in names), stage
    for pcoll in proto.components.pcollections.values():
        assert pcoll.coder_id in proto.components.coders
    (env,) = {t.environment_id for t in proto.components.transforms.values() if t.environment_id}
    environment = proto.components.environments[env]
    assert environment.urn == common_urns.environments.DOCKER.urn
    image = beam_runner_api_pb2.DockerPayload.FromString(environment.payload).container_image
    assert image == f"apache/beam_python{sys.version_info[0]}.{sys.version_info[1]}_sdk:{beam.__version__}"

    staged = {}
    for dep in environment.dependencies:
        role = beam_runner_api_pb2.ArtifactStagingToRolePayload.FromString(dep.role_payload)
        staged[role.staged_name] = beam_runner_api_pb2.ArtifactFilePayload.FromString(dep.type_payload).path
    assert "workflow.tar.gz" in staged, staged  # Beam's name for the --setup_file package
    with tarfile.open(staged["workflow.tar.gz"]) as tar:
        members = tar.getnames()
        pkg_info = tar.extractfile(next(m for m in members if m.endswith("/PKG-INFO") and m.count("/") == 1)).read().decode()
    assert any(m.endswith("/pipeline/readers/segments.py") for m in members)
    assert any(m.endswith("/pipeline/quality/lid.py") for m in members) and not any("/train/" in m for m in members)
    assert "Name: cc100-pipeline" in pkg_info
    requires = [line.split(": ", 1)[1] for line in pkg_info.splitlines() if line.startswith("Requires-Dist: ")]
    assert "kenlm==0.3.0" in requires and "fasttext-numpy2==0.10.4" in requires
    assert not any(r.startswith(("torch", "transformers")) for r in requires)  # training only
    assert options.view_as(SetupOptions).setup_file == str(REPO / "setup.py")


def test_worker_requirements_match_the_project_pins():
    import tomllib

    pins = {}
    for dep in tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]:
        name = dep.split("=")[0].split("<")[0].split(">")[0].strip()
        pins[name] = dep.replace(" ", "")
    ns: dict = {}
    source = (REPO / "setup.py").read_text()
    start = source.index("WORKER_REQUIREMENTS = [")
    exec(source[start: source.index("]", start) + 1], ns)  # the list literal only, not setup()
    for requirement in ns["WORKER_REQUIREMENTS"]:
        name = requirement.split("=")[0].split("<")[0].split(">")[0]
        assert pins[name] == requirement.replace(" ", ""), name


# -- the whole job on an object store -------------------------------------------------------------


@pytest.fixture(scope="module")
def it_model(shared_data, tmp_path_factory, kenlm_tools):
    """An Italian SentencePiece + KenLM model from `cc100 lm` (the training runs locally)."""
    from pipeline.quality import lm

    out = tmp_path_factory.mktemp("lm_it")
    assert lm.main(["--reference", str(shared_data / "reference"), "--output", str(out), "--langs", "it",
                    "--workers", "1", "--memory", "128M"]) == 0
    return out


@pytest.mark.slow
def test_whole_job_runs_on_an_object_store_and_resumes_from_remote_spools(shared_data, it_model, tmp_path, monkeypatch, capsys):
    from pipeline.quality.lid import default_lid_model

    monkeypatch.chdir(tmp_path)  # anything written to a local path "memfs:/..." would land here
    samples = sorted((shared_data / "wet").glob("CC-MAIN-2019-30-sample-*.warc.wet.gz"))
    for f in samples:
        put(f"memfs://bucket/wet/{f.name}", f.read_bytes())
    put("memfs://bucket/models/lid.176.ftz", Path(default_lid_model()).read_bytes())
    for f in (f for f in it_model.iterdir() if f.is_file()):  # not the .cc100/ marker directory
        put(f"memfs://bucket/lm/{f.name}", f.read_bytes())

    argv = ["--input", "memfs://bucket/wet/*.warc.wet.gz", "--output", "memfs://bucket/corpus",
            "--lid-model", "memfs://bucket/models/lid.176.ftz", "--lm-dir", "memfs://bucket/lm"]
    assert main(argv + ["--keep-work"]) == 0, capsys.readouterr().err
    first = {p: get(p) for p in listing("memfs://bucket/corpus/")}
    stats = json.loads(first["memfs://bucket/corpus/.cc100/stats.json"])
    assert stats["counters"]["segments_spooled"] == 2 and stats["segments"] == {"spool": 0, "download": 0, "file": 2, "failed": 0}
    parts = [p for p in first if p.endswith(".parquet")]
    assert len(parts) == len(stats["parts"]) > 10
    assert {"memfs://bucket/corpus/it/head", "memfs://bucket/corpus/en/all"} <= {p.rsplit("/", 1)[0] for p in parts}
    assert "memfs://bucket/corpus/.cc100/cutoffs.csv" in first and "memfs://bucket/corpus/.cc100/files.jsonl" in first
    assert b"\nconfigs:\n" in first["memfs://bucket/corpus/README.md"]  # the dataset card
    assert len(listing("memfs://bucket/corpus.work/segments/")) == 2 and not listing("memfs://bucket/corpus.tmp-")
    rows = sum(pq.read_table(io.BytesIO(first[p])).num_rows for p in parts)
    assert rows == stats["counters"]["documents_out"] > 300

    assert main(argv) == 0  # the same run again: up to date, nothing written
    assert "cc100 corpus: up to date (memfs://bucket/corpus)" in capsys.readouterr().out
    assert {p: get(p) for p in listing("memfs://bucket/corpus/")} == first
    assert main(argv + ["--min-len", "250"]) == 2  # other settings: refused without --overwrite
    assert "not up to date (config min_len: 300 -> 250)" in capsys.readouterr().out

    assert main(argv + ["--force"]) == 0  # re-run: both segments from the remote spools
    again = {p: get(p) for p in listing("memfs://bucket/corpus/")}
    stats2 = json.loads(again["memfs://bucket/corpus/.cc100/stats.json"])
    assert stats2["segments"]["spool"] == 2 and stats2["counters"].get("segments_parsed", 0) == 0
    assert sorted(again) == sorted(first)
    for p in parts:
        assert pq.read_table(io.BytesIO(again[p])).equals(pq.read_table(io.BytesIO(first[p]))), p
    assert again["memfs://bucket/corpus/.cc100/cutoffs.csv"] == first["memfs://bucket/corpus/.cc100/cutoffs.csv"]
    assert not listing("memfs://bucket/corpus.work/")  # removed after the complete run
    assert list(tmp_path.iterdir()) == []  # nothing touched the local disk under a memfs: path
