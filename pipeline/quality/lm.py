"""`cc100 lm`: train cc_net's per-language scoring models from reference text.

cc_net scores documents with a SentencePiece model plus a KenLM 5-gram trained on Wikipedia
openings; its recipe (Makefile + get_wiki_cirrus.py) is followed step by step:

1. every line of REFERENCE/{lang}.txt goes through `pipeline.normalize.normalize` (the same
   function the Beam job scores with), empty lines dropped;
2. a SentencePiece unigram model, vocab_size 65536 and character_coverage 0.9995 as cc_net;
   `hard_vocab_limit=false` lets the size shrink to what a small text supports (reported);
3. the text is encoded to pieces joined by spaces and `lmplz -o 5 --discount_fallback` (cc_net
   always passes it; it only acts when the counts are too small to estimate the discounts);
4. `build_binary`, giving LM_DIR/{lang}.sp.model and LM_DIR/{lang}.arpa.bin, cc_net's layout.

Languages are trained in parallel processes; each output file is written under a temporary name
and renamed, so an interrupted run never leaves a half-written model behind.
"""

from __future__ import annotations

import argparse
import dataclasses
import multiprocessing
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass
from pathlib import Path

from pipeline.contracts import (UP_TO_DATE, OwnershipError, atomic_path, claim, completion_record,
                                content_fingerprint, decisive, mark_complete, parse_languages, pop_force,
                                read_completion)
from pipeline.normalize import normalize
from pipeline.quality.perplexity import LM_SUFFIX, SP_SUFFIX, perplexity, tokenize
from pipeline.utils.tools import ToolNotFoundError, find_tool, is_local
from pipeline.utils.cliflags import add_config_flags, add_force_flag, config_from_args, cores, option, sub_config



STAGE = "lm"  # the stage name in LM_DIR/.cc100/stage.json


class LmError(RuntimeError):
    """Training failed for one language; the message names the file or the tool."""


@dataclass(frozen=True)
class LmConfig:
    order: int = option("--order", default=5, help="n-gram order (default %(default)s)")  # cc_net: lmplz -o 5
    vocab_size: int = option(  # cc_net's VOCAB_SIZE, a soft limit here (see module docstring)
        "--vocab-size", default=65536, metavar="N",
        help="SentencePiece vocabulary, a soft limit: small texts get less (default %(default)s)")
    character_coverage: float = 0.9995  # cc_net's spm_train setting
    min_lines: int = option(  # fewer normalised lines than this: a clear error, no model
        "--min-lines", default=50, metavar="N",
        help="refuse a language with fewer non-empty lines (default %(default)s)")
    max_sp_sentences: int = 1_000_000  # SentencePiece samples at most this many lines
    memory: str = option("--memory", default="1G",  # lmplz -S (cc_net used 8G for full Wikipedia)
                         help="lmplz -S sort memory (default %(default)s)")
    threads: int = 1  # SentencePiece trainer threads per language

    def __post_init__(self):
        if self.order < 1:
            raise ValueError(f"order must be >= 1, got {self.order}")
        if self.vocab_size < 10:
            raise ValueError(f"vocab_size must be >= 10, got {self.vocab_size}")
        if not 0.9 <= self.character_coverage <= 1.0:
            raise ValueError(
                f"character_coverage must be in [0.9, 1], got {self.character_coverage}"
            )
        if self.min_lines < 1:
            raise ValueError(f"min_lines must be >= 1, got {self.min_lines}")
        if self.max_sp_sentences < 1:
            raise ValueError(f"max_sp_sentences must be >= 1, got {self.max_sp_sentences}")
        if not re.fullmatch(r"\d+(\.\d+)?[%bKMGTPEZY]?", self.memory):
            raise ValueError(f"memory must look like 1G, 512M or 20%, got {self.memory!r}")
        if self.threads < 1:
            raise ValueError(f"threads must be >= 1, got {self.threads}")


