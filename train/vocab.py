"""`cc100 vocab`: the XLM-R SentencePiece vocabulary, trained on alpha-sampled paragraph lines.

1. measure p_i per language from the Parquet integer columns (lines = sum of nlines),
2. q_i = p_i^alpha / sum p_j^alpha (train/sampling.py) and split the `--sentences` budget,
3. stream each language's lines once, drawing every line floor(k/N) times plus a uniform
   subset of k mod N lines once more (upsampling by repetition; row groups with nothing to
   draw are not read), into a temp file,
4. train a unigram model (character_coverage 0.9995, all cores) whose ids are <unk>=0 <s>=1
   </s>=2 like XLM-R's sentencepiece.bpe.model (train/tokenizer.py maps them). As in XLM-R, a
   character outside the vocabulary is <unk>; `--byte-fallback` encodes it as its UTF-8 byte
   pieces instead (256 pieces of the vocabulary; the export keeps it, see model/hf.py),
5. write VOCAB_DIR/sentencepiece.bpe.model, sampling.json (per language: raw_share,
   sampled_share, sentences, lines) and vocab_config.json (flags and run summary).

The text is fed raw (SentencePiece applies its own nmt_nfkc normalisation, as for XLM-R);
cc_net's `normalize` (lower-case, no accents) is for the KenLM filter, not for the encoder.
"""

from __future__ import annotations

import argparse
import io
import json
import re
import resource
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Iterator, Sequence
import dataclasses
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from pipeline.utils.cliflags import add_config_flags, add_force_flag, config_from_args, cores, option
from pipeline.contracts import VOCAB_CONFIG as CONFIG_NAME
from pipeline.contracts import VOCAB_MODEL as MODEL_NAME  # the file name transformers' XLMRobertaTokenizer expects
from pipeline.contracts import VOCAB_SAMPLING as SAMPLING_NAME
from pipeline.contracts import (OwnershipError, atomic_write_bytes, check_claimable, claim, clear_completion,
                                decisive, describe_os_error, fingerprint, mark_complete, pop_force,
                                skip_if_up_to_date)
from pipeline.utils.progress import Progress
from train.corpus_reader import (
    BUCKETS,
    CorpusError,
    LanguageData,
    iter_paragraphs,
    list_languages,
    measure_language,
)
from train.sampling import allocate, alpha_sampling_probs, raw_shares
from train.tokenizer import XLMRTokenizer

STAGE = "vocab"  # the stage name in VOCAB_DIR/.cc100/stage.json
# SentencePiece skips longer input lines (bytes); we cut them at a character boundary instead.
MAX_SENTENCE_BYTES = 4192
SPM_LOG = "sentencepiece.log"  # SentencePiece's full log, next to the model
SHARE_UNITS = ("lines", "chars")
PROGRESS_EVERY_S = 30.0  # seconds between progress lines when the output is not a terminal
_HYPERGEOMETRIC_LIMIT = 10**9  # numpy's bound on ngood / nbad


class VocabError(ValueError):
    """A user-facing failure: printed as one line, exit status 2."""


