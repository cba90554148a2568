"""What the cc100 DAGs share: params -> config, `cc100` argument lists, completion checks.

The DAG files only wire tasks to these functions, and every stage runs through the project's
own CLI (`cc100 lm|corpus|vocab|tokenize|pretrain|export|evaluate`), so a DAG never re-implements a
stage and the Airflow environment needs neither torch nor Beam (only the `cc100` executable,
found through the `cc100_bin` param, $CC100_BIN, the interpreter's bin/ or PATH).

Ownership: the work_dir carries the DAGs' marker (work_dir/.cc100/stage.json, pipeline/contracts.py)
and a stage's output is deleted for a rebuild only when it carries that stage's marker, so a
work_dir pointed at a directory holding anything else is refused, never emptied.

Idempotence: a stage is done when its completion marker exists (stats.json, the LM files,
sentencepiece.bpe.model, manifest.json, hf/config.json). Next to that the DAG keeps a small
stamp per stage in WORK_DIR/_dag/{stage}.json with the key of what built it (the argument
list plus the keys of the stages it read). A finished stage with the same key is skipped;
one whose settings or inputs changed is rebuilt only when the `rebuild_changed` param says
so, and otherwise fails with a message saying what changed (no silent reuse of stale output,
no silent deletion either). The LM stage is finer: it retrains only the languages whose
reference text changed (content hashes stored next to the models) or whose models are missing.

No Airflow import at module level: this file is plain Python, unit-tested without a scheduler.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path

from pipeline.contracts import META_DIR, STATS_FILE, find_meta, part_files

Log = Callable[[str], None]

# completion markers, as the stages' contracts define them
CORPUS_MARKER = f"{META_DIR}/{STATS_FILE}"  # .cc100/stats.json (pipeline/contracts.py)
RANGES_MARKER = "ranges.json"  # a merged view written by the cc100_snapshot DAG
VOCAB_MODEL = "sentencepiece.bpe.model"
SHARDS_MARKER = "manifest.json"
HF_CONFIG = "config.json"
EVAL_JSON = "eval.json"  # train/evaluate.py EVAL_JSON
CHECKPOINT = "checkpoint.pt"
LM_SUFFIXES = (".sp.model", ".arpa.bin")
REFERENCE_HASHES = "reference.sha256.json"  # next to the LM models: {lang: sha256 of {lang}.txt}

MODEL_CONFIGS = ("tiny", "small", "base", "large")
DEDUP_MODES = ("ccnet", "keep-first")
DATAFLOW = "DataflowRunner"
STAGES = ("lm", "corpus", "vocab", "tokenize", "pretrain", "export", "evaluate")

# retries of the download-heavy tasks; env overrides (read when the DAG file is parsed) let a
# test or a small deployment shorten them
RETRIES = int(os.environ.get("CC100_DAG_RETRIES", "3"))
RETRY_DELAY_S = float(os.environ.get("CC100_DAG_RETRY_DELAY_S", "600"))


def work_dir_default() -> dict:
    """Param kwargs of `work_dir`: $CC100_WORK_DIR as the default when set, else no default, so
    the trigger form asks for it (a scheduled DAG needs the env: Airflow refuses required params
    without a default there)."""
    value = os.environ.get("CC100_WORK_DIR", "")
    return {"default": value} if value else {}


class StageError(RuntimeError):
    """A stage could not run or failed; the message names the stage and says what to do."""


# ---------------------------------------------------------------------------------------------
# config


def split_list(value) -> tuple[str, ...]:
    """'en,fr de' or ['en', 'fr'] -> ('en', 'fr', 'de'); None/'' -> ()."""
    if value is None:
        return ()
    items = value if isinstance(value, (list, tuple)) else re.split(r"[,\s]+", str(value))
    return tuple(str(x).strip() for x in items if str(x).strip())


def split_globs(value) -> tuple[str, ...]:
    """Globs are separated by whitespace or newlines only ({a,b} braces keep their commas)."""
    if value is None:
        return ()
    items = value if isinstance(value, (list, tuple)) else str(value).split()
    return tuple(str(x).strip() for x in items if str(x).strip())


def _stage_args(value) -> dict[str, tuple[str, ...]]:
    """{"pretrain": "--lr 1e-3"} or {"pretrain": ["--lr", "1e-3"]} -> {stage: argv tuple}."""
    if not value:
        return {}
    if not isinstance(value, Mapping):
        raise ValueError(f"stage_args must be a mapping stage -> extra flags, got {value!r}")
    out = {}
    for stage, extra in value.items():
        if stage not in STAGES:
            raise ValueError(f"stage_args: unknown stage {stage!r} (stages: {', '.join(STAGES)})")
        out[stage] = tuple(shlex.split(extra) if isinstance(extra, str) else map(str, extra))
    return out


def _check_int(obj, name: str, low: int) -> None:
    value = getattr(obj, name)
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")


@dataclass(frozen=True)
class PipelineConfig:
    """The cc100_pipeline DAG's params, checked once at the start of every task."""

    work_dir: str
    input_glob: tuple[str, ...] = ()  # WET files; or snapshot + segments; or corpus_dir
    snapshot: str = ""  # CC-MAIN-YYYY-WW: the corpus job downloads the segments itself
    segments: str = "0-99"
    corpus_dir: str = ""  # an existing corpus (e.g. the cc100_snapshot DAG's merged view)
    reference_dir: str = ""  # DIR/{lang}.txt for the LM; "" = no perplexity scoring
    langs: tuple[str, ...] = ()  # () = every language
    runner: str = "DirectRunner"  # or DataflowRunner (needs apache-airflow-providers-google)
    beam_options: dict = field(default_factory=dict)  # extra Beam flags (project, region, ...)
    gcs_dir: str = ""  # Dataflow mode: gs:// prefix for the LM upload and the corpus output
    workers: int = 2
    min_len: int = 300
    dedup: str = "ccnet"
    lid_model: str = ""
    cutoffs: str = ""
    vocab_size: int = 250_000
    alpha: float = 0.3
    sentences: int = 0  # 0 = the vocab stage's default
    seed: int = 0
    model_config: str = "base"
    max_steps: int = 100_000
    batch_tokens: int = 0  # 0 = the preset's
    max_len: int = 0  # 0 = the preset's
    stage_args: dict = field(default_factory=dict)  # extra flags per stage
    rebuild_changed: bool = False
    cc100_bin: str = ""
    tatoeba_dir: str = ""  # Tatoeba test set (LASER layout) for the evaluate task; "" = MLM loss only

    def __post_init__(self):
        if not self.work_dir or not isinstance(self.work_dir, str):
            raise ValueError("work_dir is required: the directory for every stage's output")
        if "://" in self.work_dir:
            raise ValueError(f"work_dir must be a local path, got {self.work_dir!r} "
                             "(in Dataflow mode put the GCS prefix in gcs_dir)")
        sources = [bool(self.input_glob), bool(self.snapshot), bool(self.corpus_dir)]
        if sum(sources) != 1:
            raise ValueError("give exactly one corpus source: input_glob, snapshot (+ segments) "
                             f"or corpus_dir (got input_glob={list(self.input_glob)}, "
                             f"snapshot={self.snapshot!r}, corpus_dir={self.corpus_dir!r})")
        if self.snapshot and not re.fullmatch(r"CC-MAIN-\d{4}-\d{2}", self.snapshot):
            raise ValueError(f"snapshot must look like CC-MAIN-YYYY-WW, got {self.snapshot!r}")
        if self.snapshot and self.segments != "all":
            parse_segments(self.segments)  # ValueError naming `segments`
        if not re.fullmatch(r"\w+Runner", self.runner or ""):
            raise ValueError(f"runner must be a Beam runner name such as DirectRunner or "
                             f"DataflowRunner, got {self.runner!r}")
        if self.runner == DATAFLOW:
            if not self.gcs_dir.startswith("gs://"):
                raise ValueError(f"gcs_dir must be a gs:// prefix when runner is {DATAFLOW}, "
                                 f"got {self.gcs_dir!r}")
            if self.corpus_dir:
                raise ValueError(f"corpus_dir and runner={DATAFLOW} exclude each other")
        if not isinstance(self.beam_options, Mapping):
            raise ValueError(f"beam_options must be a mapping of Beam flags, got {self.beam_options!r}")
        for lang in self.langs:
            if not re.fullmatch(r"[A-Za-z0-9_-]+", lang):
                raise ValueError(f"langs: bad language code {lang!r}")
        for name, low in (("workers", 1), ("min_len", 0), ("vocab_size", 8), ("sentences", 0),
                          ("seed", 0), ("max_steps", 1), ("batch_tokens", 0), ("max_len", 0)):
            _check_int(self, name, low)
        if self.dedup not in DEDUP_MODES:
            raise ValueError(f"dedup must be one of {', '.join(DEDUP_MODES)}, got {self.dedup!r}")
        if isinstance(self.alpha, bool) or not isinstance(self.alpha, (int, float)) \
                or not 0 <= self.alpha <= 1:
            raise ValueError(f"alpha must be a number in [0, 1], got {self.alpha!r}")
        if self.model_config not in MODEL_CONFIGS:
            raise ValueError(f"model_config must be one of {', '.join(MODEL_CONFIGS)}, "
                             f"got {self.model_config!r}")
        _stage_args(self.stage_args)

    @classmethod
    def from_params(cls, params: Mapping) -> PipelineConfig:
        """DAG params (strings from the UI or `-c` JSON) -> validated config; unknown keys ignored."""
        names = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in dict(params).items() if k in names and v is not None}
        kwargs["input_glob"] = split_globs(kwargs.get("input_glob"))
        kwargs["langs"] = split_list(kwargs.get("langs"))
        for key in ("work_dir", "corpus_dir", "reference_dir", "lid_model", "cutoffs", "cc100_bin", "tatoeba_dir"):
            if kwargs.get(key):
                kwargs[key] = os.path.expanduser(str(kwargs[key]))
        return cls(**kwargs)

    def extra(self, stage: str) -> list[str]:
        return list(_stage_args(self.stage_args).get(stage, ()))


