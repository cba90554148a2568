"""Perplexity as cc_net's DocLM: the formula by hand, real models trained on reference text,
the Beam stage, model validation before a run."""

from __future__ import annotations

import random

import apache_beam as beam
import pytest
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.util import assert_that, equal_to

from pipeline.quality.buckets import AssignBuckets, read_cutoffs
from pipeline.quality.lm import LmConfig, train_languages
from pipeline.normalize import normalize
import pipeline.quality.perplexity as perplexity_module
from pipeline.quality.perplexity import (
    ScorePerplexity,
    available_languages,
    lm_lines,
    load_kenlm,
    load_sentencepiece,
    model_paths,
    perplexity,
    pieces_at_spaces,
    pp,
    score_document,
    score_documents,
    score_long_line,
    tokenize,
    validate_models,
)
from pipeline.readers.wet import iter_wet_records
from tests.pipeline.corpus_helpers import beam_counters, make_doc
from pipeline.utils.tools import ModelFileError

LANGS = ("en", "fr", "de", "ru")
HELD_OUT = 100  # last lines of each reference file, never trained on




@pytest.fixture(scope="session")
def lm_models(shared_data, tmp_path_factory, kenlm_tools):
    """en/fr/de/ru models trained (2 processes) on UD text minus the held-out sentences."""
    root = tmp_path_factory.mktemp("lm")
    reference, lm_dir = root / "reference", root / "models"
    reference.mkdir()
    held_out = {}
    for lang in LANGS:
        lines = (shared_data / "reference" / f"{lang}.txt").read_text(encoding="utf-8").splitlines()
        (reference / f"{lang}.txt").write_text("\n".join(lines[:-HELD_OUT]) + "\n", encoding="utf-8")
        held_out[lang] = lines[-HELD_OUT:]
    results = train_languages(
        str(reference), str(lm_dir), list(LANGS), LmConfig(memory="256M"), workers=2,
        progress=lambda _: None,
    )
    assert [r.error for r in results] == [None] * len(LANGS)
    return lm_dir, held_out


@pytest.fixture(scope="session")
def en_models(lm_models):
    lm_dir, _ = lm_models
    sp_path, lm_path = model_paths(str(lm_dir), "en")
    return load_sentencepiece(sp_path), load_kenlm(lm_path)


# -- the formula, by hand ------------------------------------------------------------------

# A bigram model small enough to compute with by hand (log10 probability, n-gram, backoff).
# KenLM's score(line) starts from <s> and adds </s>; a missing bigram backs off.
HAND_ARPA = """\\data\\
ngram 1=5
ngram 2=2

\\1-grams:
-1.0\t<unk>\t0
-99\t<s>\t-0.2
-0.5\t</s>\t0
-0.30103\ta\t-0.1
-0.60206\tb\t0

\\2-grams:
-0.2\t<s> a
-0.4\ta b

\\end\\
"""


def test_pp_and_rounding_hand_computed():
    assert pp(-2.0, 1) == 100.0
    assert pp(-3.0, 2) == pytest.approx(10**1.5)
    # two lines scoring -2 each: sum -4 over (2 + 1) + (1 + 1) = 5 tokens -> 10 ** 0.8 = 6.3096
    assert perplexity(lambda line: -2.0, ["a b", "c"]) == 6.3
    assert perplexity(lambda line: -2.0, []) is None


def test_kenlm_score_and_perplexity_on_hand_written_arpa(tmp_path):
    arpa = tmp_path / "hand.arpa"
    arpa.write_text(HAND_ARPA)
    lm = load_kenlm(str(arpa))
    # p(a|<s>) + p(b|a) + p(</s>|b) = -0.2 - 0.4 + (0 - 0.5)
    assert lm.score("a b") == pytest.approx(-1.1, abs=1e-5)
    # backoffs: (-0.2 - 0.60206) + (0 - 0.30103) + (-0.1 - 0.5)
    assert lm.score("b a") == pytest.approx(-1.70309, abs=1e-5)
    # unknown word: (-0.2 - 1.0) + (0 - 0.5)
    assert lm.score("c") == pytest.approx(-1.7, abs=1e-5)
    # 10 ** (1.1 / 3) = 2.3263 ; 10 ** (1.70309 / 3) = 3.6957 ; 10 ** (2.8 / 5) = 3.6308
    assert perplexity(lm.score, ["a b"]) == 2.3
    assert perplexity(lm.score, ["b a"]) == 3.7
    assert perplexity(lm.score, ["a b", "c"]) == 3.6