@dataclass
class VocabConfig:
    corpus: Path = option("--corpus", required=True, metavar="OUTPUT",
                          help="corpus OUTPUT dir (LANG/BUCKET/*.parquet)")
    output: Path = option("--output", required=True, metavar="VOCAB_DIR",
                          help="directory for sentencepiece.bpe.model, sampling.json, vocab_config.json")
    vocab_size: int = option("--vocab-size", default=250_000, metavar="N",
                             help="pieces; XLM-R ids = N + 2 (default: %(default)s)")
    alpha: float = option("--alpha", default=0.3, metavar="A",
                          help="sampling exponent in [0, 1] (default: %(default)s, as XLM-R)")
    sentences: int = option("--sentences", default=2_000_000, metavar="N",
                            help="paragraph lines to draw in all (default: %(default)s)")
    buckets: tuple[str, ...] = option(
        "--buckets", default=("head", "middle"), comma_list=True, metavar="B,B",
        help="perplexity buckets to read; `all` is always read (default: head,middle)")
    langs: tuple[str, ...] | None = option("--langs", default=None, comma_list=True, metavar="en,fr,...",
                                           help="languages to use (default: all in the corpus)")
    seed: int = option("--seed", default=0,
                       help="seed of the line draw and of SentencePiece (default: %(default)s)")
    threads: int = option("--threads", default_factory=cores, metavar="N",
                          help="SentencePiece threads (default: all cores, %(default)s)")
    character_coverage: float = option(
        "--character-coverage", default=0.9995, metavar="C",
        help="character share the alphabet covers; the rest is <unk> (bytes with --byte-fallback) "
        "(default: %(default)s)")
    share_by: str = option("--share-by", default="lines", choices=SHARE_UNITS,
                           help="unit of p_i (default: %(default)s)")
    allow_smaller_vocab: bool = option(
        "--allow-smaller-vocab", default=False,
        help="hard_vocab_limit=false: accept fewer pieces if the text cannot support --vocab-size")
    byte_fallback: bool = option(
        "--byte-fallback", default=False,
        help="encode characters outside the vocabulary as UTF-8 byte pieces instead of <unk> "
        "(XLM-R has no byte pieces; default: off)")
    quiet: bool = option(
        "--quiet", default=False,
        help=f"hide SentencePiece's progress lines (its full log is always in VOCAB_DIR/{SPM_LOG})")

    def __post_init__(self):
        self.corpus, self.output = Path(self.corpus), Path(self.output)
        if not (isinstance(self.alpha, (int, float)) and 0.0 <= self.alpha <= 1.0):
            raise ValueError(f"alpha must be in [0, 1], got {self.alpha}")
        if self.vocab_size < 16:
            raise ValueError(f"vocab_size must be >= 16, got {self.vocab_size}")
        if self.sentences < 1:
            raise ValueError(f"sentences must be >= 1, got {self.sentences}")
        if not self.buckets:
            raise ValueError("buckets must name at least one bucket")
        bad = [b for b in self.buckets if b not in BUCKETS]
        if bad:
            raise ValueError(
                f"buckets: unknown bucket(s) {', '.join(bad)} (valid: {', '.join(BUCKETS)})"
            )
        if self.langs is not None and not self.langs:
            raise ValueError("langs must name at least one language")
        if self.threads < 1:
            raise ValueError(f"threads must be >= 1, got {self.threads}")
        if not 0.0 < self.character_coverage <= 1.0:
            raise ValueError(f"character_coverage must be in (0, 1], got {self.character_coverage}")
        if self.share_by not in SHARE_UNITS:
            raise ValueError(f"share_by must be one of {SHARE_UNITS}, got {self.share_by!r}")


# -- corpus -> per-language sizes ----------------------------------------------------------


def select_languages(cfg: VocabConfig) -> dict[str, LanguageData]:
    """Measure the chosen languages and buckets. Bucket `all` (languages the perplexity stage
    could not score, hence never split into head/middle/tail) is always included."""
    available = list_languages(cfg.corpus)
    if not available:
        raise VocabError(
            f"--corpus {cfg.corpus}: empty corpus (no {cfg.corpus}/LANG/BUCKET/*.parquet files)"
        )
    langs = sorted(available) if cfg.langs is None else list(dict.fromkeys(cfg.langs))
    unknown = [lang for lang in langs if lang not in available]
    if unknown:
        raise VocabError(
            f"--langs: unknown language(s) {', '.join(unknown)} "
            f"(the corpus has: {', '.join(sorted(available))})"
        )
    wanted = set(cfg.buckets) | {"all"}
    out = {}
    for lang in langs:
        files = [f for b, fs in sorted(available[lang].items()) if b in wanted for f in fs]
        out[lang] = measure_language(lang, files)
    if not any(d.lines for d in out.values()):
        raise VocabError(
            f"--corpus {cfg.corpus}: empty corpus: no paragraph lines in buckets "
            f"{','.join(sorted(wanted))} for {', '.join(langs)}"
        )
    return out