@dataclass(frozen=True)
class Layout:
    """Where each stage writes, under WORK_DIR."""

    work_dir: Path

    lm = property(lambda self: self.work_dir / "lm")
    corpus = property(lambda self: self.work_dir / "corpus")
    vocab = property(lambda self: self.work_dir / "vocab")
    shards = property(lambda self: self.work_dir / "shards")
    run = property(lambda self: self.work_dir / "run")
    model = property(lambda self: self.work_dir / "model")
    evaluation = property(lambda self: self.work_dir / "eval")
    stamps = property(lambda self: self.work_dir / "_dag")

    def stamp(self, stage: str) -> Path:
        return self.stamps / f"{stage}.json"


def contracts():
    """pipeline/contracts.py (standard library only: markers, ownership, safe removal), loaded when
    a task runs, not when the DAG file is parsed; from the repository beside dags/ when the
    project is not installed in Airflow's environment."""
    try:
        from pipeline import contracts as module
    except ImportError:
        path = Path(__file__).resolve().parents[1] / "pipeline" / "contracts.py"
        module = sys.modules.get("cc100_contracts")
        if module is None:
            spec = importlib.util.spec_from_file_location("cc100_contracts", path)
            module = importlib.util.module_from_spec(spec)
            sys.modules["cc100_contracts"] = module
            spec.loader.exec_module(module)
    return module


