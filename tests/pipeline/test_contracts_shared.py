"""pipeline/contracts.py beyond ownership: the parsers, presets and atomic writes every stage shares."""

from __future__ import annotations

import pytest

from pipeline import contracts
from pipeline.contracts import MODEL_PRESETS, format_segments, parse_comma_list, parse_languages, parse_segments


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