def sampling_plan(data: dict[str, LanguageData], cfg: VocabConfig) -> dict[str, dict]:
    """raw_share, sampled_share (q_i), sentences (planned draws) and lines per language."""
    counts = {lang: float(getattr(d, cfg.share_by)) for lang, d in data.items()}
    p = raw_shares(counts)
    q = alpha_sampling_probs(counts, cfg.alpha)
    # A language can have characters but no lines only in a broken file; guard the division.
    q = {lang: (q[lang] if data[lang].lines else 0.0) for lang in q}
    n = allocate(cfg.sentences, q)
    return {
        lang: {
            "raw_share": p[lang],
            "sampled_share": q[lang] / (sum(q.values()) or 1.0),
            "sentences": n[lang],
            "lines": data[lang].lines,
        }
        for lang in data
    }


# -- drawing -------------------------------------------------------------------------------


def split_draws(sizes: Sequence[int], m: int, rng: np.random.Generator) -> list[int]:
    """How many of `m` draws without replacement from sum(sizes) items fall in each block.

    Sequential hypergeometric splits (exact); while a side is beyond numpy's 10^9 limit a
    binomial draw stands in (clipped so the counts stay feasible and still sum to m).
    """
    rest = int(sum(sizes))
    if not 0 <= m <= rest:
        raise ValueError(f"cannot draw {m} of {rest} items without replacement")
    out = []
    for s in sizes:
        rest -= s
        if m == 0 or s == 0:
            c = 0
        elif rest == 0:
            c = m
        elif s < _HYPERGEOMETRIC_LIMIT and rest < _HYPERGEOMETRIC_LIMIT:
            c = int(rng.hypergeometric(s, rest, m))
        else:
            c = int(rng.binomial(m, s / (s + rest)))
            c = min(max(c, m - rest), s, m)
        out.append(c)
        m -= c
    return out


def language_rng(seed: int, lang: str) -> np.random.Generator:
    """One stream per language: adding a language does not change another's draw."""
    return np.random.default_rng([seed, zlib.crc32(lang.encode("utf-8"))])


def truncate_utf8(line: str, max_bytes: int) -> str:
    data = line.encode("utf-8")
    if len(data) <= max_bytes:
        return line
    return data[:max_bytes].decode("utf-8", errors="ignore")


@dataclass
class DrawStats:
    planned: int = 0
    written: int = 0
    empty: int = 0  # drawn lines that were blank (not written)
    truncated: int = 0
    row_groups_read: int = 0
    row_groups_skipped: int = 0
    nlines_mismatch: int = 0  # row groups whose raw_content line count differs from nlines


def draw_language(data: LanguageData, k: int, seed: int, stats: DrawStats) -> Iterator[str]:
    """Yield k lines of one language: each line floor(k/N) times, k mod N lines once more."""
    stats.planned = k
    n = data.lines
    if k == 0 or n == 0:
        return
    base, extra = divmod(k, n)
    rng = language_rng(seed, data.lang)
    extras = iter(split_draws([s for f in data.files for s in f.row_group_lines], extra, rng))
    for f in data.files:
        chosen = {}  # row group -> sorted positions drawn once more
        # `extras` is shared by all files: zip takes this file's row groups from it
        for i, (size, c) in enumerate(zip(f.row_group_lines, extras, strict=False)):
            if c:
                chosen[i] = np.sort(rng.choice(size, c, replace=False))
            elif base:
                chosen[i] = np.empty(0, np.int64)
        stats.row_groups_skipped += len(f.row_group_lines) - len(chosen)
        if not chosen:
            continue
        position, current = 0, None
        for rg, line in iter_paragraphs(f, sorted(chosen)):
            if rg != current:
                if current is not None and position != f.row_group_lines[current]:
                    stats.nlines_mismatch += 1
                current, position, ptr, picks = rg, 0, 0, chosen[rg]
                stats.row_groups_read += 1
            copies = base
            if ptr < len(picks) and picks[ptr] == position:
                copies += 1
                ptr += 1
            position += 1
            if not copies:
                continue
            if not line.strip():
                stats.empty += copies
                continue
            cut = truncate_utf8(line, MAX_SENTENCE_BYTES)
            stats.truncated += copies if cut is not line else 0
            stats.written += copies
            for _ in range(copies):
                yield cut
        if current is not None and position != f.row_group_lines[current]:
            stats.nlines_mismatch += 1


