"""pipeline/contracts.py beyond ownership: the parsers, presets and atomic writes every stage shares."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest

from pipeline import contracts
from pipeline.contracts import (MODEL_PRESETS, atomic_path, atomic_write_bytes, atomic_write_json,
                                format_segments, lm_languages, parse_comma_list, parse_languages,
                                parse_segments, part_files, part_name, partition_glob, temporary_path)


def test_segments_round_trip_and_all_means_every_segment():
    for spec in ("0-99", "3,5,10-12", "7", "0-2,5,7-8"):
        assert parse_segments(format_segments(parse_segments(spec))) == parse_segments(spec)
    assert format_segments([8, 0, 1, 2, 5, 7, 2]) == "0-2,5,7-8"
    assert parse_segments(" all ") == parse_segments("*") == []
    with pytest.raises(ValueError, match="ends before it starts"):
        parse_segments("5-3")


def test_language_lists():
    assert parse_languages(" en, fr,,en ") == ("en", "fr") == parse_comma_list("en,fr")
    assert parse_languages(None) == parse_languages("") == ()


def test_the_other_modules_use_these_parsers():
    from pipeline.quality import lid
    from pipeline.readers import snapshot
    from pipeline.utils import cliflags

    assert snapshot.parse_segments is parse_segments and snapshot.validate_snapshot is contracts.validate_snapshot
    assert lid.parse_langs is parse_languages and cliflags.comma_list is parse_comma_list


def test_one_list_of_presets_for_the_model_and_the_trainer():
    from model.xlmr import PRESETS as MODEL
    from train.config import PRESETS as TRAIN

    assert list(MODEL) == list(TRAIN) == list(MODEL_PRESETS) == ["tiny", "small", "base", "large"]
    assert MODEL["base"]["hidden_size"] == 768 and TRAIN["base"]["lr"] == 6e-4


def test_parquet_names_and_languages_with_a_model(tmp_path):
    assert part_name(3, 12) == "part-00003-of-00012.parquet"
    assert partition_glob("en") == "en/*/*.parquet" and partition_glob("en", "head") == "en/head/*.parquet"
    for rel in ("en/head/" + part_name(0, 1), "fr/all/" + part_name(0, 1), ".cc100/x/y.parquet"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"")
    assert [p.relative_to(tmp_path).as_posix() for p in part_files(tmp_path)] == [
        "en/head/part-00000-of-00001.parquet", "fr/all/part-00000-of-00001.parquet"]
    for name in ("en" + contracts.LM_KENLM_SUFFIX, "de" + contracts.LM_KENLM_SUFFIX, "en" + contracts.LM_SP_SUFFIX):
        (tmp_path / name).write_bytes(b"")
    assert lm_languages(tmp_path) == ["de", "en"]


def test_an_atomic_write_replaces_the_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "x.json"
    path.write_text("old")
    atomic_write_json(path, {"b": "é", "a": 1}, indent=1, ensure_ascii=False)
    assert path.read_text(encoding="utf-8") == json.dumps({"b": "é", "a": 1}, indent=1, ensure_ascii=False) + "\n"
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]
    assert temporary_path(path) == tmp_path / f".x.json.tmp{os.getpid()}"


def test_a_failed_write_keeps_the_old_file_and_removes_the_temporary(tmp_path):
    path = tmp_path / "model.bin"
    path.write_bytes(b"previous")
    with pytest.raises(OSError):
        with atomic_path(path) as tmp:
            tmp.write_bytes(b"half")
            raise OSError(errno.ENOSPC, "No space left on device", str(tmp))
    assert path.read_bytes() == b"previous" and [p.name for p in tmp_path.iterdir()] == ["model.bin"]


def test_a_given_temporary_name_is_used(tmp_path, monkeypatch):
    seen = []
    real = Path.write_bytes

    def spy(self, data):
        seen.append(self.name)
        return real(self, data)

    monkeypatch.setattr(Path, "write_bytes", spy)
    atomic_write_bytes(tmp_path / "m.model", b"new", tmp=tmp_path / "m.tmp")
    assert seen == ["m.tmp"] and (tmp_path / "m.model").read_bytes() == b"new"
    assert [p.name for p in tmp_path.iterdir()] == ["m.model"]