def claim_dir(path: Path, stage: str, what: str) -> None:
    """Create `path` for `stage` (new, empty or its own), else StageError naming it."""
    c = contracts()
    try:
        c.claim(path, stage)
    except c.OwnershipError as e:
        raise StageError(f"{what} {e}") from None


def work_layout(cfg: PipelineConfig) -> Layout:
    """The work_dir's Layout, once the work_dir is proven the DAGs' own (new, empty, or marked
    by an earlier run: pipeline/contracts.py); StageError naming it otherwise."""
    claim_dir(Path(cfg.work_dir), "dag", "work_dir")
    return Layout(Path(cfg.work_dir))


def remove_output(path: Path, stage: str) -> None:
    """Delete a stage's output before rebuilding it: only with that stage's marker, never through
    a symbolic link (StageError naming the directory otherwise)."""
    c = contracts()
    try:
        c.remove_owned_tree(path, stage)
    except c.OwnershipError as e:
        raise StageError(f"[{stage}] not rebuilt: {e}") from None


def parse_segments(spec: str) -> list[int]:
    """'0-99' or '3,5,10-12' -> sorted unique segment indices (ValueError naming `segments`)."""
    out: set[int] = set()
    for part in str(spec).replace(" ", "").split(","):
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if not m or (m[2] is not None and int(m[2]) < int(m[1])):
            raise ValueError(f"segments must look like '0-99' or '3,5,10-12', got {spec!r}")
        out.update(range(int(m[1]), int(m[2] or m[1]) + 1))
    return sorted(out)


def format_segments(indices: Iterable[int]) -> str:
    """[0, 1, 2, 5, 7, 8] -> '0-2,5,7-8' (the inverse of parse_segments)."""
    runs: list[list[int]] = []
    for i in sorted(set(indices)):
        if runs and i == runs[-1][1] + 1:
            runs[-1][1] = i
        else:
            runs.append([i, i])
    return ",".join(f"{a}" if a == b else f"{a}-{b}" for a, b in runs)


def split_segments(spec: str, per_task: int) -> list[str]:
    """Segment spec -> consecutive chunks of `per_task` segments, each as a spec string."""
    if per_task < 1:
        raise ValueError(f"segments_per_task must be >= 1, got {per_task}")
    if spec.strip() == "all":
        raise ValueError("segments: the snapshot DAG needs explicit numbers (e.g. 0-999), not 'all'")
    idx = parse_segments(spec)
    return [format_segments(idx[i:i + per_task]) for i in range(0, len(idx), per_task)]


# ---------------------------------------------------------------------------------------------
# argument lists (one per stage; the CLI contracts are in README "Pipeline stages")


def _langs_flag(langs: Iterable[str]) -> list[str]:
    langs = tuple(langs)
    return ["--langs", ",".join(langs)] if langs else []


def lm_args(cfg: PipelineConfig, output: Path, langs: Iterable[str]) -> list[str]:
    return ["lm", "--reference", cfg.reference_dir, "--output", str(output),
            *_langs_flag(langs), *cfg.extra("lm")]


def beam_flags(options: Mapping) -> list[str]:
    """{"project": "p", "use_public_ips": False} -> ["--project=p", "--no_use_public_ips"]."""
    out = []
    for key, value in options.items():
        if isinstance(value, bool):
            out.append(f"--{key}" if value else f"--no_{key}")
        elif isinstance(value, (list, tuple)):
            out.extend(f"--{key}={v}" for v in value)
        else:
            out.append(f"--{key}={value}")
    return out


def corpus_options(cfg: PipelineConfig, output: str, lm_dir: str | None,
                   segments: str | None = None) -> dict:
    """The corpus job's own flags as {flag: value} (a list value = a repeated flag).

    Shared by the local command line and the Dataflow operator's pipeline_options, so both
    modes run the same job. `segments` overrides cfg.segments (one range of a snapshot).
    """
    opts: dict = {}
    if cfg.snapshot:
        opts["snapshot"] = cfg.snapshot
        opts["segments"] = segments or cfg.segments
    else:
        opts["input"] = list(cfg.input_glob)
    opts["output"] = output
    opts["min-len"] = cfg.min_len
    opts["dedup"] = cfg.dedup
    if cfg.runner != DATAFLOW:
        opts["workers"] = cfg.workers
    if lm_dir:
        opts["lm-dir"] = lm_dir
    if cfg.langs:
        opts["langs"] = ",".join(cfg.langs)
    if cfg.lid_model:
        opts["lid-model"] = cfg.lid_model
    if cfg.cutoffs:
        opts["cutoffs"] = cfg.cutoffs
    return opts


def corpus_args(cfg: PipelineConfig, output: str, lm_dir: str | None, *,
                segments: str | None = None, overwrite: bool = False) -> list[str]:
    argv = ["corpus"]
    for key, value in corpus_options(cfg, output, lm_dir, segments).items():
        for v in value if isinstance(value, list) else [value]:
            argv += [f"--{key}", str(v)]
    if cfg.runner != "DirectRunner":  # DirectRunner: the corpus command's own local default
        argv += ["--runner", cfg.runner]
    argv += beam_flags(cfg.beam_options) + cfg.extra("corpus")
    if overwrite:
        argv.append("--overwrite")
    return argv


