"""Perplexity of documents under per-language SentencePiece + KenLM models, as cc_net's DocLM.

cc_net's chain is MultiSentencePiece(normalize=True) then DocLM(normalize=False):

    tokenized  = " ".join(sp.encode_as_pieces(normalize(raw_content)))
    perplexity = round(10 ** (-sum(lm.score(line)) / sum(len(line.split()) + 1)), 1)
                 over tokenized.split("\\n")

`normalize` removes control characters, "\\n" included, so the whole document becomes ONE line
whose paragraphs are glued without a space ("end of one.Start of next"). That quirk is what
cc_net's published cutoffs were computed with, so it is the default here; `per_line=True`
normalises and scores each paragraph separately (the same formula over several lines).

Memory: SentencePiece needs about 100 bytes per character of the line it encodes (a 60 MB
document as one line took 6.4 GB). A line longer than LONG_LINE_CHARS is therefore encoded and
scored in pieces cut at spaces, with KenLM's state carried across them: the same pieces (a
SentencePiece unigram model with default settings never puts a piece across a space) and the
same float32 sum in the same order as `model.score`, so the perplexity is identical, and memory
stays that of one piece. (A piece with no space for LONG_LINE_CHARS characters, e.g. long
unspaced CJK text, is cut there: the pieces next to that cut may differ.) Shorter lines, nearly
all of them, take the batched path unchanged.

Models: LM_DIR/{lang}.sp.model and LM_DIR/{lang}.arpa.bin (cc_net's layout). A language without
them gets perplexity None (and later bucket "all"), counted. Each worker process loads a
language's models once, the first time a document in that language arrives, so only the
languages present are ever loaded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator

import apache_beam as beam
from apache_beam.metrics import Metrics

from pipeline.utils.batch import BatchDocuments
from pipeline.contracts import LM_KENLM_SUFFIX as LM_SUFFIX
from pipeline.contracts import LM_SP_SUFFIX as SP_SUFFIX
from pipeline.normalize import normalize
from pipeline.schema import Document
from pipeline.utils.tools import ModelFileError, local_copy, require_file

METRICS_NAMESPACE = "cc100"
LONG_LINE_CHARS = 1 << 18  # longer normalised lines are encoded and scored in pieces


# -- pure scoring --------------------------------------------------------------------------


def pp(log_score: float, length: int) -> float:
    """cc_net's perplexity from a log10 probability and a token count."""
    return 10.0 ** (-log_score / length)


def lm_lines(text: str, per_line: bool = False) -> list[str]:
    """The normalised text KenLM scores: one line (cc_net) or one per non-empty paragraph."""
    if not per_line:
        line = normalize(text)
        return [line] if line else []
    lines = (normalize(line) for line in text.split("\n"))
    return [line for line in lines if line]


def tokenize(sp, lines: list[str]) -> list[str]:
    """SentencePiece pieces joined by single spaces, one string per line (one thread: a worker
    process is the unit of parallelism)."""
    return [" ".join(pieces) for pieces in sp.encode(lines, out_type=str, num_threads=1)]


def perplexity(score: Callable[[str], float], tokenized: list[str]) -> float | None:
    """DocLM's formula: 10 ** (-sum log10 / sum(tokens + 1)), rounded to 1 decimal.

    `score` is KenLM's `model.score` (with <s> and </s>, hence the +1 per line).
    None when there is nothing to score.
    """
    return _perplexity((score(line), len(line.split()) + 1) for line in tokenized)


def _perplexity(line_scores: Iterable[tuple[float, int]]) -> float | None:
    """`perplexity` from (log10 score, tokens + 1) per line, summed in line order."""
    log_score, length = 0.0, 0
    for line_score, line_length in line_scores:
        log_score += line_score
        length += line_length
    if length == 0:
        return None
    return round(pp(log_score, length), 1)


