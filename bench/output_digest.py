"""A digest of what the whole `cc100` chain writes on the shared samples, to show a refactor changes nothing.

It drives only the `cc100` command line (so the same script runs on the code before and after a
refactor), in a fresh work directory:

    lm        --reference SHARED/reference --langs en,es,fr,de,it,pt,ru
    corpus    --input SHARED/wet/CC-MAIN-2019-30-sample-*.warc.wet.gz --lm-dir W/lm
    corpus    the same, with near-dedup, per-paragraph LID, keep-first dedup in groups and cc_net's
              cutoff table (W/corpus-variant: the optional sub-configs)
    vocab     --vocab-size 8000 --sentences 20000 --allow-smaller-vocab --threads 1 --seed 0
    tokenize  --workers 2 --valid-fraction 0.05
    pretrain  --config tiny --steps 60 --seed 0 --device cpu --log-every 1 --eval-every 20

and writes a JSON digest of every file the stages wrote: per language and bucket the sha256 of the
Parquet rows; per Parquet file the bytes of its data pages, its layout (schema, row groups,
codecs) and the config in its footer; the shards' bytes; the SentencePiece models (vocabulary and
LM) and KenLM binaries; the per-step losses of log.jsonl (exact floats); the final checkpoint's
tensors (model, optimizer, scheduler, data cursor, RNG) apart from its recorded config; every other
file as canonical JSON or text. `--compare A B` prints one line per artifact and exits 1 on any
difference. `--repo DIR` runs another checkout's code (the old commit, say) under this script.

    python -m bench.output_digest --workdir /tmp/cc100-digest --output before.json [--repo OLD_CHECKOUT]
    python -m bench.output_digest --workdir /tmp/cc100-digest --no-run --output again.json  # digest only
    python -m bench.output_digest --compare before.json after.json [--differences] [--skip GLOB]

What is excluded or normalised, and why, is in EXCLUDED (also written into every digest).
"""

from __future__ import annotations

import argparse
import fnmatch
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

from pipeline.contracts import COMPLETE_FILE, META_DIR, TRAINING_LOG

REPO_ROOT = Path(__file__).resolve().parents[1]
DIGEST_FORMAT = "cc100-output-digest-v1"
MARKER = ".output_digest"  # marks a work directory this script made (and may empty again)
DEFAULT_LANGS = "en,es,fr,de,it,pt,ru"
WET_GLOB = "wet/CC-MAIN-2019-30-sample-*.warc.wet.gz"

# JSON keys dropped wherever they occur: they measure the run, not what it computed.
TIMING_KEYS = frozenset({
    "seconds", "started", "elapsed_s", "tokens_per_s", "mfu",
    "sample_seconds", "train_seconds", "total_seconds", "peak_rss_mib",
})
# Sizes of Parquet files, recorded in stats.json and the shards' done.json: the footer holds the
# absolute output path, so they change with the length of the work directory's name.
PARQUET_SIZE_KEYS = frozenset({"bytes", "source_bytes"})
DROPPED_KEYS = TIMING_KEYS | PARQUET_SIZE_KEYS
ISO_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:[+-]\d\d:\d\d|Z)?")