def vocab_args(cfg: PipelineConfig, corpus: Path, output: Path) -> list[str]:
    argv = ["vocab", "--corpus", str(corpus), "--output", str(output),
            "--vocab-size", str(cfg.vocab_size), "--alpha", str(cfg.alpha), "--seed", str(cfg.seed)]
    if cfg.sentences:
        argv += ["--sentences", str(cfg.sentences)]
    return argv + _langs_flag(cfg.langs) + cfg.extra("vocab")


def tokenize_args(cfg: PipelineConfig, corpus: Path, vocab: Path, output: Path) -> list[str]:
    return (["tokenize", "--corpus", str(corpus), "--vocab", str(vocab), "--output", str(output),
             "--workers", str(cfg.workers)]
            + _langs_flag(cfg.langs) + cfg.extra("tokenize"))


def pretrain_args(cfg: PipelineConfig, shards: Path, vocab: Path, output: Path) -> list[str]:
    argv = ["pretrain", "--shards", str(shards), "--vocab", str(vocab), "--output", str(output),
            "--config", cfg.model_config, "--steps", str(cfg.max_steps), "--seed", str(cfg.seed),
            "--alpha", str(cfg.alpha)]
    if cfg.batch_tokens:
        argv += ["--batch-tokens", str(cfg.batch_tokens)]
    if cfg.max_len:
        argv += ["--max-len", str(cfg.max_len)]
    return argv + cfg.extra("pretrain")


def export_args(cfg: PipelineConfig, run_dir: Path, vocab: Path, output: Path) -> list[str]:
    return ["export", "--checkpoint", str(run_dir / CHECKPOINT), "--output", str(output),
            "--vocab", str(vocab)] + cfg.extra("export")


def evaluate_args(cfg: PipelineConfig, model: Path, shards: Path, output: Path) -> list[str]:
    return (["evaluate", str(model), "--shards", str(shards), "--output", str(output)]
            + (["--tatoeba", cfg.tatoeba_dir] if cfg.tatoeba_dir else []) + cfg.extra("evaluate"))


# ---------------------------------------------------------------------------------------------
# completion checks


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def reference_hashes(reference_dir: str | Path, langs: tuple[str, ...]) -> dict[str, str]:
    """{lang: sha256 of DIR/{lang}.txt} for `langs`, or for every DIR/*.txt when langs is empty."""
    ref = Path(reference_dir)
    if not ref.is_dir():
        raise StageError(f"reference_dir {ref}: no such directory (it should hold {{lang}}.txt)")
    if langs:
        missing = [str(ref / f"{lang}.txt") for lang in langs if not (ref / f"{lang}.txt").is_file()]
        if missing:
            raise StageError(f"reference text missing for the LM: {', '.join(missing)} "
                             "(drop those languages from `langs` or add the files)")
        files = {lang: ref / f"{lang}.txt" for lang in langs}
    else:
        files = {p.stem: p for p in sorted(ref.glob("*.txt"))}
        if not files:
            raise StageError(f"reference_dir {ref}: no {{lang}}.txt files")
    return {lang: file_sha256(path) for lang, path in sorted(files.items())}


def lm_models_exist(lm_dir: Path, lang: str) -> bool:
    return all((lm_dir / f"{lang}{suffix}").is_file() for suffix in LM_SUFFIXES)


def lm_to_train(current: Mapping[str, str], recorded: Mapping[str, str], lm_dir: Path) -> list[str]:
    """Languages whose reference text changed since their models were built, or lack a model."""
    return [lang for lang, digest in sorted(current.items())
            if recorded.get(lang) != digest or not lm_models_exist(lm_dir, lang)]


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise StageError(f"{path}: unreadable ({e}); remove it to start that stage afresh") from None