@dataclass
class LangResult:
    lang: str
    lines: int = 0  # normalised, non-empty lines
    chars: int = 0
    pieces: int = 0  # SentencePiece vocabulary obtained
    tokens: int = 0  # pieces in the encoded text
    train_perplexity: float | None = None  # of the training text itself (a sanity check)
    sp_bytes: int = 0
    lm_bytes: int = 0
    seconds: float = 0.0
    error: str | None = None


# -- pure steps ----------------------------------------------------------------------------


def normalize_lines(lines) -> list[str]:
    """cc_net's training text: `normalize` every line, drop the empty ones."""
    out = []
    for line in lines:
        line = normalize(line)
        if line:
            out.append(line)
    return out


def read_text(path: str) -> list[str]:
    """Lines of a UTF-8 text file on any Beam filesystem; LmError naming the file otherwise."""
    from apache_beam.io.filesystem import CompressionTypes
    from apache_beam.io.filesystems import FileSystems

    try:
        with FileSystems.open(path, compression_type=CompressionTypes.AUTO) as f:
            data = f.read()
    except Exception as e:
        raise LmError(f"{path}: cannot read reference text ({e})") from e
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise LmError(f"{path}: not UTF-8 text (line {line}, byte {e.start})") from e
    return text.splitlines()


def train_sentencepiece(lines: list[str], model_path: Path, config: LmConfig) -> int:
    """Train the unigram model on `lines`; returns the vocabulary size obtained."""
    import sentencepiece as spm

    prefix = str(model_path).removesuffix(".model")
    with open(os.devnull, "w") as devnull:
        try:
            spm.SentencePieceTrainer.train(
                sentence_iterator=iter(lines),
                model_prefix=prefix,
                model_type="unigram",
                vocab_size=config.vocab_size,
                hard_vocab_limit=False,
                character_coverage=config.character_coverage,
                input_sentence_size=config.max_sp_sentences,
                shuffle_input_sentence=True,
                num_threads=config.threads,
                logstream=devnull,
            )
        except Exception as e:  # spm raises RuntimeError("INTERNAL: ...") on bad settings/text
            raise LmError(f"SentencePiece training failed: {str(e).splitlines()[0]}") from e
    Path(prefix + ".vocab").unlink(missing_ok=True)  # cc_net's layout keeps only the model
    sp = spm.SentencePieceProcessor(model_file=prefix + ".model")
    return sp.get_piece_size()


def _run(cmd: list[str], what: str, stdin=None, stdout=None) -> None:
    proc = subprocess.run(cmd, stdin=stdin, stdout=stdout, stderr=subprocess.PIPE, text=False)
    if proc.returncode != 0:
        tail = proc.stderr.decode("utf-8", "replace").strip().splitlines()[-3:]
        raise LmError(f"{what} failed (exit {proc.returncode}): {' | '.join(tail)}")


def build_kenlm(pieces_path: Path, bin_path: Path, config: LmConfig, tmp_dir: Path) -> None:
    """`lmplz -o N --discount_fallback` then `build_binary`, as cc_net's Makefile."""
    lmplz, build_binary = find_tool("lmplz"), find_tool("build_binary")
    arpa = tmp_dir / "model.arpa"
    with open(pieces_path, "rb") as src, open(arpa, "wb") as dst:
        cmd = [lmplz, "-o", str(config.order), "-S", config.memory, "-T", str(tmp_dir)]
        _run(cmd + ["--discount_fallback"], "lmplz", stdin=src, stdout=dst)
    _run([build_binary, str(arpa), str(bin_path)], "build_binary", stdout=subprocess.DEVNULL)
    arpa.unlink()


def _publish(local: Path, dest: str) -> None:
    """Move a finished file to its final place atomically (rename), or upload it."""
    if is_local(dest):
        dest = dest[len("file://") :] if dest.startswith("file://") else dest
        os.makedirs(os.path.dirname(dest) or ".", exist_ok=True)
        with atomic_path(dest) as tmp:
            shutil.copyfile(local, tmp)
        return
    from apache_beam.io.filesystems import FileSystems

    with open(local, "rb") as src, FileSystems.create(dest) as dst:
        shutil.copyfileobj(src, dst, length=1 << 20)


