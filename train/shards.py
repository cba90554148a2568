"""Token shards: the on-disk format between `cc100 tokenize` and `cc100 pretrain`.

Layout of SHARDS/ (nanoGPT / fairseq-style flat memmaps, one set per input Parquet file):

    manifest.json                                 what pretraining reads first (see below)
    {lang}/{bucket}.{part}.{split}.bin            token ids, one flat array (dtype in the manifest)
    {lang}/{bucket}.{part}.{split}.idx.npy        int64 document boundaries [0, end_1, ..., n_tokens]
    {lang}/{bucket}.{part}.done.json              per-input-file commit marker with its counts

split is "train" or "valid" (held-out documents). Every paragraph ends with </s>, as in fairseq's
binarised data (one line per paragraph); the .idx.npy holds the document boundaries. A
language's stream is the concatenation of its .bin files in manifest order. uint16 holds a
vocabulary of up to 65536 ids, anything larger (XLM-R's 250002) is stored as uint32.

A part is written to temporary names and renamed into place; its done.json is renamed last, so
a part either exists completely or is redone by the next `cc100 tokenize` run.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipeline.contracts import SHARDS_MANIFEST as MANIFEST
from pipeline.contracts import atomic_path, atomic_write_json, commit_file, temporary_path

FORMAT = "cc100-token-shards"
VERSION = 2  # 1: one </s> per document (paragraphs glued together); 2: </s> after every paragraph
SPLITS = ("train", "valid")


class ShardError(ValueError):
    """Missing, corrupt or mismatched shards (message names the file)."""


def dtype_for_vocab(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16) if vocab_size <= 1 << 16 else np.dtype(np.uint32)


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def write_json_atomic(path: str | os.PathLike, obj) -> None:
    """The shards' JSON files (manifest, finished parts), written atomically."""
    atomic_write_json(path, obj, indent=1, ensure_ascii=False)


class ShardWriter:
    """Appends documents to `{prefix}.bin` / `{prefix}.idx.npy`; `close()` renames them into place."""

    def __init__(self, prefix: str | os.PathLike, dtype: np.dtype):
        self.prefix = Path(prefix)
        self.dtype = np.dtype(dtype)
        self.bin_path = self.prefix.with_name(self.prefix.name + ".bin")
        self.idx_path = self.prefix.with_name(self.prefix.name + ".idx.npy")
        self._tmp_bin = temporary_path(self.bin_path)
        self._f = open(self._tmp_bin, "wb")
        self._ends: list[int] = [0]
        self.max_id = -1

    @property
    def tokens(self) -> int:
        return self._ends[-1]

    @property
    def docs(self) -> int:
        return len(self._ends) - 1

    def add(self, ids) -> None:
        arr = np.asarray(ids)
        if arr.size == 0:
            return
        if arr.min() < 0 or arr.max() > np.iinfo(self.dtype).max:
            raise ValueError(f"{self.bin_path}: token id out of range for {self.dtype}")
        self.max_id = max(self.max_id, int(arr.max()))
        self._f.write(arr.astype(self.dtype, copy=False).tobytes())
        self._ends.append(self._ends[-1] + int(arr.size))

    def close(self) -> dict:
        self._f.close()
        commit_file(self._tmp_bin, self.bin_path)
        with atomic_path(self.idx_path) as tmp_idx, open(tmp_idx, "wb") as f:
            np.save(f, np.asarray(self._ends, dtype=np.int64))
        return {"tokens": self.tokens, "docs": self.docs, "max_id": self.max_id}

    def abort(self) -> None:
        """Drop the unfinished temporary file (a finished part stays as renamed)."""
        if not self._f.closed:
            self._f.close()
        self._tmp_bin.unlink(missing_ok=True)


@dataclass
class ShardFile:
    bin: Path
    idx: Path
    tokens: int
    docs: int


@dataclass
class SplitInfo:
    tokens: int = 0
    docs: int = 0
    files: list[ShardFile] = field(default_factory=list)


@dataclass
class Manifest:
    """The parsed, validated manifest.json of a shards directory."""

    root: Path
    dtype: np.dtype
    vocab_size: int
    vocab_sha256: str
    special_ids: dict[str, int]  # bos, pad, eos, unk, mask
    languages: dict[str, dict[str, SplitInfo]]  # lang -> split -> info
    raw: dict

    def tokens(self, split: str = "train") -> dict[str, int]:
        return {lang: s[split].tokens for lang, s in self.languages.items()}


def build_manifest(root: Path, parts: list[dict], *, dtype: np.dtype, vocab: dict,
                   settings: dict) -> dict:
    """The manifest object from the parts' done.json records (sorted, so it is deterministic)."""
    languages: dict[str, dict] = {}
    for part in sorted(parts, key=lambda p: (p["language"], p["name"])):
        lang = languages.setdefault(part["language"], {s: {"tokens": 0, "docs": 0, "files": []}
                                                       for s in SPLITS})
        for split in SPLITS:
            info = part[split]
            entry = lang[split]
            entry["tokens"] += info["tokens"]
            entry["docs"] += info["docs"]
            if info["tokens"]:
                entry["files"].append({"bin": info["bin"], "idx": info["idx"],
                                       "tokens": info["tokens"], "docs": info["docs"]})
    return {
        "format": FORMAT,
        "version": VERSION,
        "dtype": np.dtype(dtype).name,
        "vocab": vocab,
        "settings": settings,
        "languages": languages,
    }