EXCLUDED = {
    "json keys " + ", ".join(sorted(TIMING_KEYS)):
        "wall-clock time, throughput and memory of the run (stats.json, files.jsonl, done.json, "
        "vocab_config.json, log.jsonl): they differ on every run",
    "json keys " + ", ".join(sorted(PARQUET_SIZE_KEYS)):
        "sizes of Parquet files (stats.json partitions and parts, the shards' done.json): the footer "
        "holds the absolute output path, so the size follows the length of the work directory's name "
        "(the files' data pages, layout and footer config are compared instead)",
    "ISO timestamps in the dataset card (README.md)": "the card says when the run started",
    "absolute paths": "the work directory, the shared data and the repository are replaced by <WORK>, "
                      "<SHARED>, <REPO> in every JSON value and text file, and in the Parquet column "
                      "cc_segment, so runs in different directories compare",
    "Parquet file bytes": "not hashed whole: the footer holds the run config (with paths); the data pages "
                          "(every byte before the footer) and the footer's parts are hashed separately",
    "Parquet data pages": "hold cc_segment's absolute path, so they compare only between digests made with "
                          "the same shared-data path (the digest records it; --compare warns)",
    "trainer_spec.model_prefix of SentencePiece models (*.model)":
        "`cc100 lm` trains in a temporary directory with a random name, which the model records; "
        "the field is cleared and the model re-serialised before hashing (pieces, scores and every "
        "other trainer and normalizer field are hashed)",
    "rng.python in checkpoint.pt": "Python's `random` is seeded from the OS at start-up and training "
                                   "never draws from it (torch's RNG state is compared)",
    "the stages' stdout/stderr": "progress lines and timings; kept in WORK/logs/, not digested",
    "cc100 report": "not run: HTML + PNG, rendered with the time of the run",
    f"{META_DIR}/{COMPLETE_FILE} (completion records)":
        "what a stage compares to say 'up to date': fingerprints of its inputs, some by file time "
        "(WET files, Tatoeba), so they differ on every run; absent before the records existed",
}


# -- canonical forms -----------------------------------------------------------------------


class Paths:
    """Replaces the run's absolute directories by placeholders (longest first)."""

    def __init__(self, mapping: dict[str, str]):
        self.pairs = sorted(((str(k).rstrip("/"), v) for k, v in mapping.items() if k),
                            key=lambda kv: -len(kv[0]))

    def text(self, s: str) -> str:
        for path, name in self.pairs:
            s = s.replace(path, name)
        return s


NO_PATHS = Paths({})


def canonical_json(obj, paths: Paths = NO_PATHS):
    """`obj` without timing and Parquet size keys, paths replaced, dict keys sorted (by json.dumps)."""
    if isinstance(obj, dict):
        return {k: canonical_json(v, paths) for k, v in obj.items() if k not in DROPPED_KEYS}
    if isinstance(obj, list):
        return [canonical_json(v, paths) for v in obj]
    if isinstance(obj, str):
        return paths.text(obj)
    return obj


def dumps(obj) -> str:
    """One stable text for a JSON value; floats as repr, so exact."""
    return json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":"), allow_nan=True,
                      default=repr)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_json(obj) -> str:
    return sha256_bytes(dumps(obj).encode("utf-8"))