def join_path(directory: str, name: str) -> str:
    from apache_beam.io.filesystems import FileSystems

    return FileSystems.join(directory, name)


def train_language(lang: str, reference: str, output_dir: str, config: LmConfig) -> LangResult:
    """The whole recipe for one language; errors are returned in the result, never raised."""
    import kenlm
    import sentencepiece as spm

    start = time.time()
    result = LangResult(lang=lang)
    try:
        lines = normalize_lines(read_text(reference))
        result.lines, result.chars = len(lines), sum(map(len, lines))
        if len(lines) < config.min_lines:
            raise LmError(
                f"{reference}: too little text for a language model ({len(lines)} non-empty "
                f"lines, need >= {config.min_lines}; add text or lower --min-lines)"
            )
        with tempfile.TemporaryDirectory(prefix=f"cc100-lm-{lang}-") as tmp:
            tmp_dir = Path(tmp)
            sp_model = tmp_dir / f"{lang}{SP_SUFFIX}"
            result.pieces = train_sentencepiece(lines, sp_model, config)
            sp = spm.SentencePieceProcessor(model_file=str(sp_model))
            encoded = tokenize(sp, lines)  # the pieces KenLM is trained on
            result.tokens = sum(len(line.split()) for line in encoded)
            pieces_path = tmp_dir / "pieces.txt"
            pieces_path.write_text("".join(line + "\n" for line in encoded), encoding="utf-8")
            lm_bin = tmp_dir / f"{lang}{LM_SUFFIX}"
            build_kenlm(pieces_path, lm_bin, config, tmp_dir)
            result.train_perplexity = perplexity(kenlm.Model(str(lm_bin)).score, encoded)
            result.sp_bytes, result.lm_bytes = sp_model.stat().st_size, lm_bin.stat().st_size
            _publish(sp_model, join_path(output_dir, f"{lang}{SP_SUFFIX}"))
            _publish(lm_bin, join_path(output_dir, f"{lang}{LM_SUFFIX}"))
    except (LmError, ToolNotFoundError) as e:
        result.error = str(e)
    except Exception as e:  # anything else: reported for this language, others go on
        result.error = f"{type(e).__name__}: {e}"
    result.seconds = round(time.time() - start, 2)
    return result


def _train_language_star(args) -> LangResult:
    return train_language(*args)


def train_languages(
    reference_dir: str,
    output_dir: str,
    langs: list[str],
    config: LmConfig = LmConfig(),
    workers: int = 1,
    progress=print,
) -> list[LangResult]:
    """Train every language (in `workers` processes); results in the order of `langs`."""
    jobs = [(lang, join_path(reference_dir, f"{lang}.txt"), output_dir, config) for lang in langs]
    results: dict[str, LangResult] = {}

    def report(result: LangResult) -> None:
        results[result.lang] = result
        done = f"[{len(results)}/{len(langs)}]"
        if result.error:
            progress(f"{done} {result.lang}: FAILED: {result.error}")
        else:
            progress(
                f"{done} {result.lang}: {result.lines} lines -> {result.pieces} pieces, "
                f"{result.tokens} tokens -> {config.order}-gram "
                f"{result.lm_bytes / 1e6:.1f} MB, train ppl {result.train_perplexity} "
                f"({result.seconds:.1f}s)"
            )

    if workers <= 1 or len(jobs) <= 1:
        for job in jobs:
            report(train_language(*job))
    else:
        ctx = multiprocessing.get_context("spawn")  # no fork of a process that may hold threads
        try:
            with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
                futures = [pool.submit(_train_language_star, job) for job in jobs]
                for future in as_completed(futures):
                    report(future.result())
        except BrokenProcessPool as e:  # e.g. a __main__ that spawn cannot re-import (stdin)
            progress(f"worker processes failed ({e}); training the rest in this process")
            for job in jobs:
                if job[0] not in results:
                    report(train_language(*job))
    return [results[lang] for lang in langs]