class DistinctLines:
    """The first copy of each line of the sample, kept while they are few (a small corpus drawn
    with many repeats, e.g. the shared samples with the default 2M sentences). SentencePiece's
    seed pieces of this short text bound those of the whole sample: a substring seen once here
    repeats only inside copies of its line, which makes it a seed only if the line is one word
    (counted in `one_word`). So `precheck_vocab_size` can refuse a --vocab-size in seconds,
    before SentencePiece reads and indexes the whole sample."""

    def __init__(self, path: Path, limit: int):
        self.path, self.limit = path, limit
        self.seen: set[int] = set()
        self.one_word = 0
        self.too_many = False
        self._out = open(path, "w", encoding="utf-8", newline="\n")

    def add(self, line: str) -> None:
        if self.too_many:
            return
        key = hash(line)
        if key in self.seen:
            return
        if len(self.seen) >= self.limit:  # not a repetitive sample: the check would not be quick
            self.too_many = True
            self._out.close()
            return
        self.seen.add(key)
        self.one_word += len(line.split()) == 1
        self._out.write(line + "\n")

    def close(self) -> None:
        self._out.close()


def write_sample(
    data: dict[str, LanguageData], plan: dict[str, dict], seed: int, path: Path, log,
    distinct: DistinctLines | None = None,
) -> dict[str, DrawStats]:
    """Draw every language's lines into one text file (one sentence per line); `distinct` gets
    each line too."""
    stats = {}
    total = sum(row["sentences"] for row in plan.values())
    progress = Progress(total, "lines", log=lambda line: log(f"[vocab] drawing: {line}"),
                        every=PROGRESS_EVERY_S)
    before = 0  # lines planned for the languages already drawn
    with open(path, "w", encoding="utf-8", newline="\n") as out:
        for lang, row in plan.items():
            st = stats[lang] = DrawStats()
            for n, line in enumerate(draw_language(data[lang], row["sentences"], seed, st), 1):
                out.write(line)
                out.write("\n")
                if distinct is not None:
                    distinct.add(line)
                if n % 10_000 == 0:
                    progress.update(before + n)
            before += row["sentences"]
            progress.update(before)
    progress.close()
    return stats


# -- SentencePiece --------------------------------------------------------------------------

_TOO_HIGH = re.compile(r"Vocabulary size too high \((\d+)\)\. Please set it to a value <= (\d+)")
_TOO_SMALL = re.compile(r"Vocabulary size is smaller than required_chars\. (\d+) vs (\d+)")
SPECIAL_PIECES, BYTE_PIECES = 3, 256  # <unk> <s> </s>; with --byte-fallback <0x00>..<0xFF>


def meta_pieces(cfg: VocabConfig) -> int:
    """Pieces SentencePiece adds on top of the learnt ones."""
    return SPECIAL_PIECES + (BYTE_PIECES if cfg.byte_fallback else 0)
_CHILD_ERROR = "cc100-spm-error: "
_REPO = str(Path(__file__).resolve().parents[1])


