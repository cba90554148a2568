"""`cc100 tokenize`: Parquet corpus -> per-language token shards (format in train/shards.py).

    cc100 tokenize --corpus OUTPUT --vocab VOCAB_DIR --output SHARDS [--buckets head,middle]
                   [--langs en,fr] [--workers N] [--valid-fraction 0.01]

Why a multiprocessing pool and not Beam: the work is a pure per-file map whose output must be one
flat, ordered token file per input file, and the cost is all inside SentencePiece's C++ encoder.
A pool of processes (one tokenizer each, loaded once) saturates the cores with no shuffle and
no runner, each input file is streamed in record batches (memory is one batch, never a file),
and resuming is trivial: a file whose done.json exists is skipped on the next run.

Every paragraph (each `\n`-separated line of `raw_content`, blank ones dropped) is encoded on
its own and ends with </s>, as fairseq binarises one line per paragraph; the shard index keeps
the document boundaries (format in train/shards.py). A document goes to the held-out "valid" split when the hash of its text
falls under --valid-fraction, so the split does not depend on file order or worker count.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing as mp
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.utils.cliflags import add_config_flags, add_force_flag, config_from_args, cores, option
from pipeline.contracts import (VOCAB_MODEL, OwnershipError, claim, clear_completion, fingerprint, mark_complete,
                                part_files, pop_force, skip_if_up_to_date)
from train.shards import (MANIFEST, SPLITS, ShardWriter, build_manifest, dtype_for_vocab,
                          file_sha256, write_json_atomic)
from train.shards import VERSION as SHARDS_VERSION

STAGE = "tokenize"  # the stage name in SHARDS/.cc100/stage.json
DONE_SUFFIX = ".done.json"


def is_valid_doc(text: str, valid_fraction: float) -> bool:
    """Deterministic held-out assignment by content hash (same text -> same split, any order)."""
    if valid_fraction <= 0:
        return False
    h = int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "little")
    return h < valid_fraction * 2.0 ** 64


def encode_documents(tokenizer, texts: list[str | None], num_threads: int | None = None
                     ) -> list[list[int] | None]:
    """Each text -> its paragraphs' ids, each paragraph + </s>; None for an empty document."""
    paragraphs: list[str] = []
    spans: list[tuple[int, int]] = []
    for text in texts:
        lines = [p for p in (text or "").split("\n") if p.strip()]
        spans.append((len(paragraphs), len(paragraphs) + len(lines)))
        paragraphs.extend(lines)
    encoded = tokenizer.encode_batch(paragraphs, num_threads=num_threads) if paragraphs else []
    out: list[list[int] | None] = []
    for a, b in spans:
        ids = [t for p in encoded[a:b] for t in (*p, tokenizer.eos_id)]
        out.append(ids or None)
    return out


def discover(corpus: Path, buckets: list[str] | None, languages: list[str] | None) -> list[dict]:
    """CORPUS/{lang}/{bucket}/*.parquet -> jobs, in sorted (deterministic) order (metadata in
    CORPUS/.cc100/ and other hidden names skipped: pipeline/contracts.py)."""
    jobs = []
    for path in part_files(corpus):
        bucket, lang = path.parent.name, path.parent.parent.name
        if buckets and bucket not in buckets:
            continue
        if languages and lang not in languages:
            continue
        jobs.append({"source": str(path), "language": lang, "bucket": bucket,
                     "name": f"{bucket}.{path.stem}"})
    return jobs


# One tokenizer per worker process, loaded on first use (the pool initializer).
_TOKENIZER = None


def _init_worker(vocab_file: str) -> None:
    global _TOKENIZER
    from train.tokenizer import XLMRTokenizer

    _TOKENIZER = XLMRTokenizer(vocab_file)