def pieces_at_spaces(line: str, size: int = LONG_LINE_CHARS) -> Iterator[str]:
    """`line` in consecutive pieces of at most `size` characters, each cut just before a space
    (SentencePiece drops the space at a piece's edge and adds it back as the next word's "▁");
    a stretch without a space is cut at `size`."""
    start = 0
    while len(line) - start > size:
        cut = line.rfind(" ", start + 1, start + size + 1)
        if cut <= start:
            cut = start + size
        yield line[start:cut]
        start = cut
    yield line[start:]


def score_long_line(sp, lm, line: str) -> tuple[float, int]:
    """(KenLM log10 score, tokens + 1) of one normalised line, in bounded memory.

    Equal to (lm.score(t), len(t.split()) + 1) for t = the line's pieces joined by spaces:
    KenLM's `score` sums BaseScore over the words (bytes split on ASCII whitespace) from <s>,
    then </s>, in a C float; this does the same with the state carried from piece to piece.
    """
    import kenlm
    import numpy as np

    state, out = kenlm.State(), kenlm.State()
    lm.BeginSentenceWrite(state)
    total, length = np.float32(0.0), 1  # +1: </s>
    for piece in pieces_at_spaces(line):
        (tokenized,) = tokenize(sp, [piece])
        length += len(tokenized.split())
        for word in tokenized.encode("utf-8").split():  # KenLM's split: ASCII whitespace
            total = np.float32(total + np.float32(lm.BaseScore(state, word.decode("utf-8"), out)))
            state, out = out, state
    total = np.float32(total + np.float32(lm.BaseScore(state, "</s>", out)))
    return float(total), length


def score_document(text: str, sp, lm, per_line: bool = False) -> float | None:
    """Perplexity of one document's text, exactly as cc_net computes it (by default)."""
    return score_documents([text], sp, lm, per_line)[0]


def score_documents(texts: list[str], sp, lm, per_line: bool = False) -> list[float | None]:
    """`score_document` of many texts of one language, with one SentencePiece call for all
    lines up to LONG_LINE_CHARS (longer ones: `score_long_line`)."""
    doc_lines = [lm_lines(text, per_line) for text in texts]
    short = [line for lines in doc_lines for line in lines if len(line) <= LONG_LINE_CHARS]
    tokenized = iter(tokenize(sp, short))

    def line_score(line: str) -> tuple[float, int]:
        if len(line) > LONG_LINE_CHARS:
            return score_long_line(sp, lm, line)
        t = next(tokenized)
        return lm.score(t), len(t.split()) + 1

    return [_perplexity([line_score(line) for line in lines]) for lines in doc_lines]


# -- model files ---------------------------------------------------------------------------


def model_paths(lm_dir: str, lang: str) -> tuple[str, str]:
    """(sentencepiece model, kenlm binary) of a language in cc_net's layout."""
    from apache_beam.io.filesystems import FileSystems

    return (
        FileSystems.join(lm_dir, f"{lang}{SP_SUFFIX}"),
        FileSystems.join(lm_dir, f"{lang}{LM_SUFFIX}"),
    )


def list_model_files(lm_dir: str) -> dict[str, set[str]]:
    """{lang: {".sp.model", ".arpa.bin"} present} for the model files in `lm_dir`."""
    from apache_beam.io.filesystems import FileSystems

    found: dict[str, set[str]] = {}
    for suffix in (SP_SUFFIX, LM_SUFFIX):
        pattern = FileSystems.join(lm_dir, f"*{suffix}")
        for meta in FileSystems.match([pattern])[0].metadata_list:
            name = meta.path.rstrip("/").rsplit("/", 1)[-1]
            found.setdefault(name[: -len(suffix)], set()).add(suffix)
    return found


def available_languages(lm_dir: str | None) -> frozenset[str]:
    """Languages with both model files in `lm_dir` (empty when lm_dir is None)."""
    if not lm_dir:
        return frozenset()
    return frozenset(
        lang for lang, suffixes in list_model_files(lm_dir).items() if len(suffixes) == 2
    )