class SentencePieceLog:
    """Condenses SentencePiece's log (hundreds of lines) into a few, and decides as early as
    its numbers allow that --vocab-size cannot be reached: the pieces only shrink from the seed
    pieces through every EM pass, and the final vocabulary adds at most the alphabet and the
    `meta_pieces` to them. So a size above that bound fails before the long EM rounds."""

    def __init__(self, cfg: VocabConfig, log, clock=time.perf_counter, extra_pieces: int = 0):
        self.cfg, self.log, self.clock, self.t0 = cfg, log, clock, clock()
        self.extra_pieces = extra_pieces  # pieces the bound allows beyond the seed pieces
        self.lines: list[str] = []
        self.numbers: dict[str, int] = {}
        self.error = ""
        self.rounds = 0

    def _say(self, text: str) -> None:
        if not self.cfg.quiet:
            self.log(f"[vocab] SentencePiece {text} ({self.clock() - self.t0:.0f}s)")

    def bound(self) -> int:
        """The largest vocabulary the log has shown so far to be possible."""
        return self._bound(self.numbers.get("pieces", self.numbers.get("seeds", 0)))

    def _bound(self, pieces: int) -> int:
        return pieces + self.numbers.get("alphabet", 0) + meta_pieces(self.cfg) + self.extra_pieces

    def feed(self, line: str) -> str | None:
        """One log line; returns a VocabError message when --vocab-size cannot be reached."""
        line = line.rstrip("\n")
        self.lines.append(line)
        if line.startswith(_CHILD_ERROR):
            self.error = line[len(_CHILD_ERROR):]
            return None
        for key, pattern in (("chars", r"all chars count=(\d+)"), ("alphabet", r"Alphabet size=(\d+)"),
                             ("sentences", r"Done! preprocessed (\d+) sentences")):
            if m := re.search(pattern, line):
                self.numbers[key] = int(m.group(1))
                if key == "sentences":
                    self._say(f"read {self.numbers['sentences']:,} sentences, "
                              f"{self.numbers.get('chars', 0):,} characters, alphabet "
                              f"{self.numbers.get('alphabet', 0):,}")
                return None
        pieces = None
        if m := re.search(r"Initialized (\d+) seed sentencepieces", line):
            pieces = self.numbers["seeds"] = int(m.group(1))
            self._say(f"{pieces:,} seed pieces; EM rounds until {self.cfg.vocab_size:,} remain "
                      "(the long part)")
        elif m := re.search(r"EM sub_iter=(\d+) size=(\d+) obj=([\d.]+)", line):
            pieces = self.numbers["pieces"] = int(m.group(2))
            if m.group(1) == "1":  # the end of a round, before it prunes
                self.rounds += 1
                self._say(f"EM round {self.rounds}: {pieces:,} pieces, objective {m.group(3)}")
        if (pieces is not None and not self.cfg.allow_smaller_vocab
                and self.cfg.vocab_size > self._bound(pieces)):
            return (f"--vocab-size {self.cfg.vocab_size} is too large for this sample: SentencePiece "
                    f"can build at most {self._bound(pieces)} pieces from it (its "
                    f"{'seed pieces' if 'EM' not in line else 'pieces after an EM pass'}: "
                    f"{pieces:,}, plus the alphabet, {meta_pieces(self.cfg)} special"
                    f"{' and byte' if self.cfg.byte_fallback else ''} pieces"
                    f"{f' and {self.extra_pieces:,} one-word lines' if self.extra_pieces else ''}). Use "
                    "a smaller --vocab-size, more text (--sentences, more corpus), or "
                    "--allow-smaller-vocab")
        return None


def _trainer_options(cfg: VocabConfig) -> dict:
    return dict(
        model_type="unigram",
        vocab_size=cfg.vocab_size,
        character_coverage=cfg.character_coverage,
        byte_fallback=cfg.byte_fallback,
        # XLM-R's sentencepiece.bpe.model layout; fairseq specials are added on top.
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        num_threads=cfg.threads,
        input_sentence_size=0,  # the sample is already the budget: use all of it
        max_sentence_length=MAX_SENTENCE_BYTES,
        hard_vocab_limit=not cfg.allow_smaller_vocab,
        minloglevel=0,  # the parent condenses the log; it needs the numbers in it
    )


