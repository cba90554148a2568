"""bench/output_digest.py: what it leaves out, what it keeps, and how --compare reports it (tiny inputs)."""

from __future__ import annotations

import datetime as dt
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bench.output_digest import (Paths, canonical_json, compare_artifacts, digest_checkpoint,
                                 digest_file, digest_parquet_partitions, digest_sentencepiece_model,
                                 digest_training_log, main)


def write_parquet(path, rows, work):
    """A Parquet file shaped like the corpus output: cc_segment a path, the run config in the footer."""
    table = pa.Table.from_pylist(rows).replace_schema_metadata(
        {b"cc100": json.dumps({"config": {"output": f"{work}/corpus", "min_len": 300}}).encode()})
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)


ROWS = [
    {"id": "b", "cc_segment": "/data/wet/s0.wet.gz", "record_offset": 2, "perplexity": 12.5,
     "date_download": dt.datetime(2019, 7, 17, tzinfo=dt.timezone.utc), "line_ids": [0, 2]},
    {"id": "a", "cc_segment": "/data/wet/s0.wet.gz", "record_offset": 1, "perplexity": None,
     "date_download": None, "line_ids": [1]},
]


def test_canonical_json_drops_timings_and_sizes_at_any_depth_and_replaces_paths_longest_first():
    paths = Paths({"/w": "<WORK>", "/w/shared": "<SHARED>"})
    record = {"seconds": 1.5, "tokens": 3, "files": [{"path": "/w/shared/x.gz", "seconds": 0.2}],
              "summary": {"peak_rss_mib": 180.0, "output": "/w/vocab", "elapsed_s": 9},
              "parts": [{"bytes": 31723}], "source_bytes": 31711}  # Parquet sizes follow the footer's paths
    assert canonical_json(record, paths) == {
        "tokens": 3, "files": [{"path": "<SHARED>/x.gz"}], "summary": {"output": "<WORK>/vocab"},
        "parts": [{}]}


def digest_corpus(work, rows):
    """The digest artifacts of a one-file corpus written under `work`, rows in the given order."""
    root = work / "corpus"
    write_parquet(root / "en" / "head" / "part-0.parquet", rows, work)
    paths = Paths({str(work): "<WORK>", "/data": "<SHARED>"})
    return {**digest_parquet_partitions(root, paths), **digest_file(root / "en" / "head" / "part-0.parquet", paths)}


def test_parquet_digest_ignores_the_work_dir(tmp_path):
    a, b = digest_corpus(tmp_path / "a", ROWS), digest_corpus(tmp_path / "b", ROWS)
    assert a == b and a["en/head:rows"]["rows"] == 2  # the footer's output path is a placeholder


def test_parquet_rows_ignore_the_order_but_data_pages_see_it(tmp_path):
    a, b = digest_corpus(tmp_path / "a", ROWS), digest_corpus(tmp_path / "b", ROWS[::-1])
    assert a["en/head:rows"] == b["en/head:rows"]
    assert a[":data_pages"] != b[":data_pages"]  # the row order inside a file is behaviour too


def test_parquet_rows_see_a_changed_value(tmp_path):
    changed = [dict(ROWS[0], perplexity=12.500000001), ROWS[1]]
    hashes = []
    for run, rows in (("a", ROWS), ("b", changed)):
        write_parquet(tmp_path / run / "en" / "head" / "part-0.parquet", rows, tmp_path)
        hashes.append(digest_parquet_partitions(tmp_path / run, Paths({}))["en/head:rows"]["sha256"])
    assert hashes[0] != hashes[1]


def test_training_log_keeps_exact_losses_and_drops_throughput(tmp_path):
    logs = []
    for run, speed in (("a", 100.0), ("b", 250.0)):
        path = tmp_path / run / "log.jsonl"
        path.parent.mkdir()
        lines = [{"step": 1, "loss": 9.003322166732595, "tokens_per_s": speed, "elapsed_s": speed},
                 {"step": 2, "loss": 8.9727666015625, "val_loss": {"en": 8.1}, "tokens_per_s": speed}]
        path.write_text("".join(json.dumps(rec) + "\n" for rec in lines))
        logs.append(digest_training_log(path))
    a, b = logs
    assert a[":losses"]["losses"] == [[1, 9.003322166732595], [2, 8.9727666015625]]
    assert a == b
    assert a[":val_loss"]["val_loss"] == [[2, {"en": 8.1}]]