def format_summary(results: list[LangResult], output_dir: str) -> str:
    header = (
        f"{'lang':<6} {'lines':>8} {'chars':>10} {'pieces':>7} {'tokens':>9} {'train ppl':>9} "
        f"{'sp MB':>6} {'lm MB':>6} {'sec':>6}  status"
    )
    rows = [header, "-" * len(header)]
    for r in results:
        status = "ok" if not r.error else "FAILED"
        ppl = "-" if r.train_perplexity is None else f"{r.train_perplexity:.1f}"
        rows.append(
            f"{r.lang:<6} {r.lines:>8} {r.chars:>10} {r.pieces:>7} {r.tokens:>9} {ppl:>9} "
            f"{r.sp_bytes / 1e6:>6.2f} {r.lm_bytes / 1e6:>6.2f} {r.seconds:>6.1f}  {status}"
        )
    ok = [r for r in results if not r.error]
    rows.append(f"{len(ok)}/{len(results)} languages trained into {output_dir}")
    for r in results:
        if r.error:
            rows.append(f"  {r.lang}: {r.error}")
    return "\n".join(rows)


# -- command line --------------------------------------------------------------------------


def available_languages(reference_dir: str) -> list[str]:
    from apache_beam.io.filesystems import FileSystems

    try:
        matches = FileSystems.match([join_path(reference_dir, "*.txt")])[0].metadata_list
    except Exception:
        return []
    return sorted(m.path.rstrip("/").rsplit("/", 1)[-1][: -len(".txt")] for m in matches)


def at_most_four_cores() -> int:
    return min(cores(), 4)


@dataclass
class LmStageConfig:
    """`cc100 lm`: which languages, where, how many at a time, and the models' LmConfig."""

    reference: str = option("--reference", required=True, metavar="DIR",
                            help="DIR/{lang}.txt: one sentence or paragraph per line (any Beam filesystem)")
    output: str = option("--output", required=True, metavar="LM_DIR", help="where the models are written")
    langs: str | None = option("--langs", default=None,
                               help="comma-separated languages (default: every DIR/*.txt)")
    workers: int = option("--workers", default_factory=at_most_four_cores, metavar="N",
                          help="languages trained in parallel processes (default: CPUs, at most 4)")
    models: LmConfig = sub_config(LmConfig)  # its threads follow --workers (__post_init__)
    skip_existing: bool = option("--skip-existing", default=False,
                                 help="leave languages whose two model files already exist untouched")

    def __post_init__(self):
        if self.workers < 1:
            raise ValueError(f"--workers must be >= 1, got {self.workers}")
        # SentencePiece threads per language: the CPUs shared by the parallel languages
        threads = max(1, (os.cpu_count() or 1) // self.workers)
        self.models = dataclasses.replace(self.models, threads=threads)


def _parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="cc100 lm",
        description="Train cc_net's per-language scoring models (SentencePiece + KenLM 5-gram) "
        "from DIR/{lang}.txt into LM_DIR/{lang}.sp.model and LM_DIR/{lang}.arpa.bin.",
    )
    add_config_flags(parser, LmStageConfig)
    add_force_flag(parser)
    return parser.parse_args(argv)


# -- incremental: only the languages whose reference text changed ---------------------------


def decisive_config(config: LmConfig) -> dict:
    """The settings that change a model (lmplz's sort memory and the threads do not)."""
    return decisive(asdict(config), ("memory", "threads"))


def models_exist(output: str, lang: str) -> bool:
    return all(os.path.isfile(os.path.join(output, lang + suffix)) for suffix in (SP_SUFFIX, LM_SUFFIX))


def up_to_date_languages(output: str, config: dict) -> dict[str, str]:
    """{lang: fingerprint of the reference text its models were trained on}, from LM_DIR's
    completion record; {} when there is none or the settings changed (every model is stale)."""
    record = read_completion(output)
    if record is None or record.get("config") != completion_record(STAGE, config, {})["config"]:
        return {}
    return dict(record.get("inputs") or {})