def write_json(path: Path, obj: dict) -> None:
    """Atomic: a crash never leaves half a stamp (a stamp is trusted once it exists)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(obj, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, path)


def stage_key(argv: list[str], inputs: Mapping[str, str]) -> str:
    """What built an output: its argument list and the keys of the stages it read."""
    blob = json.dumps({"argv": list(argv), "inputs": dict(sorted(inputs.items()))}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def describe_change(stamp: Mapping, argv: list[str], inputs: Mapping[str, str]) -> str:
    """Human-readable difference between a stamp and the run about to start."""
    parts = []
    old_inputs = stamp.get("inputs", {})
    for name in sorted(set(old_inputs) | set(inputs)):
        if old_inputs.get(name) != inputs.get(name):
            parts.append(f"input {name!r} changed ({old_inputs.get(name)} -> {inputs.get(name)})")
    old_argv = stamp.get("argv", [])
    if old_argv != list(argv):
        gone = [a for a in old_argv if a not in argv]
        new = [a for a in argv if a not in old_argv]
        parts.append(f"arguments changed (removed {gone}, added {new})" if gone or new
                     else "argument order changed")
    return "; ".join(parts) or "unknown change"


@dataclass(frozen=True)
class Decision:
    action: str  # "skip" | "run" | "rebuild"
    reason: str
    resume: bool = False  # an earlier attempt with the same key started: the stage may resume


def decide(stage: str, output: str, done: bool, exists: bool, stamp: Mapping | None, key: str,
           argv: list[str], inputs: Mapping[str, str], rebuild_changed: bool) -> Decision:
    """Skip, run or rebuild a stage from its marker (`done`) and stamp; StageError when stale.

    `exists`: the output directory exists at all (a stale stamp without output is just a run).
    The output of an attempt that did not finish is rebuilt when the settings changed (the
    usual "fix the params and trigger again"); a finished one only with `rebuild_changed`.
    """
    if stamp is None:
        if done:
            return Decision("skip", f"{output} is complete (not built by this DAG: kept as it is)")
        return Decision("run", f"{output} is not complete yet")
    if stamp.get("key") == key:
        if done and stamp.get("status") == "done":
            return Decision("skip", f"{output} is complete, built with the same settings")
        if done:
            return Decision("skip", f"{output} is complete (the earlier attempt finished it)")
        return Decision("run", "an earlier attempt did not finish", resume=True)
    if not exists:
        return Decision("run", f"{output} does not exist")
    change = describe_change(stamp, argv, inputs)
    if rebuild_changed or stamp.get("status") != "done":  # an unfinished attempt: nothing to keep
        return Decision("rebuild", change)
    raise StageError(
        f"{stage}: {output} was built with other settings or inputs: {change}. Trigger again "
        f"with the param rebuild_changed=true to rebuild it (and what depends on it), or use a "
        f"new work_dir.")


def stamp_key(layout: Layout, stage: str) -> str:
    """The key of a finished upstream stage (its stamp must exist: the task ran before)."""
    stamp = read_json(layout.stamp(stage))
    if not stamp or stamp.get("status") != "done":
        raise StageError(f"{stage}: no finished stamp in {layout.stamp(stage)}; run that task first")
    return stamp["key"]


# ---------------------------------------------------------------------------------------------
# running a stage


def resolve_cc100(explicit: str = "") -> list[str]:
    """The `cc100` command as an argv prefix: param, then $CC100_BIN, next to python, PATH.

    A value may hold several words ("/venv/bin/python -m cc100.cli"), e.g. for a project
    installed in another virtualenv than the scheduler's.
    """
    for source, value in (("param cc100_bin", explicit),
                          ("$CC100_BIN", os.environ.get("CC100_BIN", ""))):
        if value:
            argv = shlex.split(value)
            exe = shutil.which(argv[0])
            if not exe:
                raise StageError(f"{source}={value!r}: {argv[0]} is not an executable file")
            return [exe, *argv[1:]]
    beside = Path(sys.executable).parent / "cc100"
    if beside.is_file() and os.access(beside, os.X_OK):
        return [str(beside)]
    found = shutil.which("cc100")
    if found:
        return [found]
    raise StageError(f"the `cc100` command was not found next to {sys.executable} nor on PATH: "
                     "install the project (pip install -e .) in this environment, or set "
                     "$CC100_BIN or the DAG param cc100_bin to its path")


def run_cc100(prefix: list[str], argv: list[str], log: Log = print) -> None:
    """Run `cc100 ARGV`, streaming its output line by line into `log`; StageError on failure.

    The stage runs in its own process group, killed if the task is (timeout, mark failed,
    SIGTERM), so no Beam worker or trainer outlives its task.
    """
    cmd = [*prefix, *argv]
    log(f"$ {shlex.join(cmd)}")
    try:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                errors="replace", bufsize=1, start_new_session=True,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
    except OSError as e:
        raise StageError(f"cannot start {cmd[0]}: {e}") from None
    tail: deque[str] = deque(maxlen=20)
    try:
        for line in proc.stdout:  # text mode: tqdm's \r updates arrive as separate lines
            line = line.rstrip()
            if line:
                tail.append(line)
                log(line)
        rc = proc.wait()
    except BaseException:
        _kill_group(proc)
        raise
    if rc != 0:
        raise StageError(f"`cc100 {argv[0]}` failed with exit status {rc}; its last lines:\n"
                         + "\n".join(tail))


def _kill_group(proc: subprocess.Popen, grace_s: float = 20) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:
        pass


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def run_stage(stage: str, cfg: PipelineConfig, argv: list[str], *, output: Path, marker: Path,
              inputs: Mapping[str, str], log: Log = print, stamp_name: str | None = None,
              resume_args: tuple[list[str], Path] | None = None,
              rebuild_args: list[str] | None = None) -> bool:
    """Decide, run `cc100 ARGV` if needed, and stamp the result. True when the stage ran.

    resume_args: (flags, file) added when an unfinished earlier attempt left `file` behind.
    rebuild_args: flags that make the stage replace its own output (else the DAG deletes it).
    """
    layout = work_layout(cfg)
    stamp_path = layout.stamp(stamp_name or stage)
    key = stage_key(argv, inputs)
    stamp = read_json(stamp_path)
    decision = decide(stage, str(output), marker.is_file(), output.exists(), stamp, key, argv,
                      inputs, cfg.rebuild_changed)
    record = {"stage": stage, "key": key, "argv": argv, "inputs": dict(inputs)}
    if decision.action == "skip":
        log(f"[{stage}] skipped: {decision.reason}")
        if stamp is None or stamp.get("status") != "done":
            write_json(stamp_path, {**record, "status": "done", "adopted": _now()})
        return False
    run_argv = list(argv)
    if decision.action == "rebuild":
        log(f"[{stage}] rebuilding {output}: {decision.reason}")
        if rebuild_args is not None:
            run_argv += rebuild_args
        else:
            remove_output(output, stage)
    else:
        log(f"[{stage}] running: {decision.reason}")
    if decision.resume and resume_args and resume_args[1].is_file():
        log(f"[{stage}] resuming from {resume_args[1]}")
        run_argv += resume_args[0]
    write_json(stamp_path, {**record, "status": "running", "started": _now()})
    run_cc100(resolve_cc100(cfg.cc100_bin), run_argv, log)
    if not marker.is_file():
        raise StageError(f"[{stage}] `cc100 {stage}` exited 0 but {marker} is missing")
    write_json(stamp_path, {**record, "status": "done", "finished": _now()})
    log(f"[{stage}] done -> {output}")
    return True


# ---------------------------------------------------------------------------------------------
# the stages, as the DAG tasks call them (each returns the path it made: that is the XCom)


def lm_stage(cfg: PipelineConfig, log: Log = print) -> str:
    """Train the scoring models of the languages whose reference text changed; -> LM dir or ''."""
    layout = work_layout(cfg)
    if not cfg.reference_dir:
        log("[lm] no reference_dir: the corpus is written without perplexity buckets")
        write_json(layout.stamp("lm"), {"stage": "lm", "key": "none", "status": "done",
                                        "argv": [], "inputs": {}, "finished": _now()})
        return ""
    current = reference_hashes(cfg.reference_dir, cfg.langs)
    hashes_file = layout.lm / REFERENCE_HASHES
    recorded = dict(read_json(hashes_file) or {})
    for lang in current:  # models built before this DAG ran: trusted if newer than their text
        if lang not in recorded and lm_models_exist(layout.lm, lang):
            text_mtime = (Path(cfg.reference_dir) / f"{lang}.txt").stat().st_mtime
            if all((layout.lm / f"{lang}{s}").stat().st_mtime >= text_mtime for s in LM_SUFFIXES):
                recorded[lang] = current[lang]
    todo = lm_to_train(current, recorded, layout.lm)
    key = stage_key(lm_args(cfg, layout.lm, []), current)
    if todo:
        log(f"[lm] training {len(todo)} of {len(current)} languages "
            f"(reference text changed or models missing): {', '.join(todo)}")
        write_json(layout.stamp("lm"), {"stage": "lm", "key": key, "status": "running",
                                        "argv": lm_args(cfg, layout.lm, todo), "inputs": current,
                                        "started": _now()})
        run_cc100(resolve_cc100(cfg.cc100_bin), lm_args(cfg, layout.lm, todo), log)
        missing = [lang for lang in todo if not lm_models_exist(layout.lm, lang)]
        if missing:
            raise StageError(f"[lm] `cc100 lm` exited 0 but models are missing for {missing} "
                             f"in {layout.lm}")
        recorded.update({lang: current[lang] for lang in todo})
    else:
        log(f"[lm] skipped: models of {', '.join(current)} are up to date with {cfg.reference_dir}")
    write_json(hashes_file, recorded)
    stamp = read_json(layout.stamp("lm")) or {}
    if todo or stamp.get("key") != key or stamp.get("status") != "done":
        write_json(layout.stamp("lm"), {"stage": "lm", "key": key, "status": "done", "argv": [],
                                        "inputs": current, "finished": _now()})
    return str(layout.lm)


def corpus_marker(path: Path) -> Path | None:
    """.cc100/stats.json of a corpus run (stats.json at the top for older outputs), or
    ranges.json of a snapshot's merged view; None if neither."""
    stats = find_meta(path, STATS_FILE)
    if stats:
        return Path(stats)
    return path / RANGES_MARKER if (path / RANGES_MARKER).is_file() else None