def test_lm_lines_reproduces_cc_nets_one_line_quirk():
    text = "First Line, 2019.\nSecond LINE — Été"
    # normalize() removes "\n" like any control character: the paragraphs are glued
    assert lm_lines(text) == ["first line, 0000.second line  -  ete"]
    assert lm_lines(text, per_line=True) == ["first line, 0000.", "second line  -  ete"]
    assert lm_lines("  \n\t ") == []
    assert lm_lines("\n\nx\n", per_line=True) == ["x"]


# -- real models -----------------------------------------------------------------------------


def test_score_document_is_doclm_on_the_normalised_whole_document(en_models):
    sp, lm = en_models
    text = "The weather was nice.\nWe went to the beach and swam."
    tokenized = " ".join(sp.encode(normalize(text), out_type=str))
    log10 = lm.score(tokenized)
    expected = round(10 ** (-log10 / (len(tokenized.split()) + 1)), 1)
    assert score_document(text, sp, lm) == expected
    per_line = score_document(text, sp, lm, per_line=True)
    assert per_line == perplexity(lm.score, tokenize(sp, lm_lines(text, per_line=True)))
    assert per_line != expected
    assert score_document("\x01\x02", sp, lm) is None


@pytest.mark.parametrize("per_line", [False, True])
def test_batch_scoring_equals_one_document_at_a_time(en_models, per_line):
    sp, lm = en_models
    texts = ["The weather was nice.\nWe went to the beach and swam.", "\x01\x02", "",
             "One line only.", "First paragraph.\n\nThird line after an empty one.\nAnd 42 more."]
    expected = [score_document(t, sp, lm, per_line) for t in texts]
    assert score_documents(texts, sp, lm, per_line) == expected
    assert expected[1] is None and expected[2] is None and None not in expected[3:]


def test_pieces_at_spaces_cut_before_a_space_or_at_the_size():
    line = "aaa bbb ccc dddddddddddd e"
    pieces = list(pieces_at_spaces(line, 8))
    assert "".join(pieces) == line and all(len(p) <= 8 for p in pieces)
    assert pieces == ["aaa bbb", " ccc", " ddddddd", "ddddd e"]  # no space in 8: cut at 8
    assert list(pieces_at_spaces("short", 8)) == ["short"]
    assert list(pieces_at_spaces("  x", 1)) == [" ", " ", "x"]


def _long_documents(shared_data, held_out, lang):
    """Real text: the held-out sentences as one document, and a long real web page."""
    docs = ["\n".join(held_out[lang])]
    if lang == "en":
        path = shared_data / "wet" / "CC-MAIN-2019-30-sample-00000.warc.wet.gz"
        with open(path, "rb") as f:
            bodies = sorted((r.body for r in iter_wet_records(f, str(path))), key=len)
        docs.append(bodies[-1].decode("utf-8", "replace"))  # the longest page (142 KB)
    return docs


@pytest.mark.parametrize("lang", LANGS)
def test_long_lines_scored_in_pieces_equal_the_one_line_score_exactly(lm_models, shared_data, monkeypatch, lang):
    """#15 §4: bounded memory without changing a single score (float32 sums compared with ==)."""
    lm_dir, held_out = lm_models
    sp_path, lm_path = model_paths(str(lm_dir), lang)
    sp, lm = load_sentencepiece(sp_path), load_kenlm(lm_path)
    texts = _long_documents(shared_data, held_out, lang)
    whole = {per_line: score_documents(texts, sp, lm, per_line) for per_line in (False, True)}
    for text in texts:
        line = normalize(text)
        tokenized = " ".join(sp.encode(line, out_type=str))
        expected = (lm.score(tokenized), len(tokenized.split()) + 1)
        assert len(list(pieces_at_spaces(line, 500))) > 5
        monkeypatch.setattr(perplexity_module, "LONG_LINE_CHARS", 500)
        assert score_long_line(sp, lm, line) == expected
        monkeypatch.undo()
    monkeypatch.setattr(perplexity_module, "LONG_LINE_CHARS", 300)
    for per_line in (False, True):
        assert score_documents(texts, sp, lm, per_line) == whole[per_line]