def load_manifest(root: str | os.PathLike, check_files: bool = True) -> Manifest:
    """Read SHARDS/manifest.json and check that every shard file it names exists with the right size.

    Raises ShardError naming the first problem; reading the token files is left to `TokenStream`.
    """
    root = Path(root)
    path = root / MANIFEST
    if not root.is_dir():
        raise ShardError(f"{root}: shards directory not found (run `cc100 tokenize` first)")
    if not path.is_file():
        raise ShardError(f"{path}: missing (an unfinished or failed `cc100 tokenize`? run it again)")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ShardError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise ShardError(f"{path}: not a {FORMAT} manifest")
    if raw.get("version") != VERSION:
        raise ShardError(f"{path}: shard format version {raw.get('version')!r}, this code reads version "
                         f"{VERSION} (</s> after every paragraph): re-run `cc100 tokenize` (finished "
                         f"parts of the old format are redone)")
    try:
        dtype = np.dtype(raw["dtype"])
        vocab = raw["vocab"]
        specials = {k: int(vocab[k + "_id"]) for k in ("bos", "pad", "eos", "unk", "mask")}
        languages: dict[str, dict[str, SplitInfo]] = {}
        for lang, splits in raw["languages"].items():
            languages[lang] = {}
            for split in SPLITS:
                s = splits[split]
                files = [ShardFile(root / f["bin"], root / f["idx"], int(f["tokens"]), int(f["docs"]))
                         for f in s["files"]]
                languages[lang][split] = SplitInfo(int(s["tokens"]), int(s["docs"]), files)
        manifest = Manifest(root, dtype, int(vocab["size"]), str(vocab["sha256"]), specials,
                            languages, raw)
    except (KeyError, TypeError, ValueError) as e:
        raise ShardError(f"{path}: malformed manifest ({type(e).__name__}: {e})") from None
    if not languages:
        raise ShardError(f"{path}: no languages (was the corpus empty?)")
    if check_files:
        for lang, splits in languages.items():
            for split, info in splits.items():
                if sum(f.tokens for f in info.files) != info.tokens:
                    raise ShardError(f"{path}: {lang}/{split} token count does not match its files")
                for f in info.files:
                    check_shard_file(f, dtype)
    return manifest


def check_shard_file(f: ShardFile, dtype: np.dtype) -> None:
    """Sizes only (cheap even for terabytes): .bin length, .idx shape and its last offset."""
    if not f.bin.is_file():
        raise ShardError(f"{f.bin}: shard file missing")
    if not f.idx.is_file():
        raise ShardError(f"{f.idx}: shard index missing")
    size = f.bin.stat().st_size
    if size != f.tokens * dtype.itemsize:
        raise ShardError(f"{f.bin}: {size} bytes, the manifest says {f.tokens} tokens of {dtype.name} "
                         f"({f.tokens * dtype.itemsize} bytes): truncated or corrupt")
    try:
        idx = np.load(f.idx, mmap_mode="r")
    except (OSError, ValueError) as e:
        raise ShardError(f"{f.idx}: unreadable index ({e})") from None
    if idx.dtype != np.int64 or idx.ndim != 1 or len(idx) != f.docs + 1 or idx[0] != 0 \
            or int(idx[-1]) != f.tokens:
        raise ShardError(f"{f.idx}: index does not match {f.bin.name} ({f.docs} docs, {f.tokens} tokens)")


class TokenStream:
    """One language split as a single virtual token array over its memmapped .bin files."""

    def __init__(self, files: list[ShardFile], dtype: np.dtype):
        self.files = files
        self._maps = [np.memmap(f.bin, dtype=dtype, mode="r") if f.tokens else None for f in files]
        self._starts = np.cumsum([0] + [f.tokens for f in files])
        self.tokens = int(self._starts[-1])

    def __len__(self) -> int:
        return self.tokens

    def slice(self, start: int, stop: int) -> np.ndarray:
        """Tokens [start, stop) as int64, crossing file boundaries as needed."""
        if not 0 <= start <= stop <= self.tokens:
            raise IndexError(f"slice [{start}, {stop}) outside a stream of {self.tokens} tokens")
        out = np.empty(stop - start, dtype=np.int64)
        i = int(np.searchsorted(self._starts, start, side="right")) - 1
        pos = start
        while pos < stop:
            base = int(self._starts[i])
            end = min(stop, int(self._starts[i + 1]))
            if end > pos:
                out[pos - start:end - start] = self._maps[i][pos - base:end - base]
            pos = end
            i += 1
        return out

    def documents(self, limit: int | None = None):
        """Yield documents (including their final </s>) in order; for inspection and tests."""
        n = 0
        for f, m in zip(self.files, self._maps):
            if m is None:
                continue
            ends = np.load(f.idx, mmap_mode="r")
            for a, b in zip(ends[:-1], ends[1:]):
                if limit is not None and n >= limit:
                    return
                yield np.asarray(m[a:b], dtype=np.int64)
                n += 1