def languages_to_train(output: str, config: dict, texts: dict[str, str]) -> list[str]:
    """The languages whose reference text changed since their models were built, whose models
    are missing, or all of them when the settings changed; `texts`: {lang: fingerprint}."""
    built = up_to_date_languages(output, config)
    return [lang for lang, text in texts.items() if built.get(lang) != text or not models_exist(output, lang)]


def record_languages(output: str, config: dict, texts: dict[str, str], drop=()) -> None:
    """Write LM_DIR's completion record: the languages in `texts` are up to date (with that
    reference text), the others recorded before stay, those in `drop` are not."""
    built = {**up_to_date_languages(output, config), **texts}
    mark_complete(output, STAGE, config, {lang: text for lang, text in sorted(built.items()) if lang not in drop})


def claim_output(output: str) -> None:
    """Make `output` the lm stage's own (pipeline/contracts.py): new, empty or already ours;
    OwnershipError otherwise, before any model file is written."""
    if is_local(output):
        claim(output, STAGE)
        return
    from pipeline.writers.parquet import output_problem, write_marker

    problem = output_problem(output, STAGE, replace=False)
    if problem:
        raise OwnershipError(problem)
    write_marker(output, STAGE)


def main(argv: list[str] | None = None) -> int:
    force, argv = pop_force(argv)
    try:
        args = config_from_args(LmStageConfig, _parse_args(argv))
    except ValueError as e:
        print(f"cc100 lm: {e}", file=sys.stderr)
        return 2
    config = args.models
    try:
        find_tool("lmplz"), find_tool("build_binary")
    except ToolNotFoundError as e:
        print(f"cc100 lm: {e}", file=sys.stderr)
        return 2

    found = available_languages(args.reference)
    langs = list(parse_languages(args.langs)) if args.langs else found
    if not found:
        print(f"cc100 lm: {args.reference}: no *.txt reference files found", file=sys.stderr)
        return 2
    missing = [lang for lang in langs if lang not in found]
    if missing:
        paths = ", ".join(join_path(args.reference, f"{lang}.txt") for lang in missing)
        print(f"cc100 lm: reference text not found: {paths}", file=sys.stderr)
        return 2
    try:
        claim_output(args.output)
    except OwnershipError as e:
        print(f"cc100 lm: --output {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"cc100 lm: {args.output}: cannot create output directory ({e})", file=sys.stderr)
        return 2
    if args.skip_existing:
        from apache_beam.io.filesystems import FileSystems

        def complete(lang):
            return all(
                FileSystems.exists(join_path(args.output, lang + suffix))
                for suffix in (SP_SUFFIX, LM_SUFFIX)
            )

        kept = [lang for lang in langs if complete(lang)]
        if kept:
            print(f"skipping {len(kept)} languages with existing models: {', '.join(kept)}")
        langs = [lang for lang in langs if lang not in kept]

    # completion records are kept for local directories (cloud outputs: every language, as before)
    incremental = all(is_local(path) and "://" not in path for path in (args.output, args.reference))
    if incremental:
        decided = decisive_config(config)
        texts = {lang: content_fingerprint(os.path.join(args.reference, f"{lang}.txt")) for lang in langs}
        todo = langs if force else languages_to_train(args.output, decided, texts)
        if not todo:
            print(UP_TO_DATE.format(stage=STAGE, output=args.output))
            return 0
        kept = [lang for lang in langs if lang not in todo]
        if kept:
            print(f"cc100 lm: {len(kept)} languages up to date, kept: {', '.join(kept)}")
        langs = todo
        record_languages(args.output, decided, {}, drop=langs)  # not up to date until retrained

    workers = max(1, min(args.workers, len(langs)))
    print(
        f"cc100 lm: {len(langs)} languages from {args.reference} -> {args.output} "
        f"({workers} processes, {config.order}-gram, vocab <= {config.vocab_size})",
        flush=True,
    )
    results = train_languages(
        args.reference, args.output, langs, config, workers, progress=lambda s: print(s, flush=True)
    )
    if incremental:
        record_languages(args.output, decided, {r.lang: texts[r.lang] for r in results if not r.error})
    print()
    print(format_summary(results, args.output))
    return 1 if any(r.error for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