def tokenize_file(job: dict) -> dict:
    """One Parquet file -> its train/valid shard pair and done.json. Returns the part record."""
    import pyarrow.parquet as pq

    out_dir = Path(job["out_dir"]) / job["language"]
    out_dir.mkdir(parents=True, exist_ok=True)
    prefix = out_dir / job["name"]
    t0 = time.time()
    source = Path(job["source"])
    dtype = np.dtype(job["dtype"])
    writers = {s: ShardWriter(prefix.with_name(f"{prefix.name}.{s}"), dtype) for s in SPLITS}
    empty = 0
    try:
        pf = pq.ParquetFile(source)
        if "raw_content" not in pf.schema_arrow.names:
            raise ValueError("no raw_content column (not a cc100 corpus file)")
        for batch in pf.iter_batches(batch_size=job["batch_size"], columns=["raw_content"]):
            texts = batch.column(0).to_pylist()
            docs = encode_documents(_TOKENIZER, texts, num_threads=job["threads"])
            for text, ids in zip(texts, docs):
                if ids is None:
                    empty += 1
                    continue
                split = "valid" if is_valid_doc(text, job["valid_fraction"]) else "train"
                writers[split].add(ids)
        stats = {s: w.close() for s, w in writers.items()}
    except Exception as e:  # one bad file must not take the pool down; reported by the caller
        for w in writers.values():
            w.abort()
        return {**job, "error": f"{type(e).__name__}: {e}"}
    st = source.stat()
    part = {
        "version": SHARDS_VERSION, "language": job["language"], "bucket": job["bucket"],
        "name": job["name"],
        "source": str(source), "source_bytes": st.st_size, "vocab_sha256": job["vocab_sha256"],
        "dtype": dtype.name, "empty_docs": empty, "seconds": round(time.time() - t0, 3),
    }
    for s in SPLITS:
        w = writers[s]
        part[s] = {**stats[s], "bin": str(w.bin_path.relative_to(job["out_dir"])),
                   "idx": str(w.idx_path.relative_to(job["out_dir"]))}
    write_json_atomic(prefix.with_name(prefix.name + DONE_SUFFIX), part)
    return part


def _done_record(job: dict, vocab_sha: str) -> dict | None:
    """The done.json of a finished part, if it matches the source file and vocabulary."""
    path = Path(job["out_dir"]) / job["language"] / (job["name"] + DONE_SUFFIX)
    if not path.is_file():
        return None
    try:
        rec = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    if rec.get("vocab_sha256") != vocab_sha:
        raise ValueError(f"{path} was made with a different vocabulary; use a new --output "
                         f"directory")
    if rec.get("source_bytes") != Path(job["source"]).stat().st_size:
        return None  # the source changed: redo it
    if rec.get("version") != SHARDS_VERSION:
        return None  # written in an older shard format: redo it
    return rec


def _human(n: float) -> str:
    for unit in ("", "K", "M", "G", "T"):
        if abs(n) < 1000:
            return f"{n:.1f}{unit}" if unit else f"{int(n)}"
        n /= 1000
    return f"{n:.1f}P"


def completion(corpus: Path, vocab_dir: Path, *, buckets=None, languages=None,
               valid_fraction: float = 0.01) -> tuple[dict, dict]:
    """(config, inputs) that decide the shards (workers and batch size do not)."""
    config = {"buckets": buckets, "languages": languages, "valid_fraction": valid_fraction}
    return config, {"corpus": fingerprint(corpus), "vocab": fingerprint(vocab_dir)}


def has_current_manifest(output: Path) -> bool:
    """A manifest of this shard format: the shards are complete (an older format is redone)."""
    try:
        return json.loads((output / MANIFEST).read_text()).get("version") == SHARDS_VERSION
    except (OSError, ValueError, AttributeError):
        return False