class _RecordingSentencePiece:
    """A SentencePiece processor that remembers the longest line it was asked to encode."""

    def __init__(self, sp):
        self.sp, self.longest = sp, 0

    def encode(self, lines, **kwargs):
        self.longest = max([self.longest, *map(len, lines)])
        return self.sp.encode(lines, **kwargs)


def test_a_huge_document_never_reaches_sentencepiece_as_one_line(en_models, lm_models):
    """Memory is bounded by the piece size, whatever the document's size (3.6 MB here)."""
    sp, lm = en_models
    _, held_out = lm_models
    huge = "\n".join(held_out["en"] * 600)
    assert len(normalize(huge)) > 10 * perplexity_module.LONG_LINE_CHARS
    recording = _RecordingSentencePiece(sp)
    (value,) = score_documents([huge], recording, lm)
    assert value is not None and recording.longest <= perplexity_module.LONG_LINE_CHARS


def test_held_out_sentences_beat_their_shuffled_words(lm_models):
    lm_dir, held_out = lm_models
    rng = random.Random(0)
    for lang in LANGS:
        sp_path, lm_path = model_paths(str(lm_dir), lang)
        sp, lm = load_sentencepiece(sp_path), load_kenlm(lm_path)
        pairs = []
        for line in held_out[lang]:
            words = line.split()
            if len(words) < 5:
                continue
            shuffled = words[:]
            while shuffled == words:
                rng.shuffle(shuffled)
            pairs.append((line, " ".join(shuffled)))
        assert len(pairs) >= 60, lang
        real = [score_document(a, sp, lm) for a, _ in pairs]
        fake = [score_document(b, sp, lm) for _, b in pairs]
        wins = sum(r < f for r, f in zip(real, fake))
        assert wins / len(pairs) >= 0.85, (lang, wins, len(pairs))
        assert sum(real) / len(real) < 0.75 * sum(fake) / len(fake), lang


# -- the Beam stage --------------------------------------------------------------------------


def test_score_perplexity_stage(lm_models, en_models):
    lm_dir, held_out = lm_models
    sp, lm = en_models
    docs = [
        make_doc(held_out["en"][0] + "\n" + held_out["en"][1], 0, language="en"),
        make_doc(held_out["fr"][0], 1, language="fr"),
        make_doc("Habari ya asubuhi, rafiki yangu.", 2, language="sw"),  # no Swahili model
        make_doc("\x01", 3, language="en"),  # nothing left after normalisation
    ]
    expected_en = score_document(docs[0].raw_content, sp, lm)
    p = BeamTestPipeline(runner="FnApiRunner")
    out = p | beam.Create(docs) | ScorePerplexity(str(lm_dir)) | beam.Map(
        lambda d: (d.record_offset, d.perplexity is None, d.perplexity if d.record_offset == 0 else None)
    )
    assert_that(out, equal_to([(0, False, expected_en), (1, False, None), (2, True, None), (3, True, None)]))
    result = p.run()
    result.wait_until_finish()
    c = beam_counters(result)
    assert c["perplexity_scored"] == 2
    assert c["perplexity_no_model"] == 1
    assert c["perplexity_no_model:sw"] == 1
    assert c["perplexity_empty_text"] == 1