def corpus_stage(cfg: PipelineConfig, lm_dir: str, log: Log = print, context=None) -> str:
    """Local corpus job (or an existing corpus_dir, or Dataflow) -> local corpus dir."""
    layout = work_layout(cfg)
    if cfg.corpus_dir:
        corpus = Path(cfg.corpus_dir)
        marker = corpus_marker(corpus)
        if marker is None:
            raise StageError(f"corpus_dir {corpus}: no {CORPUS_MARKER} (nor {RANGES_MARKER}): "
                             "not a finished corpus run")
        write_json(layout.stamp("corpus"), {"stage": "corpus", "key": file_sha256(marker)[:16],
                                            "status": "done", "argv": [], "inputs": {},
                                            "finished": _now()})
        log(f"[corpus] using the existing corpus {corpus}")
        return str(corpus)
    if cfg.runner == DATAFLOW:
        return corpus_dataflow(cfg, lm_dir, log, context)
    argv = corpus_args(cfg, str(layout.corpus), lm_dir or None)
    run_stage("corpus", cfg, argv, output=layout.corpus, marker=layout.corpus / CORPUS_MARKER,
              inputs={"lm": stamp_key(layout, "lm")}, log=log, rebuild_args=["--overwrite"])
    return str(layout.corpus)


def vocab_stage(cfg: PipelineConfig, corpus: str, log: Log = print) -> str:
    layout = work_layout(cfg)
    run_stage("vocab", cfg, vocab_args(cfg, Path(corpus), layout.vocab), output=layout.vocab,
              marker=layout.vocab / VOCAB_MODEL, inputs={"corpus": stamp_key(layout, "corpus")},
              log=log)
    return str(layout.vocab)


def tokenize_stage(cfg: PipelineConfig, corpus: str, vocab: str, log: Log = print) -> str:
    layout = work_layout(cfg)
    run_stage("tokenize", cfg, tokenize_args(cfg, Path(corpus), Path(vocab), layout.shards),
              output=layout.shards, marker=layout.shards / SHARDS_MARKER,
              inputs={"corpus": stamp_key(layout, "corpus"), "vocab": stamp_key(layout, "vocab")},
              log=log)
    return str(layout.shards)


def pretrain_stage(cfg: PipelineConfig, shards: str, vocab: str, log: Log = print) -> str:
    layout = work_layout(cfg)
    run_stage("pretrain", cfg, pretrain_args(cfg, Path(shards), Path(vocab), layout.run),
              output=layout.run, marker=layout.run / "hf" / HF_CONFIG,
              inputs={"tokenize": stamp_key(layout, "tokenize"), "vocab": stamp_key(layout, "vocab")},
              log=log, resume_args=(["--resume"], layout.run / CHECKPOINT))
    return str(layout.run)


def export_stage(cfg: PipelineConfig, run_dir: str, vocab: str, log: Log = print) -> str:
    layout = work_layout(cfg)
    run_stage("export", cfg, export_args(cfg, Path(run_dir), Path(vocab), layout.model),
              output=layout.model, marker=layout.model / HF_CONFIG,
              inputs={"pretrain": stamp_key(layout, "pretrain")}, log=log)
    return str(layout.model)