def test_checkpoint_tensors_without_pythons_random_state_and_config_apart(tmp_path):
    torch = pytest.importorskip("torch")
    digests = []
    for run, python_state, output in (("a", (3, (1, 2), None), "/a/run"), ("b", (3, (4, 5), None), "/b/run")):
        ckpt = {"model": {"w": torch.arange(6, dtype=torch.float32).reshape(2, 3)},
                "optimizer": {"state": {0: {"step": torch.tensor(4.0)}}, "param_groups": [{"lr": 1e-3}]},
                "rng": {"torch": torch.tensor([1, 2], dtype=torch.uint8), "python": python_state},
                "step": 4, "train_config": {"output": output, "steps": 4}}
        torch.save(ckpt, tmp_path / f"{run}.pt")
        digests.append(digest_checkpoint(tmp_path / f"{run}.pt", Paths({f"/{run}": "<WORK>"})))
    a, b = digests
    assert a == b and a[":model"]["tensors"] == 1
    ckpt["model"]["w"][0, 0] = 1e-7  # one changed weight changes the model's hash
    torch.save(ckpt, tmp_path / "c.pt")
    assert digest_checkpoint(tmp_path / "c.pt", Paths({}))[":model"] != a[":model"]


def test_sentencepiece_model_hash_ignores_where_it_was_trained(tmp_path):
    spm = pytest.importorskip("sentencepiece")
    text = tmp_path / "text.txt"
    text.write_text("".join(f"the cat {w} sat on the mat {i}\n" for i, w in enumerate(["a", "b", "c"] * 30)))
    digests = []
    for where in ("one", "two"):
        (tmp_path / where).mkdir()
        spm.SentencePieceTrainer.train(input=str(text), model_prefix=str(tmp_path / where / "m"),
                                       vocab_size=30, minloglevel=2)
        digests.append(digest_sentencepiece_model(tmp_path / where / "m.model"))
    assert (tmp_path / "one" / "m.model").read_bytes() != (tmp_path / "two" / "m.model").read_bytes()
    assert digests[0] == digests[1]


def test_compare_names_each_artifact_and_exits_1_on_any_difference(tmp_path, capsys):
    art = {"kind": "bytes", "sha256": "1"}
    a = {"artifacts": {"same": art, "changed": art, "gone": art, "cfg": art}}
    b = {"artifacts": {"same": art, "changed": dict(art, sha256="2"), "new": art, "cfg": dict(art, sha256="3")}}
    assert compare_artifacts(a["artifacts"], b["artifacts"], skip=["cf?"]) == [
        ("cfg", "bytes", "skipped"), ("changed", "bytes", "different"), ("gone", "bytes", "only in A"),
        ("new", "bytes", "only in B"), ("same", "bytes", "same")]
    for name, digest in (("a.json", a), ("b.json", b), ("a2.json", a)):
        (tmp_path / name).write_text(json.dumps(digest))
    assert main(["--compare", str(tmp_path / "a.json"), str(tmp_path / "b.json")]) == 1
    table = capsys.readouterr().out
    assert "changed" in table and "different" in table and "only in B" in table
    assert main(["--compare", str(tmp_path / "a.json"), str(tmp_path / "a2.json")]) == 0
    assert capsys.readouterr().out.rstrip().endswith("4 same")
    a_only_skip = {"artifacts": {"cfg": dict(art, sha256="9"), "same": art}}
    (tmp_path / "c.json").write_text(json.dumps(a_only_skip))
    (tmp_path / "d.json").write_text(json.dumps({"artifacts": {"cfg": art, "same": art}}))
    assert main(["--compare", str(tmp_path / "c.json"), str(tmp_path / "d.json"), "--skip", "cfg"]) == 0


def test_completion_records_are_not_digested(tmp_path):
    """They fingerprint inputs by file time, and outputs of the code before them have none."""
    from bench.output_digest import digest_tree
    from pipeline.contracts import mark_complete

    (tmp_path / "vocab.txt").write_text("pieces")
    mark_complete(tmp_path, "vocab", {"vocab_size": 10}, {"corpus": "stat:0"})
    assert sorted(digest_tree(tmp_path, "vocab", Paths({}))) == ["vocab/vocab.txt"]