@dataclass
class TokenizeConfig:
    corpus: Path = option("--corpus", required=True, help="corpus OUTPUT dir ({lang}/{bucket}/*.parquet)")
    vocab: Path = option("--vocab", required=True, help="VOCAB_DIR with sentencepiece.bpe.model")
    output: Path = option("--output", required=True, help="SHARDS dir to write")
    buckets: tuple[str, ...] | None = option("--buckets", default=None, comma_list=True, metavar="B,B",
                                             help="perplexity buckets to keep (default: all found)")
    langs: tuple[str, ...] | None = option("--langs", default=None, comma_list=True, metavar="en,fr,...",
                                           aliases=("--languages",), help="languages to keep (default: all found)")
    workers: int = option("--workers", default_factory=cores, help="processes (default: cores)")
    valid_fraction: float = option("--valid-fraction", default=0.01,
                                   help="share of documents held out for validation (default %(default)s)")
    batch_size: int = option("--batch-size", default=512, help="Parquet rows read at a time")

    def __post_init__(self):
        if not 0.0 <= self.valid_fraction < 1.0:
            raise ValueError(f"valid_fraction: --valid-fraction must be in [0, 1), got {self.valid_fraction}")
        if self.workers < 1:
            raise ValueError(f"workers: --workers must be >= 1, got {self.workers}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size: --batch-size must be >= 1, got {self.batch_size}")