def _train_child() -> None:
    """The trainer process: {seed, sample, model, options} as JSON on stdin; the model is written
    to `model`; a SentencePiece error is printed as one `_CHILD_ERROR` line (exit 3)."""
    import sentencepiece as spm

    job = json.loads(sys.stdin.read())
    spm.set_random_generator_seed(job["seed"])
    model = io.BytesIO()
    with open(job["sample"], encoding="utf-8", newline="\n") as f:
        # An iterator (not input=path) keeps the temp path out of the model: same seed, same bytes.
        sentences = (line[:-1] if line.endswith("\n") else line for line in f)
        try:
            spm.SentencePieceTrainer.train(sentence_iterator=sentences, model_writer=model,
                                           **job["options"])
        except RuntimeError as e:
            print(_CHILD_ERROR + " ".join(str(e).split()), file=sys.stderr, flush=True)
            sys.exit(3)
    Path(job["model"]).write_bytes(model.getvalue())


def train_sentencepiece(sample: Path, cfg: VocabConfig, log=print,
                        log_lines: list[str] | None = None, watch: SentencePieceLog | None = None,
                        stop_at_seeds: bool = False) -> bytes:
    """Train the unigram model on the sample; return the serialized model. SentencePiece's whole
    log is appended to `log_lines` when given. With `stop_at_seeds`, stop once the seed pieces
    are counted (and `--vocab-size` found within reach): returns b"".

    The trainer runs in a child process, so that its log can be condensed while it runs and the
    run stopped as soon as the log shows --vocab-size cannot be reached (SentencePiece itself
    says so only at the very end). Errors about the vocabulary size become a VocabError saying
    what size would work.
    """
    watch = watch or SentencePieceLog(cfg, log)
    if log_lines is not None:
        watch.lines = log_lines
    model_path = sample.with_name("model.bin")
    job = {"seed": cfg.seed, "sample": str(sample), "model": str(model_path),
           "options": _trainer_options(cfg)}
    code = f"import sys; sys.path.insert(0, {_REPO!r}); from train.vocab import _train_child; _train_child()"
    child = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                             encoding="utf-8", errors="replace")
    try:
        child.stdin.write(json.dumps(job))
        child.stdin.close()
        for line in child.stderr:
            if message := watch.feed(line):
                raise VocabError(message)
            if stop_at_seeds and "seeds" in watch.numbers:
                return b""
    finally:
        if child.poll() is None:
            child.kill()
        child.wait()
        child.stderr.close()
    if child.returncode != 0:
        msg = watch.error or (watch.lines[-1] if watch.lines else f"exit status {child.returncode}")
        if m := _TOO_HIGH.search(msg):
            raise VocabError(
                f"--vocab-size {m.group(1)} is too large for this sample: SentencePiece can "
                f"build at most {m.group(2)} pieces from it. Use --vocab-size {m.group(2)} or "
                f"less, more text (--sentences, more corpus), or --allow-smaller-vocab"
            )
        if m := _TOO_SMALL.search(msg):
            raise VocabError(
                f"--vocab-size {m.group(1)} is too small: the sample's characters at "
                f"character_coverage {cfg.character_coverage} plus the {meta_pieces(cfg)} special"
                f"{' and byte' if cfg.byte_fallback else ''} pieces need at least {m.group(2)}"
            )
        raise VocabError(f"SentencePiece training failed: {msg}")
    return model_path.read_bytes()


def precheck_vocab_size(distinct: DistinctLines, cfg: VocabConfig, log) -> None:
    """VocabError in seconds when the sample's distinct lines show --vocab-size cannot be reached
    (see DistinctLines); nothing when the sample is not repetitive or allows smaller."""
    distinct.close()
    if distinct.too_many or not distinct.seen or cfg.allow_smaller_vocab:
        return
    t0 = time.perf_counter()
    quiet = dataclasses.replace(cfg, quiet=True, threads=min(cfg.threads, 2))
    watch = SentencePieceLog(quiet, log, extra_pieces=distinct.one_word)
    train_sentencepiece(distinct.path, quiet, log, watch=watch, stop_at_seeds=True)
    log(f"[vocab] --vocab-size {cfg.vocab_size:,} is within reach: the {len(distinct.seen):,} "
        f"distinct lines allow at most {watch.bound():,} pieces ({time.perf_counter() - t0:.0f}s)")


