"""The token shard format: writer/reader round trip, manifest, and clear errors on damage."""

from __future__ import annotations

import json

import numpy as np
import pytest

from train.shards import (MANIFEST, ShardError, ShardWriter, TokenStream, build_manifest,
                          dtype_for_vocab, load_manifest, write_json_atomic)

VOCAB = {"file": "spm.model", "sha256": "0" * 64, "size": 1000, "bos_id": 0, "pad_id": 1,
         "eos_id": 2, "unk_id": 3, "mask_id": 999}


def write_part(root, lang, name, docs_by_split, dtype=np.uint16):
    """Write one part the way `cc100 tokenize` does and return its record."""
    (root / lang).mkdir(parents=True, exist_ok=True)
    rec = {"language": lang, "name": name}
    for split, docs in docs_by_split.items():
        w = ShardWriter(root / lang / f"{name}.{split}", dtype)
        for d in docs:
            w.add(d)
        stats = w.close()
        rec[split] = {**stats, "bin": str(w.bin_path.relative_to(root)),
                      "idx": str(w.idx_path.relative_to(root))}
    return rec


def make_shards(root, langs: dict[str, list[list[list[int]]]], valid=None):
    """langs: lang -> parts -> documents (token lists). Returns the written manifest dict."""
    parts = []
    for lang, lang_parts in langs.items():
        for i, docs in enumerate(lang_parts):
            v = (valid or {}).get(lang, []) if i == 0 else []
            parts.append(write_part(root, lang, f"head.part-{i:05d}", {"train": docs, "valid": v}))
    m = build_manifest(root, parts, dtype=np.dtype(np.uint16), vocab=VOCAB, settings={})
    write_json_atomic(root / MANIFEST, m)
    return m


def test_dtype_follows_vocabulary_size():
    assert dtype_for_vocab(2002) == np.uint16
    assert dtype_for_vocab(65536) == np.uint16
    assert dtype_for_vocab(65537) == np.uint32
    assert dtype_for_vocab(250002) == np.uint32  # XLM-R


def test_writer_refuses_ids_outside_dtype(tmp_path):
    w = ShardWriter(tmp_path / "x.train", np.uint16)
    with pytest.raises(ValueError, match="out of range"):
        w.add([5, 70000])
    w.abort()
    assert not list(tmp_path.iterdir()), "abort must leave no temporary file behind"


def test_round_trip_across_parts(tmp_path):
    rng = np.random.default_rng(0)
    docs = [[rng.integers(4, 999, size=int(rng.integers(1, 40))).tolist() + [2] for _ in range(30)]
            for _ in range(3)]
    m = make_shards(tmp_path, {"xx": docs})
    assert m["languages"]["xx"]["train"]["docs"] == 90
    manifest = load_manifest(tmp_path)
    info = manifest.languages["xx"]["train"]
    flat = np.concatenate([np.array(d) for part in docs for d in part])
    assert info.tokens == len(flat) == manifest.tokens()["xx"]
    stream = TokenStream(info.files, manifest.dtype)
    # every slice, including ones that span part boundaries, equals the concatenated stream
    cuts = [0, 1, info.files[0].tokens - 3, info.files[0].tokens, info.files[0].tokens + 7, len(flat)]
    for a in cuts:
        for b in cuts:
            if a <= b:
                np.testing.assert_array_equal(stream.slice(a, b), flat[a:b])
    got = [d.tolist() for d in stream.documents()]
    assert got == [d for part in docs for d in part]
    with pytest.raises(IndexError):
        stream.slice(0, len(flat) + 1)


def test_index_holds_document_boundaries(tmp_path):
    rec = write_part(tmp_path, "xx", "p", {"train": [[5, 6, 2], [7, 2], [8, 9, 10, 2]]})
    idx = np.load(tmp_path / rec["train"]["idx"])
    assert idx.tolist() == [0, 3, 5, 9]
    assert np.fromfile(tmp_path / rec["train"]["bin"], dtype=np.uint16).tolist() == [5, 6, 2, 7, 2, 8, 9, 10, 2]


def _shards(tmp_path):
    make_shards(tmp_path, {"aa": [[[5, 6, 7, 2]] * 10], "bb": [[[8, 9, 2]] * 5]})
    return tmp_path


def test_missing_directory_and_manifest(tmp_path):
    with pytest.raises(ShardError, match="shards directory not found"):
        load_manifest(tmp_path / "nope")
    with pytest.raises(ShardError, match=r"manifest\.json: missing"):
        load_manifest(tmp_path)


def test_truncated_bin_is_reported_by_name(tmp_path):
    root = _shards(tmp_path)
    path = root / "aa" / "head.part-00000.train.bin"
    path.write_bytes(path.read_bytes()[:-2])
    with pytest.raises(ShardError, match=r"head\.part-00000\.train\.bin.*truncated or corrupt"):
        load_manifest(root)


def test_missing_shard_file_is_reported(tmp_path):
    root = _shards(tmp_path)
    (root / "bb" / "head.part-00000.train.idx.npy").unlink()
    with pytest.raises(ShardError, match="shard index missing"):
        load_manifest(root)


def test_index_not_matching_bin(tmp_path):
    root = _shards(tmp_path)
    np.save(root / "aa" / "head.part-00000.train.idx.npy", np.array([0, 4, 8, 12], dtype=np.int64))
    with pytest.raises(ShardError, match="index does not match"):
        load_manifest(root)


@pytest.mark.parametrize("edit, message", [
    (lambda m: "{not json", "not valid JSON"),
    (lambda m: json.dumps({**m, "version": 99}), "format version 99"),
    (lambda m: json.dumps({**m, "format": "other"}), "not a cc100-token-shards manifest"),
    (lambda m: json.dumps({k: v for k, v in m.items() if k != "vocab"}), "malformed manifest"),
    (lambda m: json.dumps({**m, "languages": {}}), "no languages"),
])
def test_damaged_manifest(tmp_path, edit, message):
    root = _shards(tmp_path)
    m = json.loads((root / MANIFEST).read_text())
    (root / MANIFEST).write_text(edit(m))
    with pytest.raises(ShardError, match=message):
        load_manifest(root)


def test_manifest_counts_and_specials(tmp_path):
    root = _shards(tmp_path)
    m = load_manifest(root)
    assert m.tokens("train") == {"aa": 40, "bb": 15}
    assert m.tokens("valid") == {"aa": 0, "bb": 0}
    assert m.special_ids == {"bos": 0, "pad": 1, "eos": 2, "unk": 3, "mask": 999}
    assert m.vocab_size == 1000 and m.dtype == np.uint16