def test_buckets_from_data_hold_30_30_40_and_the_table_is_reusable(lm_models, tmp_path):
    """Real perplexities of held-out sentences, cutoffs computed in the same job."""
    lm_dir, held_out = lm_models
    docs = [
        make_doc(line, i, language=lang)
        for lang in ("en", "fr", "de")
        for i, line in enumerate(held_out[lang])
    ] + [make_doc("Habari ya asubuhi, rafiki yangu.", 999, language="sw")]
    cutoffs = tmp_path / "cutoffs.csv"

    def run(**kwargs):
        out_file = tmp_path / f"buckets-{len(kwargs)}.txt"
        with BeamTestPipeline(runner="FnApiRunner") as p:
            _ = (
                p
                | beam.Create(docs)
                | ScorePerplexity(str(lm_dir))
                | AssignBuckets(**kwargs)
                | beam.Map(lambda d: f"{d.language}\t{d.record_offset}\t{d.bucket}")
                | beam.io.WriteToText(str(out_file), shard_name_template="")
            )
        return sorted(line.split("\t") for line in out_file.read_text().splitlines())

    computed = run(cutoffs_output=str(cutoffs))
    for lang in ("en", "fr", "de"):
        buckets = [b for language, _, b in computed if language == lang]
        n = len(buckets)
        for bucket, share in (("head", 0.3), ("middle", 0.3), ("tail", 0.4)):
            assert abs(buckets.count(bucket) / n - share) <= 0.05, (lang, bucket, buckets.count(bucket))
    assert ["sw", "999", "all"] in computed
    table = read_cutoffs(str(cutoffs))
    assert sorted(table) == ["de", "en", "fr"] and all(len(v) == 100 for v in table.values())
    # the written table, given back with --cutoffs, reproduces every bucket
    assert run(cutoffs=str(cutoffs)) == computed


# -- validation before the job ---------------------------------------------------------------


def test_validate_models_accepts_good_models(lm_models):
    lm_dir, _ = lm_models
    report = validate_models(None, str(lm_dir), ["en", "fr"])
    assert report.lm_languages == ["en", "fr"]
    assert "lid.176.ftz" in report.lid_model
    assert validate_models(lm_dir=str(lm_dir), check_lid=False).lm_languages == sorted(LANGS)
    assert available_languages(str(lm_dir)) == frozenset(LANGS)


def _copy_models(lm_dir, dest, langs=("en", "fr")):
    dest.mkdir()
    for lang in langs:
        for path in model_paths(str(lm_dir), lang):
            name = path.rsplit("/", 1)[-1]
            (dest / name).write_bytes(open(path, "rb").read())
    return dest


def test_missing_or_corrupt_model_files_are_named(lm_models, tmp_path):
    lm_dir, _ = lm_models
    bad = _copy_models(lm_dir, tmp_path / "models")
    # a requested language without models (cc_net fails the same way)
    with pytest.raises(ModelFileError, match=f"{bad / 'de.sp.model'}: SentencePiece model for 'de' not found"):
        validate_models(lm_dir=str(bad), langs=["en", "de"], check_lid=False)
    # a truncated KenLM binary
    data = (bad / "fr.arpa.bin").read_bytes()
    (bad / "fr.arpa.bin").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError, match=f"{bad / 'fr.arpa.bin'}: not a KenLM model"):
        validate_models(lm_dir=str(bad), langs=["en", "fr"], check_lid=False)
    # a corrupt SentencePiece model
    (bad / "en.sp.model").write_bytes(b"\x08\x01garbage")
    with pytest.raises(ModelFileError, match=f"{bad / 'en.sp.model'}: not a SentencePiece model"):
        validate_models(lm_dir=str(bad), langs=["en"], check_lid=False)
    # a language with only one of its two files, found without --langs
    orphan = _copy_models(lm_dir, tmp_path / "orphan", langs=("en",))
    (orphan / "en.arpa.bin").unlink()
    with pytest.raises(ModelFileError, match=f"{orphan / 'en.arpa.bin'}: KenLM model for 'en' not found"):
        validate_models(lm_dir=str(orphan), check_lid=False)
    with pytest.raises(ModelFileError, match=f"{tmp_path / 'nowhere'}: LM directory not found"):
        validate_models(lm_dir=str(tmp_path / "nowhere"), check_lid=False)
    junk_lid = tmp_path / "lid.bin"
    junk_lid.write_bytes(b"junk" * 10)
    with pytest.raises(ModelFileError, match=f"{junk_lid}: not a fastText model"):
        validate_models(lid_model=str(junk_lid))
    with pytest.raises(ModelFileError, match=f"{tmp_path / 'cut.csv'}: perplexity cutoff table not found"):
        validate_models(cutoffs=str(tmp_path / "cut.csv"), check_lid=False)


def test_empty_batch_scores_nothing(en_models):
    sp, lm = en_models
    assert score_documents([], sp, lm) == []