# -- CLI ------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> VocabConfig:
    p = argparse.ArgumentParser(
        prog="cc100 vocab",
        description="Train the XLM-R SentencePiece unigram vocabulary on alpha-sampled lines.",
    )
    add_config_flags(p, VocabConfig)
    add_force_flag(p)
    return config_from_args(VocabConfig, p.parse_args(argv))


def format_table(plan: dict[str, dict], stats: dict[str, DrawStats] | None = None) -> str:
    head = f"{'lang':<8}{'lines':>14}{'raw_share':>11}{'sampled':>10}{'sentences':>12}"
    rows = [head + f"{'per_line':>10}"]
    for lang, r in sorted(plan.items(), key=lambda kv: -kv[1]["raw_share"]):
        drawn = stats[lang].written if stats else r["sentences"]
        x = drawn / r["lines"] if r["lines"] else 0.0
        rows.append(
            f"{lang:<8}{r['lines']:>14,}{r['raw_share']:>11.4%}{r['sampled_share']:>10.4%}"
            f"{drawn:>12,}{x:>10.3g}"
        )
    return "\n".join(rows)


def peak_rss_mib() -> float:
    """The larger of this process's and the SentencePiece trainer's peak RSS."""
    rss = max(resource.getrusage(who).ru_maxrss for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    return rss / 1024  # Linux: KiB


def check_output(output: Path, write: bool = False) -> None:
    """VocabError unless --output is new, empty or an earlier vocab output (its marker, see
    pipeline/contracts.py); with `write`, create it and write the marker."""
    try:
        (claim if write else check_claimable)(output, STAGE)
    except OwnershipError as e:
        raise VocabError(f"--output {e}") from None


def completion(cfg: VocabConfig) -> tuple[dict, dict]:
    """(config, inputs) that decide the vocabulary: same seed and threads, same model bytes."""
    config = decisive(asdict(cfg), ("corpus", "output", "quiet"))
    return config, {"corpus": fingerprint(cfg.corpus)}


def run(cfg: VocabConfig, log=print) -> dict:
    t_start = time.perf_counter()
    check_output(cfg.output)  # before the long part: a bad --output fails in a second, not after training
    data = select_languages(cfg)
    lines, chars = sum(d.lines for d in data.values()), sum(d.chars for d in data.values())
    files = sum(len(d.files) for d in data.values())
    buckets = ",".join(cfg.buckets) + ("" if "all" in cfg.buckets else " + all")
    log(
        f"[vocab] {len(data)} languages, {lines:,} lines, {chars:,} chars in {files} files "
        f"(buckets {buckets})"
    )
    plan = sampling_plan(data, cfg)
    log(
        f"[vocab] drawing {cfg.sentences:,} lines with alpha={cfg.alpha} "
        f"(p_i by {cfg.share_by}), seed {cfg.seed}"
    )
    with tempfile.TemporaryDirectory(prefix="cc100-vocab-") as tmp:
        sample = Path(tmp) / "sample.txt"
        t0 = time.perf_counter()
        distinct = DistinctLines(Path(tmp) / "distinct.txt", limit=max(1, cfg.sentences // 4))
        stats = write_sample(data, plan, cfg.seed, sample, log, distinct)
        t_sample = time.perf_counter() - t0
        written = sum(s.written for s in stats.values())
        if written == 0:
            raise VocabError(f"--corpus {cfg.corpus}: the drawn lines are all blank")
        mib = sample.stat().st_size / 2**20
        log(f"[vocab] sample: {written:,} lines, {mib:,.1f} MiB in {t_sample:.1f}s")
        precheck_vocab_size(distinct, cfg, log)
        log(
            f"[vocab] training SentencePiece unigram, {cfg.vocab_size:,} pieces, "
            f"{cfg.threads} threads (this is the long part)"
        )
        t0 = time.perf_counter()
        spm_log: list[str] = []
        model = train_sentencepiece(sample, cfg, log, spm_log)
        t_train = time.perf_counter() - t0

    check_output(cfg.output, write=True)
    clear_completion(cfg.output)  # rewritten in place: complete again only at the end
    model_path = cfg.output / MODEL_NAME
    # a full disk leaves no half-written model behind (the temporary name is the one the
    # full-disk message has always named)
    atomic_write_bytes(model_path, model, tmp=model_path.with_suffix(".tmp"))
    table = {
        lang: {
            "raw_share": r["raw_share"],
            "sampled_share": r["sampled_share"],
            "sentences": stats[lang].written,
            "lines": r["lines"],
        }
        for lang, r in plan.items()
    }
    (cfg.output / SAMPLING_NAME).write_text(json.dumps(table, indent=2) + "\n", encoding="utf-8")
    (cfg.output / SPM_LOG).write_text("\n".join(spm_log) + "\n", encoding="utf-8")

    tok = XLMRTokenizer(model_path)
    summary = {
        "pieces": tok.num_pieces,
        "xlmr_vocab_size": tok.vocab_size,
        "sentences": written,
        "empty_skipped": sum(s.empty for s in stats.values()),
        "truncated": sum(s.truncated for s in stats.values()),
        "nlines_mismatch": sum(s.nlines_mismatch for s in stats.values()),
        "sample_seconds": round(t_sample, 2),
        "train_seconds": round(t_train, 2),
        "total_seconds": round(time.perf_counter() - t_start, 2),
        "peak_rss_mib": round(peak_rss_mib(), 1),
    }
    config = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()}
    (cfg.output / CONFIG_NAME).write_text(
        json.dumps({"config": config, "summary": summary}, indent=2) + "\n", encoding="utf-8"
    )
    mark_complete(cfg.output, STAGE, *completion(cfg))

    log("")
    log(format_table(plan, stats))
    log("")
    if tok.num_pieces != cfg.vocab_size:
        log(
            f"[vocab] note: {tok.num_pieces:,} pieces obtained "
            f"(asked {cfg.vocab_size:,}, --allow-smaller-vocab)"
        )
    if summary["empty_skipped"]:
        log(f"[vocab] blank lines drawn and skipped: {summary['empty_skipped']:,}")
    if summary["truncated"]:
        log(f"[vocab] lines cut to {MAX_SENTENCE_BYTES} bytes: {summary['truncated']:,}")
    if summary["nlines_mismatch"]:
        log(
            f"[vocab] warning: {summary['nlines_mismatch']} row groups where nlines differs "
            "from the lines of raw_content"
        )
    log(
        f"[vocab] wrote {model_path} ({tok.num_pieces:,} pieces -> {tok.vocab_size:,} XLM-R ids, "
        f"<mask>={tok.mask_id}), {SAMPLING_NAME}, {CONFIG_NAME}, {SPM_LOG}"
    )
    log(
        f"[vocab] {written:,} sentences; sampling {t_sample:.1f}s, training {t_train:.1f}s, "
        f"peak RSS {summary['peak_rss_mib']:,.0f} MiB"
    )
    return summary


def main(argv: list[str] | None = None) -> int:
    force, argv = pop_force(argv)
    try:
        cfg = parse_args(argv)
        if skip_if_up_to_date(cfg.output, STAGE, *completion(cfg), force=force):
            return 0
        run(cfg)
    except (VocabError, CorpusError, ValueError) as e:
        print(f"cc100 vocab: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a full disk, a vanished directory: one line, the earlier files stay
        print(f"cc100 vocab: error: {describe_os_error(e)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
