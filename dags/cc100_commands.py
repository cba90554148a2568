"""What the cc100 DAGs share: the params (one table), their checks, and each task's `cc100` command.

A task only builds a command and runs it; whether there is work to do is the stage's business
(a stage whose output is complete for the same config and inputs prints `cc100 <stage>: up to
date (OUTPUT)` and exits 0). No Airflow import at module level; not a DAG file (.airflowignore).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import shutil
import sys
from datetime import timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if importlib.util.find_spec("pipeline") is None:  # the project is not installed in Airflow's env
    sys.path.append(str(REPO))
from pipeline import contracts  # noqa: E402  (standard library only)

DATAFLOW = "DataflowRunner"
STAGES = ("lm", "corpus", "vocab", "tokenize", "pretrain", "export", "evaluate")
CLI_MODULE = "cc100.cli"  # `python -m cc100.cli` is `cc100`: what the Dataflow operator runs
CORPUS_DONE = f"{contracts.META_DIR}/{contracts.STATS_FILE}"  # written last by a corpus run
LID_MODEL = "lid.176.ftz"  # fastText's; Dataflow mode reads GCS/models/lid.176.ftz (make corpus-dataflow)
# the download-heavy tasks retry; the env, read when a DAG file is parsed, shortens that in tests
RETRY = dict(retries=int(os.environ.get("CC100_DAG_RETRIES", "3")),
             retry_delay=timedelta(seconds=float(os.environ.get("CC100_DAG_RETRY_DELAY_S", "600"))),
             retry_exponential_backoff=2.0, max_retry_delay=timedelta(hours=2))


def optional(description: str, *types: str) -> dict:
    """A param the trigger form may leave empty (null: the stage's default)."""
    return dict(default=None, type=["null", *(types or ["string"])], description=description)


# name -> airflow.sdk.Param's arguments. The Airflow 3 trigger form requires every param whose
# type lacks "null": it asks only for work_dir (default $CC100_WORK_DIR when set: a scheduled DAG
# needs one), and the first task checks the rest (e.g. exactly one corpus source).
WORK_DIR_DEFAULT = {"default": os.environ["CC100_WORK_DIR"]} if os.environ.get("CC100_WORK_DIR") else {}
PARAMS = {
    "work_dir": dict(**WORK_DIR_DEFAULT, type="string", minLength=1, description="local directory "
                     "for every stage's output (lm/, corpus/, vocab/, shards/, run/, model/, eval/)"),
    "input_glob": optional("WET files: globs separated by spaces (or a list); or leave empty and "
                           "give snapshot or corpus_dir", "string", "array"),
    "snapshot": optional("CC-MAIN-YYYY-WW: download and process these segments of a Common Crawl "
                         "snapshot"),
    "segments": dict(default="0-99", type="string", description="segments of the snapshot, e.g. "
                     "0-99 or 3,5,10-12"),
    "corpus_dir": optional("an existing finished corpus (stats.json, or a cc100_snapshot merged "
                           "view): skips the corpus job"),
    "reference_dir": optional("DIR/{lang}.txt reference text for the perplexity LMs; empty: no "
                              "perplexity buckets"),
    "langs": optional("languages, e.g. en,fr,de; empty: all", "string", "array"),
    "runner": dict(default="DirectRunner", type="string", enum=["DirectRunner", "PrismRunner", DATAFLOW],
                   description="Beam runner of the corpus job; DataflowRunner needs "
                   "apache-airflow-providers-google and gcs_dir"),
    "beam_options": dict(default={}, type="object", description="extra Beam flags, e.g. {\"project\": "
                         "\"p\", \"region\": \"europe-west4\", \"temp_location\": \"gs://b/tmp\"}"),
    "gcs_dir": optional("Dataflow mode: gs:// prefix for the uploaded LM and the corpus output "
                        "(copied back into work_dir/corpus)"),
    "workers": dict(default=2, type="integer", minimum=1, description="local processes of the corpus "
                    "and tokenize stages"),
    "min_len": dict(default=300, type="integer", minimum=0),
    "dedup": dict(default="ccnet", type="string", enum=["ccnet", "keep-first"]),
    "lid_model": optional("fastText LID model; empty: the corpus stage's default"),
    "cutoffs": optional("perplexity cutoff CSV; empty: default"),
    "vocab_size": dict(default=250_000, type="integer", minimum=8),
    "alpha": dict(default=0.3, type="number", minimum=0, maximum=1,
                  description="language sampling exponent of vocab and pretrain"),
    "sentences": dict(default=0, type="integer", minimum=0,
                      description="lines sampled for the vocabulary; 0: the stage's default"),
    "seed": dict(default=0, type="integer", minimum=0),
    "model_config": dict(default="base", type="string", enum=list(contracts.MODEL_PRESETS)),
    "max_steps": dict(default=100_000, type="integer", minimum=1),
    "batch_tokens": dict(default=0, type="integer", minimum=0, description="0: preset's"),
    "max_len": dict(default=0, type="integer", minimum=0, description="0: preset's"),
    "stage_args": dict(default={}, type="object", description="extra flags per stage, e.g. "
                       "{\"pretrain\": \"--device cuda --lr 3e-4\"}"),
    "rebuild_changed": dict(default=False, type="boolean", description="replace a corpus or a "
                            "training run whose settings or inputs changed (else that task fails)"),
    "tatoeba_dir": optional("Tatoeba test set (LASER layout, e.g. shared/data/eval/"
                            "tatoeba_laser_xtreme36) for the evaluate task; empty: held-out "
                            "masked-LM loss only"),
    "cc100_bin": optional("the cc100 command; empty: $CC100_BIN, then next to the scheduler's "
                          "python, then PATH"),
}


def split(value, pattern=r"[,\s]+") -> list[str]:
    """'en,fr de' or ['en', 'fr'] -> ['en', 'fr', 'de']; None -> []; globs: pattern r'\\s+'."""
    items = value if isinstance(value, (list, tuple)) else re.split(pattern, str(value or ""))
    return [str(x).strip() for x in items if str(x).strip()]


def check_params(p: dict) -> None:
    """What the params' JSON schema cannot say; ValueError naming the param."""
    if "://" in p["work_dir"]:
        raise ValueError(f"work_dir must be a local path, got {p['work_dir']!r} "
                         "(in Dataflow mode put the GCS prefix in gcs_dir)")
    sources = [split(p.get("input_glob"), r"\s+"), p.get("snapshot"), p.get("corpus_dir")]
    if "input_glob" in p and sum(map(bool, sources)) != 1:  # (the snapshot DAG has one source)
        raise ValueError("give exactly one corpus source: input_glob, snapshot (+ segments) or "
                         f"corpus_dir (got input_glob={p.get('input_glob')!r}, "
                         f"snapshot={p.get('snapshot')!r}, corpus_dir={p.get('corpus_dir')!r})")
    if p.get("snapshot"):
        contracts.validate_snapshot(p["snapshot"])
        contracts.parse_segments(p["segments"])
    if p.get("runner") == DATAFLOW and not str(p.get("gcs_dir") or "").startswith("gs://"):
        raise ValueError(f"gcs_dir must be a gs:// prefix when runner is {DATAFLOW}")
    if p.get("runner") == DATAFLOW and p.get("corpus_dir"):
        raise ValueError(f"corpus_dir and runner={DATAFLOW} exclude each other")
    for lang in split(p.get("langs")):
        if not re.fullmatch(r"[A-Za-z0-9_-]+", lang):
            raise ValueError(f"langs: bad language code {lang!r}")
    for stage in p.get("stage_args") or {}:
        if stage not in STAGES:
            raise ValueError(f"stage_args: unknown stage {stage!r} (stages: {', '.join(STAGES)})")


def first_command(p: dict, build) -> str:
    """The first task's command once the params are checked and work_dir is the DAGs' (new, empty
    or marked by an earlier run); else the task fails at once, in one line, without retries."""
    from airflow.sdk.exceptions import AirflowFailException

    try:
        check_params(p)
    except ValueError as e:
        raise AirflowFailException(f"invalid params: {e}") from None
    try:
        contracts.claim(local(p["work_dir"]), "dag")
    except contracts.OwnershipError as e:
        raise AirflowFailException(f"work_dir {e}") from None
    return build(p)


# ---------------------------------------------------------------------------------------------
# paths and commands


def local(path: str) -> str:
    """A local path made absolute (a bash task runs in a temporary directory); URLs as they are."""
    return path if "://" in path else os.path.abspath(os.path.expanduser(path))


def work(p: dict, *parts: str) -> str:
    """WORK_DIR/lm, corpus, vocab, shards, run, model, eval, snapshots/S/seg-A-B."""
    return os.path.join(local(p["work_dir"]), *parts)


def corpus_path(p: dict) -> str:
    return local(p["corpus_dir"]) if p.get("corpus_dir") else work(p, "corpus")


def finished_corpus(path: str) -> bool:
    """A complete corpus run (or one by an older cc100: stats.json), or a snapshot's merged view."""
    return (contracts.read_completion(path) is not None or bool(contracts.find_meta(path, contracts.STATS_FILE))
            or os.path.isfile(os.path.join(path, contracts.MERGE_RANGES)))


def cc100(p: dict) -> list[str]:
    """The `cc100` command: the param cc100_bin, $CC100_BIN, the one beside this python, PATH."""
    for source, value in (("param cc100_bin", p.get("cc100_bin")), ("$CC100_BIN", os.environ.get("CC100_BIN"))):
        if value:
            if not shutil.which(shlex.split(value)[0]):
                raise ValueError(f"{source}={value!r}: {shlex.split(value)[0]} is not an executable file")
            return shlex.split(value)
    beside = Path(sys.executable).parent / "cc100"
    return [str(beside)] if os.access(beside, os.X_OK) else ["cc100"]


def flags(**named) -> list[str]:
    """--name value per value (None, '', [] and False left out; True: the flag alone; a list: the
    flag repeated); '_' in a name becomes '-'."""
    out = []
    for name, value in named.items():
        flag = "--" + name.replace("_", "-")
        if value is True:
            out.append(flag)
        elif isinstance(value, (list, tuple)):
            out += [x for v in value for x in (flag, str(v))]
        elif value not in (None, "", False):
            out += [flag, str(value)]
    return out


def beam_flags(options: dict) -> list[str]:
    """{"project": "p", "use_public_ips": False} -> ["--project=p", "--no_use_public_ips"]."""
    out = []
    for key, value in (options or {}).items():
        if isinstance(value, bool):
            out.append(f"--{key}" if value else f"--no_{key}")
        else:
            out += [f"--{key}={v}" for v in (value if isinstance(value, list) else [value])]
    return out


def command(p: dict, stage: str, *args: str, **named) -> str:
    """`cc100 STAGE ARGS --flags` + the stage's `stage_args`, as one shell command line."""
    extra = (p.get("stage_args") or {}).get(stage) or []
    extra = shlex.split(extra) if isinstance(extra, str) else [str(x) for x in extra]
    return shlex.join([*cc100(p), stage, *args, *flags(**named), *extra])


def langs(p: dict) -> str | None:
    return ",".join(split(p.get("langs"))) or None


def corpus_source(p: dict, segments: str | None = None) -> dict:
    if p.get("snapshot"):
        return {"snapshot": p["snapshot"], "segments": segments or p["segments"]}
    return {"input": [local(g) for g in split(p.get("input_glob"), r"\s+")]}


def lm_command(p: dict) -> str:
    if not p.get("reference_dir"):
        return "echo '[lm] no reference_dir: the corpus is written without perplexity buckets'"
    return command(p, "lm", reference=local(p["reference_dir"]), output=work(p, "lm"), langs=langs(p))


def corpus_command(p: dict, output: str, segments: str | None = None) -> str:
    """rebuild_changed: --overwrite, with which the stage replaces an output that is not up to date."""
    runner = p.get("runner") or "DirectRunner"
    return " ".join([command(
        p, "corpus", **corpus_source(p, segments), output=output, langs=langs(p),
        lm_dir=work(p, "lm") if p.get("reference_dir") else None, min_len=p["min_len"],
        dedup=p["dedup"], workers=p["workers"], lid_model=p.get("lid_model") and local(p["lid_model"]),
        cutoffs=p.get("cutoffs") and local(p["cutoffs"]), runner=runner if runner != "DirectRunner" else None,
        overwrite=bool(p.get("rebuild_changed"))), *map(shlex.quote, beam_flags(p.get("beam_options")))])


def vocab_command(p: dict) -> str:
    return command(p, "vocab", corpus=corpus_path(p), output=work(p, "vocab"), vocab_size=p["vocab_size"],
                   alpha=p["alpha"], seed=p["seed"], sentences=p["sentences"] or None, langs=langs(p))


def tokenize_command(p: dict) -> str:
    return command(p, "tokenize", corpus=corpus_path(p), vocab=work(p, "vocab"),
                   output=work(p, "shards"), workers=p["workers"], langs=langs(p))


def pretrain_command(p: dict) -> str:
    """With `--resume` when the run's checkpoint is there: an earlier attempt is continued;
    rebuild_changed: --overwrite, with which a run of other settings is replaced."""
    run = work(p, "run")
    return command(p, "pretrain", shards=work(p, "shards"), vocab=work(p, "vocab"), output=run,
                   config=p["model_config"], steps=p["max_steps"], seed=p["seed"], alpha=p["alpha"],
                   batch_tokens=p["batch_tokens"] or None, max_len=p["max_len"] or None,
                   resume=os.path.isfile(os.path.join(run, contracts.CHECKPOINT)),
                   overwrite=bool(p.get("rebuild_changed")))


def export_command(p: dict) -> str:
    return command(p, "export", checkpoint=os.path.join(work(p, "run"), contracts.CHECKPOINT),
                   output=work(p, "model"), vocab=work(p, "vocab"))


def evaluate_command(p: dict) -> str:
    return command(p, "evaluate", work(p, "model"), shards=work(p, "shards"), output=work(p, "eval"),
                   tatoeba=p.get("tatoeba_dir") and local(p["tatoeba_dir"]))


def summary(p: dict) -> str:
    """The chain at a glance: each stage's output and whether it is complete."""
    lines = [f"cc100 pipeline in {local(p['work_dir'])}:"]
    for stage, path in zip(STAGES, [work(p, "lm"), corpus_path(p), *(work(p, d) for d in
                                    ("vocab", "shards", "run", "model", "eval"))]):
        state = "complete" if contracts.read_completion(path) is not None else "-"
        lines.append(f"  {stage:<9} {state:<9} {path}")
    return "\n".join([*lines, f"model: {work(p, 'model')} (transformers' from_pretrained)"])


# ---------------------------------------------------------------------------------------------
# Dataflow mode: the `cc100 corpus` job of `make corpus-dataflow` (docs/dataflow.md)


def dataflow_job(p: dict) -> dict:
    """BeamRunPythonPipelineOperator's arguments: `python -m cc100.cli corpus`, its models and
    output under gcs_dir, project and region from beam_options."""
    gcs, beam, prefix = p["gcs_dir"].rstrip("/"), dict(p.get("beam_options") or {}), cc100(p)
    options = {**corpus_source(p), "output": f"{gcs}/corpus",
               "lid-model": p.get("lid_model") or f"{gcs}/models/{LID_MODEL}",
               "lm-dir": f"{gcs}/lm" if p.get("reference_dir") else None, "langs": langs(p),
               "min-len": p["min_len"], "dedup": p["dedup"], "cutoffs": p.get("cutoffs"),
               "overwrite": bool(p.get("rebuild_changed")), "temp_location": f"{gcs}/tmp",
               "setup_file": str(REPO / "setup.py"), **beam}
    job = re.sub(r"[^a-z0-9-]", "-", f"cc100-corpus-{p.get('snapshot') or 'wet'}".lower())
    return {"py_interpreter": prefix[0] if prefix[1:2] == ["-m"] else str(Path(prefix[0]).parent / "python"),
            "pipeline_options": {k: v for k, v in options.items() if v not in (None, False)},
            "dataflow_config": {"job_name": job, "project_id": beam.get("project"),
                                "location": beam.get("region"), "wait_until_finished": True}}


def copy_tree(src: str, dst: str, last: str | None = None) -> int:
    """Copy the files under `src` to `dst` through Beam's FileSystems (local, gs://), but those of
    the same size there; `last` (a relative path) goes last, so it marks a full copy."""
    from apache_beam.io.filesystem import CompressionTypes
    from apache_beam.io.filesystems import FileSystems

    src, raw, copied = src.rstrip("/"), CompressionTypes.UNCOMPRESSED, 0
    found = FileSystems.match([src + "/**"])[0].metadata_list
    for meta in sorted(found, key=lambda m: (bool(last) and m.path.endswith("/" + last), m.path)):
        target = FileSystems.join(dst, meta.path[len(src) + 1:])
        there = FileSystems.match([target])[0].metadata_list if FileSystems.exists(target) else []
        if not there or there[0].size_in_bytes != meta.size_in_bytes:
            with FileSystems.open(meta.path, compression_type=raw) as r, \
                    FileSystems.create(target, compression_type=raw) as w:
                shutil.copyfileobj(r, w, 1 << 20)
            copied += 1
    print(f"copied {copied} of {len(found)} files {src} -> {dst}")
    return copied


# ---------------------------------------------------------------------------------------------
# one snapshot, range by range (the cc100_snapshot DAG)


def split_segments(spec: str, per_task: int) -> list[str]:
    """Segment spec -> consecutive ranges of `per_task` segments, each a spec."""
    indices = contracts.parse_segments(spec)
    if not indices:
        raise ValueError("segments: the snapshot DAG needs explicit numbers (e.g. 0-999), not 'all'")
    return [contracts.format_segments(indices[i:i + per_task]) for i in range(0, len(indices), per_task)]


def range_dir(p: dict, segments: str) -> str:
    """'0-9' -> WORK_DIR/snapshots/S/seg-0-9; '3,5' -> .../seg-3_5."""
    return work(p, "snapshots", p["snapshot"], "seg-" + segments.replace(",", "_"))


def unfinished_ranges(p: dict) -> list[str]:
    """The ranges without a complete corpus, at most `max_tasks` (0: all)."""
    ranges = split_segments(p["segments"], int(p["segments_per_task"]))
    todo = [r for r in ranges if contracts.read_completion(range_dir(p, r)) is None]
    print(f"{p['snapshot']} segments {p['segments']}: {len(ranges)} ranges, {len(todo)} to do")
    return todo[:int(p["max_tasks"])] if int(p["max_tasks"]) else todo


def merge_ranges(p: dict) -> str:
    """Once every range is complete: SNAPSHOT/merged/{lang}/{bucket}/ as relative links to their
    Parquet files + ranges.json (a corpus_dir for cc100_pipeline); '' while ranges are missing."""
    ranges = split_segments(p["segments"], int(p["segments_per_task"]))
    records = {r: contracts.read_completion(range_dir(p, r)) for r in ranges}
    if None in records.values():
        print(f"{sum(r is not None for r in records.values())}/{len(ranges)} ranges finished")
        return ""
    merged = work(p, "snapshots", p["snapshot"], "merged")
    if read_json(os.path.join(merged, contracts.MERGE_RANGES)).get("ranges") == records:
        return merged  # up to date
    contracts.remove_owned_tree(merged, "merge")  # links and ranges.json only: the ranges stay
    contracts.claim(merged, "merge")
    for r in ranges:
        for part in contracts.part_files(range_dir(p, r)):
            name = f"{Path(range_dir(p, r)).name}--{part.name}"  # seg-0-9--part-00000.parquet
            link = Path(merged, part.parent.parent.name, part.parent.name, name)
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(os.path.relpath(part, link.parent))
    contracts.atomic_write_json(os.path.join(merged, contracts.MERGE_RANGES), {
        "snapshot": p["snapshot"], "segments": p["segments"], "ranges": records}, indent=1, sort_keys=True)
    print(f"all {len(ranges)} ranges linked into {merged}: a corpus_dir for cc100_pipeline")
    return merged


def read_json(path: str) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        return {}