def load_sentencepiece(path: str):
    import sentencepiece as spm

    local = local_copy(path, "SentencePiece model")
    try:
        return spm.SentencePieceProcessor(model_file=local)
    except Exception as e:
        raise ModelFileError(f"{path}: not a SentencePiece model ({str(e).strip()})") from e


def load_kenlm(path: str, lazy: bool = False):
    """A KenLM model (ARPA or binary). lazy=True only maps the file: a cheap validity check."""
    import kenlm

    local = local_copy(path, "KenLM model")
    config = kenlm.Config()
    config.show_progress = False
    if lazy:
        config.load_method = kenlm.LoadMethod.LAZY
    try:
        return kenlm.Model(local, config)
    except Exception as e:  # OSError with KenLM's reason; UnicodeDecodeError on binary junk
        reason = str(e).split(" threw ", 1)[-1] if isinstance(e, OSError) else type(e).__name__
        raise ModelFileError(f"{path}: not a KenLM model ({reason.strip()})") from e


@dataclass
class ModelReport:
    """What `validate_models` checked; main.py prints it before the job starts."""

    lid_model: str | None = None
    lid_check: str = ""
    lm_dir: str | None = None
    lm_languages: list[str] = field(default_factory=list)
    cutoffs: str | None = None
    cutoff_languages: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = []
        if self.lid_model:
            out.append(f"LID model: {self.lid_model} ({self.lid_check})")
        if self.lm_dir:
            langs = ", ".join(self.lm_languages) or "none"
            out.append(f"LM models: {self.lm_dir} ({len(self.lm_languages)} languages: {langs})")
        if self.cutoffs:
            out.append(f"cutoffs: {self.cutoffs} ({len(self.cutoff_languages)} languages)")
        return out


def validate_models(
    lid_model: str | None = None,
    lm_dir: str | None = None,
    langs: Iterable[str] = (),
    cutoffs: str | None = None,
    check_lid: bool = True,
) -> ModelReport:
    """Check every model file before the pipeline starts; ModelFileError names the bad file.

    * LID: the fastText model (default: bundled lid.176.ftz) is complete (fastText itself
      crashes later on a truncated file), loads, and labels reference sentences correctly.
    * LMs: with `langs`, each listed language needs both {lang}.sp.model and {lang}.arpa.bin
      (cc_net fails the same way); without, every language that has either file in `lm_dir`
      needs both. Each SentencePiece model is loaded; each KenLM file is opened lazily (header
      and size are checked without reading the whole model).
    * cutoffs: the table parses and has the head/tail percentiles.
    """
    from pipeline.quality.buckets import read_cutoffs, require_percentiles
    from pipeline.quality.lid import default_lid_model, self_check

    report = ModelReport()
    if check_lid:
        report.lid_model = lid_model or default_lid_model()
        report.lid_check = self_check(report.lid_model)
    langs = list(langs)
    if lm_dir:
        require_lm_dir(lm_dir)
        present = list_model_files(lm_dir)
        if not present:
            raise ModelFileError(f"{lm_dir}: no scoring models in the LM directory (expected "
                                 f"{{lang}}{SP_SUFFIX} + {{lang}}{LM_SUFFIX}; train them with `cc100 lm`)")
        wanted = langs or sorted(present)
        for lang in wanted:
            sp_path, lm_path = model_paths(lm_dir, lang)
            require_file(sp_path, f"SentencePiece model for {lang!r}")
            require_file(lm_path, f"KenLM model for {lang!r}")
            load_sentencepiece(sp_path)
            load_kenlm(lm_path, lazy=True)
        report.lm_dir, report.lm_languages = lm_dir, sorted(wanted)
    if cutoffs:
        table = read_cutoffs(cutoffs)
        require_percentiles(table, cutoffs)
        report.cutoffs, report.cutoff_languages = cutoffs, sorted(table)
    return report