def sha256_file(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


# -- one artifact per file (or part of a file) ------------------------------------------------


def artifact(kind: str, sha256: str, **info) -> dict:
    return {"kind": kind, "sha256": sha256, **info}


def digest_bytes(path: Path) -> dict:
    return artifact("bytes", sha256_file(path), size=path.stat().st_size)


def digest_json_file(path: Path, paths: Paths) -> dict:
    obj = canonical_json(json.loads(path.read_text(encoding="utf-8")), paths)
    return artifact("json", sha256_json(obj))


def digest_jsonl_file(path: Path, paths: Paths) -> dict:
    lines = [canonical_json(json.loads(line), paths)
             for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return artifact("json", sha256_json(lines), lines=len(lines))


def digest_text_file(path: Path, paths: Paths) -> dict:
    text = paths.text(path.read_text(encoding="utf-8", errors="surrogateescape"))
    if path.suffix == ".md":
        text = ISO_TIME.sub("<TIME>", text)
    return artifact("text", sha256_bytes(text.encode("utf-8", errors="surrogateescape")))


def digest_sentencepiece_model(path: Path) -> dict:
    """The model without trainer_spec.model_prefix (a random temporary path in `cc100 lm`)."""
    from sentencepiece import sentencepiece_model_pb2

    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString(path.read_bytes())
    proto.trainer_spec.ClearField("model_prefix")
    return artifact("model", sha256_bytes(proto.SerializeToString(deterministic=True)),
                    pieces=len(proto.pieces))


# -- training log and checkpoint ------------------------------------------------------------


def read_log(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def digest_training_log(path: Path) -> dict[str, dict]:
    records = read_log(path)
    losses = [[r["step"], r["loss"]] for r in records if "loss" in r]
    val = [[r["step"], r["val_loss"]] for r in records if "val_loss" in r]
    return {
        ":losses": artifact("losses", sha256_json(losses), steps=len(losses), losses=losses),
        ":val_loss": artifact("losses", sha256_json(val), val_loss=val),
        ":records": artifact("json", sha256_json(canonical_json(records)), lines=len(records)),
    }


def tensor_bytes(tensor) -> bytes:
    import torch

    t = tensor.detach().cpu().contiguous().reshape(-1)
    return t.view(torch.uint8).numpy().tobytes()


def hash_state(obj, h) -> None:
    """Feeds a nested state (dicts, lists, tensors, numbers) into `h` in a stable order."""
    import torch

    if isinstance(obj, torch.Tensor):
        h.update(f"tensor {obj.dtype} {tuple(obj.shape)}\n".encode())
        h.update(tensor_bytes(obj))
    elif isinstance(obj, dict):
        for key in sorted(obj, key=str):
            h.update(f"key {key!r}\n".encode())
            hash_state(obj[key], h)
    elif isinstance(obj, (list, tuple)):
        h.update(f"seq {len(obj)}\n".encode())
        for item in obj:
            hash_state(item, h)
    else:
        h.update(f"value {obj!r}\n".encode())


def state_sha256(obj) -> str:
    h = hashlib.sha256()
    hash_state(obj, h)
    return h.hexdigest()


CHECKPOINT_STATE = ("model", "optimizer", "scheduler", "data", "rng", "step")  # what training computed
CHECKPOINT_CONFIG = ("train_config", "model_config")  # how it was asked for (its shape may change)


def checkpoint_state(ckpt: dict, key: str):
    if key == "rng" and isinstance(ckpt["rng"], dict):
        return {k: v for k, v in ckpt["rng"].items() if k != "python"}  # see EXCLUDED
    return ckpt[key]


def digest_checkpoint(path: Path, paths: Paths) -> dict[str, dict]:
    import torch

    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    out = {f":{key}": artifact("tensors", state_sha256(checkpoint_state(ckpt, key)))
           for key in CHECKPOINT_STATE if key in ckpt}
    if ":model" in out:
        out[":model"]["tensors"] = len(ckpt["model"])
    config = {k: ckpt[k] for k in CHECKPOINT_CONFIG if k in ckpt}
    rest = {k: v for k, v in ckpt.items() if k not in CHECKPOINT_STATE + CHECKPOINT_CONFIG}
    out[":config"] = artifact("config", sha256_json(canonical_json(config, paths)))
    out[":metadata"] = artifact("json", sha256_json(canonical_json(rest, paths)))
    return out


# -- Parquet ----------------------------------------------------------------------------------


def canonical_rows(table, paths: Paths) -> list[dict]:
    """The rows as plain values, cc_segment's paths replaced, sorted by id."""
    rows = table.to_pylist()
    for row in rows:
        if isinstance(row.get("cc_segment"), str):
            row["cc_segment"] = paths.text(row["cc_segment"])
    key = ("id", "cc_segment", "record_offset")
    return sorted(rows, key=lambda r: tuple(str(r.get(k)) for k in key))


def rows_sha256(rows: list[dict]) -> str:
    h = hashlib.sha256()
    for row in rows:
        h.update(row_text(row).encode("utf-8"))
        h.update(b"\n")
    return h.hexdigest()


def row_text(row: dict) -> str:
    return dumps({k: plain(v) for k, v in row.items()})


def plain(value):
    """A JSON-able form of a Parquet value (timestamps as ISO text)."""
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def footer_length(path: Path) -> int:
    with open(path, "rb") as f:
        f.seek(-8, os.SEEK_END)
        tail = f.read(8)
    if tail[4:] != b"PAR1":
        raise ValueError(f"{path}: not a Parquet file")
    return int.from_bytes(tail[:4], "little")


def data_pages_sha256(path: Path) -> str:
    """sha256 of every byte before the footer (magic + column chunks)."""
    end = path.stat().st_size - 8 - footer_length(path)
    h = hashlib.sha256()
    with open(path, "rb") as f:
        remaining = end
        while remaining:
            block = f.read(min(remaining, 1 << 20))
            h.update(block)
            remaining -= len(block)
    return h.hexdigest()


def parquet_layout(meta, schema) -> dict:
    """What the footer says about the data, without its key-value metadata."""
    groups = []
    for i in range(meta.num_row_groups):
        rg = meta.row_group(i)
        groups.append({
            "rows": rg.num_rows,
            "columns": [[rg.column(j).path_in_schema, rg.column(j).compression,
                         sorted(rg.column(j).encodings), rg.column(j).total_compressed_size]
                        for j in range(rg.num_columns)],
        })
    return {"schema": schema.remove_metadata().to_string(), "num_rows": meta.num_rows,
            "created_by": meta.created_by, "format_version": meta.format_version, "row_groups": groups}


def footer_key_values(schema, paths: Paths) -> dict:
    out = {}
    for key, value in (schema.metadata or {}).items():
        name = key.decode("utf-8", "replace")
        if name == "ARROW:schema":
            continue  # the serialised Arrow schema: covered by the layout's schema
        text = value.decode("utf-8", "replace")
        try:
            out[name] = canonical_json(json.loads(text), paths)
        except json.JSONDecodeError:
            out[name] = paths.text(text)
    return out


def digest_parquet_file(path: Path, paths: Paths) -> dict[str, dict]:
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(path)
    schema = pf.schema_arrow
    return {
        ":data_pages": artifact("bytes", data_pages_sha256(path)),
        ":layout": artifact("layout", sha256_json(parquet_layout(pf.metadata, schema))),
        ":footer_config": artifact("config", sha256_json(footer_key_values(schema, paths))),
    }


def digest_parquet_partitions(root: Path, paths: Paths) -> dict[str, dict]:
    """Per {language}/{bucket} directory: the sha256 of its rows over all its files, sorted by id."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    by_dir: dict[Path, list[Path]] = {}
    for f in sorted(root.rglob("*.parquet")):
        if not any(part.startswith(".") for part in f.relative_to(root).parts):
            by_dir.setdefault(f.parent, []).append(f)
    out = {}
    for directory, files in sorted(by_dir.items()):
        table = pa.concat_tables([pq.read_table(f) for f in files])
        rows = canonical_rows(table, paths)
        out[f"{directory.relative_to(root).as_posix()}:rows"] = artifact(
            "rows", rows_sha256(rows), rows=len(rows), files=len(files))
    return out


# -- a stage's output directory -----------------------------------------------------------------


def digest_file(path: Path, paths: Paths) -> dict[str, dict]:
    """Artifacts of one file, keyed by a suffix to append to its relative path."""
    name = path.name
    if name.endswith(".parquet"):
        return digest_parquet_file(path, paths)
    if name == TRAINING_LOG:
        return digest_training_log(path)
    if name.endswith(".pt"):
        return digest_checkpoint(path, paths)
    if name.endswith(".model"):
        return {"": digest_sentencepiece_model(path)}
    if name.endswith(".jsonl"):
        return {"": digest_jsonl_file(path, paths)}
    if name.endswith(".json"):
        return {"": digest_json_file(path, paths)}
    if name.endswith((".md", ".log", ".csv", ".txt")):
        return {"": digest_text_file(path, paths)}
    return {"": digest_bytes(path)}


def digest_tree(root: Path, prefix: str, paths: Paths) -> dict[str, dict]:
    artifacts = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        if path.name == COMPLETE_FILE and path.parent.name == META_DIR:
            continue  # see EXCLUDED
        rel = f"{prefix}/{path.relative_to(root).as_posix()}"
        for suffix, art in digest_file(path, paths).items():
            artifacts[rel + suffix] = art
    if any(root.rglob("*.parquet")):
        for rel, art in digest_parquet_partitions(root, paths).items():
            artifacts[f"{prefix}/{rel}"] = art
    return artifacts


# -- running the chain ------------------------------------------------------------------------


def stage_commands(work: Path, shared: Path, langs: str, steps: int) -> list[tuple[str, list[str]]]:
    """(name, cc100 arguments) of each stage, in order."""
    wet = str(shared / WET_GLOB)
    return [
        ("lm", ["lm", "--reference", str(shared / "reference"), "--output", str(work / "lm"),
                "--langs", langs, "--workers", "2"]),
        ("corpus", ["corpus", "--input", wet, "--output", str(work / "corpus"), "--lm-dir", str(work / "lm"),
                    "--workers", "1"]),
        ("corpus-variant", ["corpus", "--input", wet, "--output", str(work / "corpus-variant"),
                            "--lm-dir", str(work / "lm"), "--workers", "1", "--near-dedup",
                            "--lid", "per-paragraph", "--dedup", "keep-first", "--dedup-group-size", "1",
                            "--cutoffs", str(shared / "ccnet_cutoff.csv")]),
        ("vocab", ["vocab", "--corpus", str(work / "corpus"), "--output", str(work / "vocab"),
                   "--vocab-size", "8000", "--sentences", "20000", "--allow-smaller-vocab",
                   "--threads", "1", "--seed", "0", "--quiet"]),
        ("tokenize", ["tokenize", "--corpus", str(work / "corpus"), "--vocab", str(work / "vocab"),
                      "--output", str(work / "shards"), "--workers", "2", "--valid-fraction", "0.05"]),
        ("pretrain", ["pretrain", "--shards", str(work / "shards"), "--vocab", str(work / "vocab"),
                      "--output", str(work / "run"), "--config", "tiny", "--steps", str(steps),
                      "--seed", "0", "--device", "cpu", "--log-every", "1", "--eval-every", "20"]),
    ]


OUTPUTS = ("lm", "corpus", "corpus-variant", "vocab", "shards", "run")


def prepare_workdir(work: Path) -> None:
    """A fresh work directory: refuses one this script did not make, empties one it did."""
    if work.exists() and any(work.iterdir()):
        if not (work / MARKER).is_file():
            raise SystemExit(f"output_digest: {work} is not empty and was not made by this script; "
                             "give a new --workdir")
        shutil.rmtree(work)
    (work / "logs").mkdir(parents=True, exist_ok=True)
    (work / MARKER).write_text("made by bench/output_digest.py; emptied by its next run\n")


def stage_env(repo: Path, threads: int) -> dict[str, str]:
    """PYTHONPATH = the checkout under test; a fixed thread count, since torch's CPU reductions
    (and so the losses' last bits) may depend on it, and a busy machine slows many threads down."""
    env = dict(os.environ, PYTHONPATH=str(repo), CC100_PROGRESS_EVERY_S="3600")
    if "CC100_KENLM_BIN" not in env and (REPO_ROOT / ".tools" / "bin").is_dir():
        env["CC100_KENLM_BIN"] = str(REPO_ROOT / ".tools" / "bin")  # the same lmplz for any --repo
    for var in THREAD_VARS:
        env[var] = str(threads)
    return env


THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def run_stage(name: str, command: list[str], env: dict[str, str], repo: Path, work: Path) -> float:
    log = work / "logs" / f"{name}.log"
    start = time.monotonic()
    with open(log, "w", encoding="utf-8") as out:
        rc = subprocess.call(command, cwd=repo, env=env, stdout=out, stderr=subprocess.STDOUT)
    seconds = time.monotonic() - start
    if rc != 0:
        tail = "".join(log.read_text(encoding="utf-8", errors="replace").splitlines(True)[-20:])
        raise SystemExit(f"output_digest: stage {name} exited {rc} after {seconds:.1f}s "
                         f"({shlex.join(command)}); last lines of {log}:\n{tail}")
    print(f"[digest] {name:<15} {seconds:6.1f}s", file=sys.stderr, flush=True)
    return seconds


def default_cc100(repo: Path) -> str:
    """`python -m cc100`, or `python -m train.cli` in a checkout from before the dispatcher moved."""
    module = "cc100" if (repo / "cc100" / "__main__.py").is_file() else "train.cli"
    return f"{sys.executable} -m {module}"


def run_chain(args, work: Path, shared: Path) -> tuple[list[dict], dict[str, float]]:
    prefix = shlex.split(args.cc100)
    env = stage_env(args.repo, args.threads)
    commands, timings = [], {}
    for name, stage_args in stage_commands(work, shared, args.langs, args.steps):
        command = prefix + stage_args
        commands.append({"stage": name, "command": command})
        timings[name] = round(run_stage(name, command, env, args.repo, work), 1)
    return commands, timings


def git_commit(repo: Path) -> str | None:
    try:
        return subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


RUN_RECORD = "logs/run.json"  # what ran (commands, code, seconds), for a later --no-run


def record_run(args, work: Path, shared: Path, paths: Paths) -> dict:
    """Runs the chain and writes what ran into WORK/logs/run.json."""
    prepare_workdir(work)
    commands, timings = run_chain(args, work, shared)
    for c in commands:
        c["command"] = [paths.text(part) for part in c["command"]]
    run = {"repo_commit": git_commit(args.repo), "repo": str(args.repo), "cc100": args.cc100,
           "threads": args.threads, "commands": commands, "seconds": timings}
    (work / RUN_RECORD).write_text(json.dumps(run, indent=1) + "\n", encoding="utf-8")
    return run


def read_run(work: Path) -> dict:
    path = work / RUN_RECORD
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {"seconds": {}}


def make_digest(args) -> dict:
    work, shared = args.workdir.resolve(), args.shared.resolve()
    paths = Paths({str(work): "<WORK>", str(shared): "<SHARED>", str(args.repo.resolve()): "<REPO>"})
    args.cc100 = args.cc100 or default_cc100(args.repo)
    run = read_run(work) if args.no_run else record_run(args, work, shared, paths)
    start = time.monotonic()
    artifacts = {}
    for name in OUTPUTS:
        if (work / name).is_dir():
            artifacts.update(digest_tree(work / name, name, paths))
    run["seconds"]["digest"] = round(time.monotonic() - start, 1)
    return {"format": DIGEST_FORMAT, **run, "workdir": str(work), "shared_data": str(shared),
            "excluded": EXCLUDED, "artifacts": artifacts}


# -- comparing two digests ----------------------------------------------------------------------


def compare_artifacts(a: dict, b: dict, skip: list[str] = ()) -> list[tuple[str, str, str]]:
    """(artifact, kind, status) for the union of both digests' artifacts, sorted by name."""
    rows = []
    for name in sorted(set(a) | set(b)):
        kind = (a.get(name) or b.get(name))["kind"]
        if any(fnmatch.fnmatchcase(name, pattern) for pattern in skip):
            status = "skipped"
        elif name not in b:
            status = "only in A"
        elif name not in a:
            status = "only in B"
        else:
            status = "same" if a[name]["sha256"] == b[name]["sha256"] else "different"
        rows.append((name, kind, status))
    return rows


def first_loss_difference(a: dict, b: dict) -> str:
    """Where two :losses artifacts first part, for the table."""
    for (sa, la), (sb, lb) in zip(a.get("losses", []), b.get("losses", [])):
        if sa != sb or la != lb:
            return f"  (step {sa}: {la!r} vs step {sb}: {lb!r})"
    return ""


def format_table(rows: list[tuple[str, str, str]], a: dict, b: dict) -> str:
    width = max([len(r[0]) for r in rows] + [8])
    lines = [f"{'artifact':<{width}}  {'kind':<8}  status", "-" * (width + 22)]
    for name, kind, status in rows:
        note = first_loss_difference(a[name], b[name]) if status == "different" and kind == "losses" else ""
        lines.append(f"{name:<{width}}  {kind:<8}  {status}{note}")
    counts = {}
    for _, _, status in rows:
        counts[status] = counts.get(status, 0) + 1
    lines.append("")
    lines.append(", ".join(f"{n} {s}" for s, n in sorted(counts.items())))
    return "\n".join(lines)


def compare_main(path_a: Path, path_b: Path, skip: list[str], only_differences: bool) -> int:
    a, b = (json.loads(Path(p).read_text(encoding="utf-8")) for p in (path_a, path_b))
    for key in ("shared_data", "cc100", "threads"):
        if a.get(key) != b.get(key):
            print(f"note: {key} differs: {a.get(key)!r} vs {b.get(key)!r}", file=sys.stderr)
    rows = compare_artifacts(a["artifacts"], b["artifacts"], skip)
    shown = [r for r in rows if r[2] != "same"] if only_differences else rows
    print(f"A: {path_a} ({a.get('repo_commit')})\nB: {path_b} ({b.get('repo_commit')})\n")
    print(format_table(shown, a["artifacts"], b["artifacts"]) if shown else "no differences")
    return 1 if any(status not in ("same", "skipped") for _, _, status in rows) else 0


# -- command line ---------------------------------------------------------------------------------


def parse_args(argv: list[str] | None):
    default_shared = os.environ.get("CC100_SHARED_DATA") or str(REPO_ROOT.parent / "shared" / "data")
    p = argparse.ArgumentParser(prog="python -m bench.output_digest", description=__doc__.split("\n\n")[0])
    p.add_argument("--compare", nargs=2, type=Path, metavar=("A.json", "B.json"),
                   help="compare two digests: one line per artifact, exit 1 on any difference")
    p.add_argument("--skip", action="append", default=[], metavar="GLOB",
                   help="with --compare: artifacts (fnmatch on the name) shown as skipped, not compared")
    p.add_argument("--differences", action="store_true", help="with --compare: list only what is not the same")
    p.add_argument("--workdir", type=Path, default=Path("/tmp/cc100-digest"),
                   help="where the stages write (emptied first if this script made it)")
    p.add_argument("--output", type=Path, help="the digest JSON (default: stdout)")
    p.add_argument("--shared", type=Path, default=Path(default_shared),
                   help="the shared samples ($CC100_SHARED_DATA, default ../shared/data)")
    p.add_argument("--repo", type=Path, default=REPO_ROOT,
                   help="the checkout whose code runs (PYTHONPATH and working directory; default: this one)")
    p.add_argument("--cc100", help="the command prefix of `cc100` (default: this Python with `-m cc100` "
                                   "where --repo has cc100/__main__.py, else `-m train.cli`, the older "
                                   "home of the dispatcher); e.g. '.venv/bin/cc100'")
    p.add_argument("--langs", default=DEFAULT_LANGS, help="languages of `cc100 lm` (default %(default)s)")
    p.add_argument("--steps", type=int, default=60, help="pretraining steps (default %(default)s)")
    p.add_argument("--threads", type=int, default=1,
                   help="OMP/MKL/OpenBLAS threads of every stage (default %(default)s; recorded in the digest)")
    p.add_argument("--no-run", action="store_true", help="digest the outputs already in --workdir")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.compare:
        return compare_main(*args.compare, args.skip, args.differences)
    digest = make_digest(args)
    text = json.dumps(digest, indent=1, sort_keys=True, ensure_ascii=False) + "\n"
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text, encoding="utf-8")
        print(f"[digest] {len(digest['artifacts'])} artifacts -> {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