def run(corpus: Path, vocab_dir: Path, output: Path, *, buckets=None, languages=None,
        workers: int = 1, valid_fraction: float = 0.01, batch_size: int = 512) -> int:
    from train.tokenizer import XLMRTokenizer

    vocab_file = vocab_dir / VOCAB_MODEL
    if not corpus.is_dir():
        print(f"cc100 tokenize: error: --corpus {corpus}: not a directory", file=sys.stderr)
        return 2
    if not vocab_file.is_file():
        print(f"cc100 tokenize: error: --vocab {vocab_dir}: no {VOCAB_MODEL} (run `cc100 vocab`)",
              file=sys.stderr)
        return 2
    try:
        tok = XLMRTokenizer(vocab_file)
    except (OSError, ValueError) as e:
        print(f"cc100 tokenize: error: --vocab: {e}", file=sys.stderr)
        return 2
    jobs = discover(corpus, buckets, languages)
    if not jobs:
        print(f"cc100 tokenize: error: --corpus {corpus}: no {{lang}}/{{bucket}}/*.parquet files"
              + (f" for buckets {buckets}" if buckets else "")
              + (f" and languages {languages}" if languages else ""), file=sys.stderr)
        return 2
    try:
        claim(output, STAGE)  # new, empty or an earlier tokenize output: never someone else's files
    except OwnershipError as e:
        print(f"cc100 tokenize: error: --output {e}", file=sys.stderr)
        return 2
    vocab_sha = file_sha256(vocab_file)
    dtype = dtype_for_vocab(tok.vocab_size)
    clear_completion(output)  # complete again only once the manifest is rewritten
    (output / MANIFEST).unlink(missing_ok=True)  # rewritten only once every part is done
    threads = 1 if workers > 1 else None
    for job in jobs:
        job.update(out_dir=str(output), dtype=dtype.name, vocab_sha256=vocab_sha,
                   valid_fraction=valid_fraction, batch_size=batch_size, threads=threads)

    parts, todo = [], []
    for job in jobs:
        try:
            rec = _done_record(job, vocab_sha)
        except ValueError as e:
            print(f"cc100 tokenize: error: {e}", file=sys.stderr)
            return 2
        (parts if rec else todo).append(rec or job)
    print(f"cc100 tokenize: {len(jobs)} files ({len(parts)} already done), "
          f"vocab {tok.vocab_size} ids ({dtype.name}), {workers} workers", flush=True)

    failed: list[dict] = []
    t0 = time.time()
    done_tokens = 0

    def report(i: int, rec: dict) -> None:
        nonlocal done_tokens
        label = f"{rec['language']}/{rec['bucket']}/{Path(rec['source']).name}"
        if "error" in rec:
            failed.append(rec)
            print(f"[{i}/{len(todo)}] FAILED {label}: {rec['error']}", flush=True)
            return
        parts.append(rec)
        n = rec["train"]["tokens"] + rec["valid"]["tokens"]
        done_tokens += n
        rate = done_tokens / max(time.time() - t0, 1e-9)
        print(f"[{i}/{len(todo)}] {label}: {rec['train']['docs'] + rec['valid']['docs']} docs, "
              f"{_human(n)} tokens ({_human(rate)} tok/s overall)", flush=True)

    if workers <= 1 or len(todo) <= 1:
        _init_worker(str(vocab_file))
        for i, job in enumerate(todo, 1):
            report(i, tokenize_file(job))
    else:
        with mp.get_context("spawn").Pool(min(workers, len(todo)), initializer=_init_worker,
                                          initargs=(str(vocab_file),)) as pool:
            for i, rec in enumerate(pool.imap_unordered(tokenize_file, todo), 1):
                report(i, rec)

    if failed:
        print(f"cc100 tokenize: error: {len(failed)} of {len(jobs)} files failed (listed above); "
              f"no manifest written. Fix or remove them and run again: finished files are kept.",
              file=sys.stderr)
        return 1

    vocab = {"file": str(vocab_file.resolve()), "sha256": vocab_sha, "size": tok.vocab_size,
             "bos_id": tok.bos_id, "pad_id": tok.pad_id, "eos_id": tok.eos_id,
             "unk_id": tok.unk_id, "mask_id": tok.mask_id}
    settings = {"valid_fraction": valid_fraction, "buckets": buckets, "languages": languages,
                "corpus": str(corpus.resolve())}
    max_id = max(max(p["train"]["max_id"], p["valid"]["max_id"]) for p in parts)
    if max_id >= tok.vocab_size:
        print(f"cc100 tokenize: error: token id {max_id} >= vocab size {tok.vocab_size} in the "
              f"existing parts of {output}: remove it and run again", file=sys.stderr)
        return 1
    manifest = build_manifest(output, parts, dtype=dtype, vocab=vocab, settings=settings)
    manifest["empty_docs"] = sum(p["empty_docs"] for p in parts)
    write_json_atomic(output / MANIFEST, manifest)
    mark_complete(output, STAGE, *completion(corpus, vocab_dir, buckets=buckets, languages=languages,
                                              valid_fraction=valid_fraction))

    print(f"\n{'lang':<8}{'train docs':>12}{'train tokens':>14}{'valid docs':>12}{'valid tokens':>14}")
    for lang, s in manifest["languages"].items():
        print(f"{lang:<8}{s['train']['docs']:>12}{s['train']['tokens']:>14}"
              f"{s['valid']['docs']:>12}{s['valid']['tokens']:>14}")
    total = sum(s[x]["tokens"] for s in manifest["languages"].values() for x in SPLITS)
    print(f"\n{len(manifest['languages'])} languages, {_human(total)} tokens, "
          f"{manifest['empty_docs']} empty documents skipped, {time.time() - t0:.1f}s -> "
          f"{output / MANIFEST}")
    return 0


def main(argv: list[str] | None = None) -> int:
    force, argv = pop_force(argv)
    p = argparse.ArgumentParser(prog="cc100 tokenize", description=__doc__.split("\n\n")[0])
    add_config_flags(p, TokenizeConfig)
    add_force_flag(p)
    try:
        cfg = config_from_args(TokenizeConfig, p.parse_args(argv))
    except ValueError as e:
        p.error(str(e))
    decided = completion(cfg.corpus, cfg.vocab, buckets=cfg.buckets, languages=cfg.langs,
                         valid_fraction=cfg.valid_fraction)
    if has_current_manifest(cfg.output) and skip_if_up_to_date(cfg.output, STAGE, *decided, force=force):
        return 0
    return run(cfg.corpus, cfg.vocab, cfg.output, buckets=cfg.buckets, languages=cfg.langs,
               workers=cfg.workers, valid_fraction=cfg.valid_fraction, batch_size=cfg.batch_size)


if __name__ == "__main__":
    sys.exit(main())