def require_lm_dir(lm_dir: str) -> None:
    from apache_beam.io.filesystems import FileSystems

    from pipeline.utils.tools import is_local

    if is_local(lm_dir):
        import os

        local = lm_dir[len("file://") :] if lm_dir.startswith("file://") else lm_dir
        if not os.path.isdir(local):
            raise ModelFileError(f"{lm_dir}: LM directory not found (train models with `cc100 lm`)")
    elif not FileSystems.match([FileSystems.join(lm_dir, "*")])[0].metadata_list:
        raise ModelFileError(f"{lm_dir}: LM directory is empty or missing")


# -- the Beam stage ------------------------------------------------------------------------


class _LanguageModels:
    """One language's SentencePiece + KenLM, shared by the threads of a worker process."""

    def __init__(self, lm_dir: str, lang: str):
        sp_path, lm_path = model_paths(lm_dir, lang)
        self.sp = load_sentencepiece(sp_path)
        self.lm = load_kenlm(lm_path)


class ScorePerplexityFn(beam.DoFn):
    """Thin DoFn over `score_documents` for a batch of documents (`BatchDocuments`), language by
    language; models loaded once per worker, on first use."""

    def __init__(self, lm_dir: str | None, per_line: bool = False):
        from apache_beam.utils.shared import Shared

        self.lm_dir = lm_dir
        self.per_line = per_line
        self._shared = Shared()

    def setup(self):
        # Which languages have models is known up front; the models themselves are loaded
        # when the first document of a language arrives (only the languages present).
        self.available = available_languages(self.lm_dir)
        self.models: dict[str, _LanguageModels] = {}
        self.n_scored = Metrics.counter(METRICS_NAMESPACE, "perplexity_scored")
        self.n_no_model = Metrics.counter(METRICS_NAMESPACE, "perplexity_no_model")
        self.n_empty = Metrics.counter(METRICS_NAMESPACE, "perplexity_empty_text")

    def _models(self, lang: str) -> _LanguageModels:
        models = self.models.get(lang)
        if models is None:
            lm_dir = self.lm_dir
            models = self._shared.acquire(
                lambda: _LanguageModels(lm_dir, lang), tag=f"lm:{lm_dir}:{lang}"
            )
            self.models[lang] = models  # keeps the shared object alive
        return models

    def process(self, batch: list[Document]) -> Iterable[Document]:
        by_language: dict[str | None, list[Document]] = {}
        for doc in batch:
            by_language.setdefault(doc.language, []).append(doc)
        for lang, docs in by_language.items():  # one language's models at a time (CPU caches)
            if lang not in self.available:
                self.n_no_model.inc(len(docs))
                Metrics.counter(METRICS_NAMESPACE, f"perplexity_no_model:{lang}").inc(len(docs))
                yield from (doc.replace(perplexity=None) for doc in docs)
                continue
            models = self._models(lang)
            values = score_documents([doc.raw_content for doc in docs], models.sp, models.lm,
                                     self.per_line)
            for doc, value in zip(docs, values):
                if value is None:
                    self.n_empty.inc()
                else:
                    self.n_scored.inc()
                yield doc.replace(perplexity=value)


class ScorePerplexity(beam.PTransform):
    """Documents -> documents with `perplexity` (None for languages without a model).

    Flags: --lm-dir (lm_dir; None scores nothing), per_line (cc_net's whole-document scoring
    when False). Counters: perplexity_scored, perplexity_no_model (+ ":{lang}"),
    perplexity_empty_text.
    """

    def __init__(self, lm_dir: str | None, per_line: bool = False, label: str | None = None):
        super().__init__(label)
        self.lm_dir = lm_dir
        self.per_line = per_line

    def expand(self, docs):
        return (
            docs
            | "Batch" >> BatchDocuments()
            | "Score" >> beam.ParDo(ScorePerplexityFn(self.lm_dir, self.per_line))
        )