def evaluate_stage(cfg: PipelineConfig, model: str, log: Log = print) -> str:
    """Tatoeba retrieval (with tatoeba_dir) and held-out masked-LM loss of the export -> eval dir."""
    layout = Layout(Path(cfg.work_dir))
    run_stage("evaluate", cfg, evaluate_args(cfg, Path(model), layout.shards, layout.evaluation),
              output=layout.evaluation, marker=layout.evaluation / EVAL_JSON,
              inputs={"export": stamp_key(layout, "export"), "tokenize": stamp_key(layout, "tokenize")},
              log=log)
    log(summary(layout))
    return str(layout.evaluation)


def summary(layout: Layout) -> str:
    """The chain at a glance, from the stamps: when each stage was built, and with what key."""
    lines = [f"cc100 pipeline in {layout.work_dir}:",
             f"  {'stage':<9} {'key':<16}  built"]
    for stage in STAGES:
        stamp = read_json(layout.stamp(stage)) or {}
        built = stamp.get("finished") or (f"{stamp['adopted']} (adopted)" if "adopted" in stamp else "-")
        lines.append(f"  {stage:<9} {stamp.get('key', '-'):<16}  {built}")
    lines.append(f"model: {layout.model} (transformers.AutoModelForMaskedLM.from_pretrained)")
    lines.append(f"evaluation: {layout.evaluation / EVAL_JSON}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# one snapshot, range by range (the cc100_snapshot DAG)


def range_slug(segments: str) -> str:
    """'0-9' -> 'seg-0-9'; '3,5' -> 'seg-3_5' (a directory name)."""
    return "seg-" + segments.replace(",", "_")


def snapshot_dir(cfg: PipelineConfig) -> Path:
    return Path(cfg.work_dir) / "snapshots" / cfg.snapshot


def plan_ranges(cfg: PipelineConfig, per_task: int, max_tasks: int, log: Log = print) -> list[str]:
    """The unfinished segment ranges of the snapshot, at most `max_tasks` of them (0 = all)."""
    if not cfg.snapshot:
        raise ValueError("snapshot is required (CC-MAIN-YYYY-WW)")
    ranges = split_segments(cfg.segments, per_task)
    todo = [r for r in ranges if not (snapshot_dir(cfg) / range_slug(r) / CORPUS_MARKER).is_file()]
    log(f"{cfg.snapshot} segments {cfg.segments}: {len(ranges)} ranges of <= {per_task}, "
        f"{len(ranges) - len(todo)} finished, {len(todo)} to do")
    if max_tasks and len(todo) > max_tasks:
        log(f"this run takes the first {max_tasks}; trigger again (or schedule) for the rest")
        todo = todo[:max_tasks]
    return todo


def range_stage(cfg: PipelineConfig, segments: str, lm_dir: str, log: Log = print) -> str:
    """One segment range of the snapshot -> its own corpus directory."""
    output = snapshot_dir(cfg) / range_slug(segments)
    argv = corpus_args(cfg, str(output), lm_dir or None, segments=segments)
    run_stage("corpus", cfg, argv, output=output, marker=output / CORPUS_MARKER,
              inputs={"lm": stamp_key(work_layout(cfg), "lm")}, log=log,
              stamp_name=f"corpus-{cfg.snapshot}-{range_slug(segments)}",
              rebuild_args=["--overwrite"])
    return str(output)


def merge_ranges(cfg: PipelineConfig, per_task: int, log: Log = print) -> str:
    """When every range is finished: SNAPSHOT/merged/{lang}/{bucket}/ as relative symlinks to the
    ranges' Parquet files plus ranges.json, usable as the cc100_pipeline param corpus_dir.
    Returns the merged dir, or '' while ranges are still missing."""
    work_layout(cfg)
    base = snapshot_dir(cfg)
    ranges = split_segments(cfg.segments, per_task)
    done = [r for r in ranges if (base / range_slug(r) / CORPUS_MARKER).is_file()]
    if len(done) < len(ranges):
        log(f"{cfg.snapshot}: {len(done)}/{len(ranges)} ranges finished; the merged view is "
            "built once all are (trigger the DAG again to continue)")
        return ""
    merged = base / "merged"
    stats = {r: read_json(base / range_slug(r) / CORPUS_MARKER) for r in ranges}
    previous = read_json(merged / RANGES_MARKER)
    if previous and previous.get("ranges") == stats:  # unchanged: keep it (and its key) as it is
        log(f"{cfg.snapshot}: all {len(ranges)} ranges finished; {merged} is up to date")
        return str(merged)
    remove_output(merged, "merge")  # only symlinks and ranges.json: the ranges' files stay
    claim_dir(merged, "merge", "merged view")
    files = 0
    for r in ranges:
        src = base / range_slug(r)
        for part in part_files(src):
            lang, bucket = part.parent.parent.name, part.parent.name
            link = merged / lang / bucket / f"{range_slug(r)}--{part.name}"
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(os.path.relpath(part, link.parent))
            files += 1
    write_json(merged / RANGES_MARKER, {
        "snapshot": cfg.snapshot, "segments": cfg.segments, "segments_per_task": per_task,
        "ranges": stats,
        "parquet_files": files, "merged": _now()})
    log(f"{cfg.snapshot}: all {len(ranges)} ranges finished; {files} Parquet files linked "
        f"into {merged} (use it as corpus_dir of cc100_pipeline)")
    return str(merged)


# ---------------------------------------------------------------------------------------------
# Dataflow mode: the corpus job through the Beam provider (imported only here)


def _remote_join(base: str, *parts: str) -> str:
    return "/".join([base.rstrip("/"), *parts]) if "://" in base else str(Path(base, *parts))


def copy_tree(src: str, dst: str, log: Log = print, last: str | None = None) -> int:
    """Copy every file under `src` to `dst` through Beam's FileSystems (local, gs://, ...).

    Files of the same size at the destination are kept (re-runs copy only what is missing);
    `last` (a file name) is copied after everything else, so its presence marks a full copy.
    """
    from apache_beam.io.filesystem import CompressionTypes
    from apache_beam.io.filesystems import FileSystems

    raw = CompressionTypes.UNCOMPRESSED
    src = src.rstrip("/")
    matches = FileSystems.match([src + "/**"])[0].metadata_list
    matches.sort(key=lambda m: (last is not None and m.path.endswith("/" + last), m.path))
    copied = 0
    for meta in matches:
        rel = meta.path[len(src) + 1:]
        target = _remote_join(dst, *rel.split("/"))
        existing = FileSystems.match([target])[0].metadata_list if FileSystems.exists(target) else []
        if existing and existing[0].size_in_bytes == meta.size_in_bytes:
            continue
        with FileSystems.open(meta.path, compression_type=raw) as r, \
                FileSystems.create(target, compression_type=raw) as w:
            shutil.copyfileobj(r, w, 1 << 20)
        copied += 1
    log(f"copied {copied} of {len(matches)} files {src} -> {dst}")
    return copied


def dataflow_operator_kwargs(cfg: PipelineConfig, options: dict, prefix: list[str]) -> dict:
    """BeamRunPythonPipelineOperator arguments running `python -m cc100.cli corpus` on Dataflow.

    The command is the same corpus job as in local mode (its flags come from corpus_options);
    the Beam options project/region go to the operator's dataflow_config too.
    """
    if len(prefix) >= 3 and prefix[1] == "-m":  # cc100_bin = "python -m cc100.cli"
        interpreter = prefix[0]
    else:  # the console script: the python next to it
        interpreter = str(Path(prefix[0]).parent / "python")
    beam = dict(cfg.beam_options)
    job = re.sub(r"[^a-z0-9-]", "-", f"cc100-corpus-{cfg.snapshot or 'wet'}".lower())
    return {
        "py_file": "corpus",
        "py_options": ["-m", "cc100.cli"],
        "py_interpreter": interpreter,
        "runner": DATAFLOW,
        "pipeline_options": {**options, **beam},
        "dataflow_config": {"job_name": job, "project_id": beam.get("project"),
                            "location": beam.get("region"), "wait_until_finished": True},
        "deferrable": False,
    }


def launch_dataflow(kwargs: dict, context) -> None:
    """Run the provider's operator inside this task: imported only in Dataflow mode."""
    try:
        import airflow.providers.google  # noqa: F401  (the Dataflow half of the Beam provider)
        from airflow.providers.apache.beam.operators.beam import BeamRunPythonPipelineOperator
    except ImportError as e:
        raise StageError(
            f"runner={DATAFLOW} needs apache-airflow-providers-apache-beam and "
            f"apache-airflow-providers-google in the Airflow environment (missing: {e.name}); "
            "pip install apache-airflow-providers-google, or use runner=DirectRunner") from None
    BeamRunPythonPipelineOperator(task_id="corpus_dataflow", **kwargs).execute(context)


def corpus_dataflow(cfg: PipelineConfig, lm_dir: str, log: Log, context) -> str:
    """Upload the LM, run the corpus job on Dataflow into gcs_dir/corpus, copy it to work_dir."""
    from apache_beam.io.filesystems import FileSystems

    layout = work_layout(cfg)
    remote = _remote_join(cfg.gcs_dir, "corpus")
    remote_lm = _remote_join(cfg.gcs_dir, "lm") if lm_dir else None
    options = corpus_options(cfg, remote, remote_lm)
    argv = corpus_args(cfg, remote, remote_lm)
    key = stage_key(argv, {"lm": stamp_key(layout, "lm")})
    stamp = read_json(layout.stamp("corpus"))
    remote_done = FileSystems.exists(_remote_join(remote, CORPUS_MARKER))
    decision = decide("corpus", remote, remote_done, FileSystems.exists(remote), stamp, key, argv,
                      {"lm": stamp_key(layout, "lm")}, cfg.rebuild_changed)
    record = {"stage": "corpus", "key": key, "argv": argv, "inputs": {"lm": stamp_key(layout, "lm")}}
    if decision.action == "skip":
        log(f"[corpus] Dataflow job skipped: {decision.reason}")
    else:
        if remote_lm:
            copy_tree(lm_dir, remote_lm, log)
        if decision.action == "rebuild":
            options["overwrite"] = True
        write_json(layout.stamp("corpus"), {**record, "status": "running", "started": _now()})
        launch_dataflow(dataflow_operator_kwargs(cfg, options, resolve_cc100(cfg.cc100_bin)), context)
        if not FileSystems.exists(_remote_join(remote, CORPUS_MARKER)):
            raise StageError(f"[corpus] the Dataflow job ended but {remote}/{CORPUS_MARKER} is missing")
    write_json(layout.stamp("corpus"), {**record, "status": "done", "finished": _now()})
    if decision.action != "skip":
        remove_output(layout.corpus, "corpus")  # a copy of an older job: replaced as a whole
    if corpus_marker(layout.corpus) is None:
        claim_dir(layout.corpus, "corpus", "[corpus] local copy")  # of the job's output
        copy_tree(remote, str(layout.corpus), log, last=CORPUS_MARKER)
    return str(layout.corpus)
