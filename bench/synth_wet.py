"""Synthesise a Common-Crawl-like WET file of any size from real sentences, for the benchmarks.

No real multi-record multilingual WET file is available offline (see shared/data/SOURCES.md), so
the benchmarks build one: real sentences from `reference_leipzig/*.txt` (75 languages) and
`reference/*.txt` (UD, 48 languages), arranged the way Common Crawl pages look to CCNet:

* a skewed language mix: English `--english-share` (default 45%, about Common Crawl's), then
  de, ru, fr, es, ja, zh, it, pt, pl, nl, ... on a Zipf curve (`--zipf`), down to a long tail;
* documents belong to synthetic *sites*; every page of a site repeats the site's boilerplate
  (navigation, tagline, cookie notice, footer, share line), and a few lines ("Skip to content",
  "Powered by WordPress") recur across sites - what paragraph dedup exists to remove;
* body paragraphs of 1-4 real sentences (mostly unique), a share of short pages under cc_net's
  300-character minimum, some exact re-crawls of an earlier page under another URL, and some
  non-English pages with an English paragraph;
* records in real WET format (pipeline/writers/wet.py, the demo's writer too): a `warcinfo`
  record then `conversion` records, one gzip member each, with the headers in the order of
  CC-MAIN-2019-30 (cc_net's positional parser relies on it), `WARC-Block-Digest` the base32
  SHA-1 of the body.

The output is byte-identical for the same arguments and --seed. A manifest (`OUT.manifest.tsv`:
record id, url, language, site, kind) is written beside it; its name does not match `*.wet.gz`.

    python -m bench.synth_wet --docs 10000 --seed 0 --output /tmp/bench/synth-10k.warc.wet.gz
"""

from __future__ import annotations

import argparse
import math
import os
import random
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import quote

from pipeline.contracts import atomic_path
from pipeline.writers import wet

# Shares of documents (%) in a 2019 Common Crawl snapshot, roughly (commoncrawl.github.io
# cc-crawl-statistics, CLD2 languages), for the head of the distribution. English is set by
# --english-share; these are rescaled to fill the rest together with the tail.
CC_SHARES = {"de": 5.8, "ru": 5.6, "zh": 4.6, "ja": 4.5, "fr": 4.5, "es": 4.4, "it": 2.4, "pt": 2.0,
             "pl": 1.8, "nl": 1.7, "cs": 1.0, "tr": 0.9, "vi": 0.9, "id": 0.7, "sv": 0.7, "fa": 0.6,
             "ar": 0.6, "ko": 0.5, "uk": 0.5, "hu": 0.5}
# Order of the tail (after the languages above), down the Zipf curve; languages of the sources
# not listed follow in alphabetical order.
TAIL_RANKING = (
    "ro el da fi sk nb no bg he th hr lt sr sl ca et lv hi bn ta ms is sq az ka mk kk be gl eu hy "
    "ur mr ml te gu pa eo la af cy ga bs mn sw tl so zu xh yo st tn ts sn lg mi nn"
).split()
NO_SPACE_LANGS = frozenset({"ja", "zh", "th"})  # sentences are joined without a space
SOURCES = ("reference_leipzig", "reference")
TLD = {"en": ["com", "org", "net", "co.uk", "com.au"], "ja": ["jp"], "zh": ["cn", "com.tw"],
       "ko": ["kr"], "sv": ["se"], "da": ["dk"], "cs": ["cz"], "el": ["gr"], "uk": ["com.ua"],
       "he": ["co.il"], "fa": ["ir"], "ar": ["com.sa", "ae"], "hi": ["in"], "vi": ["vn"],
       "nb": ["no"], "nn": ["no"], "et": ["ee"], "sl": ["si"], "ka": ["ge"], "sr": ["rs"],
       "be": ["by"], "kk": ["kz"], "ca": ["cat"], "eu": ["eus"], "gl": ["gal"]}
CRAWL_START = 1563148800  # 2019-07-15T00:00:00Z: the CC-MAIN-2019-30 crawl window
CRAWL_SECONDS = 10 * 86400
# Boilerplate many unrelated sites share (CMS and social widgets); always in English.
GLOBAL_BOILERPLATE = (
    "Skip to content", "Powered by WordPress", "Share this:", "Like this:", "Loading...",
    "Leave a Reply Cancel reply", "Your email address will not be published.",
    "Required fields are marked *", "Proudly powered by WordPress", "Back to top",
    "This site uses cookies. By continuing to browse the site you are agreeing to our use of cookies.",
    "Facebook Twitter Pinterest Email", "Search for:", "Recent Posts", "Archives", "Categories",
)


@dataclass(frozen=True)
class SynthConfig:
    docs: int = 10_000
    seed: int = 0
    english_share: float = 0.45  # share of English documents (Common Crawl: ~45%)
    zipf: float = 2.0  # exponent of the Zipf tail after the CC_SHARES head (TAIL_RANKING order)
    docs_per_site: float = 20.0  # mean pages per synthetic site
    short_share: float = 0.10  # pages shorter than cc_net's 300-character minimum
    duplicate_share: float = 0.03  # exact re-crawls of an earlier page under another URL
    mixed_share: float = 0.05  # non-English pages that carry one English paragraph
    paragraphs: float = 12.0  # median body paragraphs of a normal page (log-normal)
    snapshot: str = "CC-MAIN-2019-30"
    langs: tuple[str, ...] = ()  # restrict to these languages; () = every language of the sources

    def __post_init__(self):
        if self.docs < 1:
            raise ValueError(f"docs: must be >= 1, got {self.docs}")
        if not 0.0 <= self.english_share <= 1.0:
            raise ValueError(f"english_share: must be in [0, 1], got {self.english_share}")
        if self.zipf < 0:
            raise ValueError(f"zipf: must be >= 0, got {self.zipf}")
        if self.docs_per_site < 1:
            raise ValueError(f"docs_per_site: must be >= 1, got {self.docs_per_site}")
        for name in ("short_share", "duplicate_share", "mixed_share"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise ValueError(f"{name}: must be in [0, 1), got {value}")
        if self.short_share + self.duplicate_share >= 1.0:
            raise ValueError("short_share + duplicate_share: must be < 1")
        if self.paragraphs < 1:
            raise ValueError(f"paragraphs: must be >= 1, got {self.paragraphs}")


@dataclass
class SynthSummary:
    path: str
    docs: int
    bytes_compressed: int
    bytes_text: int  # sum of conversion record bodies
    languages: dict[str, int]  # documents per language, most frequent first
    kinds: dict[str, int]  # normal / short / duplicate / mixed
    sites: int
    seconds: float
    config: dict = field(default_factory=dict)


# -- inputs -------------------------------------------------------------------------------------


def load_sentences(data_dir: Path, sources=SOURCES, min_chars: int = 8) -> dict[str, list[str]]:
    """{lang: sentences} from DATA/{source}/{lang}.txt, stripped, deduplicated, order kept."""
    pools: dict[str, dict[str, None]] = {}
    for source in sources:
        directory = Path(data_dir) / source
        for path in sorted(directory.glob("*.txt")):
            lines = path.read_text(encoding="utf-8").splitlines()
            pool = pools.setdefault(path.stem, {})
            for line in lines:
                line = " ".join(line.split())
                if len(line) >= min_chars:
                    pool[line] = None
    return {lang: list(pool) for lang, pool in sorted(pools.items()) if len(pool) >= 20}


def language_weights(langs, english_share: float, zipf: float) -> dict[str, float]:
    """English gets `english_share`; then CC_SHARES for the head and a Zipf tail (TAIL_RANKING order).

    The tail continues the head's curve: its first language gets `zipf`-decayed weight after the
    smallest head share. Everything but English is rescaled to 1 - english_share.
    """
    langs = sorted(set(langs))
    weights: dict[str, float] = {}
    head = {lang: CC_SHARES[lang] for lang in langs if lang in CC_SHARES}
    rank = {lang: i for i, lang in enumerate(TAIL_RANKING)}
    tail = sorted((lang for lang in langs if lang != "en" and lang not in CC_SHARES),
                  key=lambda lang: (rank.get(lang, len(rank)), lang))
    start = min(head.values()) if head else 1.0
    raw = dict(head)
    for i, lang in enumerate(tail):
        raw[lang] = start * (len(head) + 1) ** zipf / (len(head) + 2 + i) ** zipf
    if "en" in langs:
        weights["en"] = english_share if raw else 1.0
    rest = 1.0 - weights.get("en", 0.0)
    total = sum(raw.values()) or 1.0
    for lang in sorted(raw, key=lambda lang: (-raw[lang], lang)):
        weights[lang] = rest * raw[lang] / total
    return weights


def apportion(weights: dict[str, float], n: int) -> dict[str, int]:
    """Largest-remainder rounding: exactly `n` documents, each language its share (deterministic)."""
    exact = {lang: w * n for lang, w in weights.items()}
    counts = {lang: int(math.floor(x)) for lang, x in exact.items()}
    left = n - sum(counts.values())
    order = sorted(exact, key=lambda lang: (-(exact[lang] - counts[lang]), lang))
    for lang in order[:left]:
        counts[lang] += 1
    return {lang: c for lang, c in counts.items() if c > 0}


# -- sites and pages ------------------------------------------------------------------------------


def _words(rng: random.Random, pool: list[str], n: int, lang: str) -> list[str]:
    """`n` short words (or, for languages without spaces, short spans) from the sentence pool."""
    out: list[str] = []
    for _ in range(n * 20):
        sentence = rng.choice(pool)
        if lang in NO_SPACE_LANGS:
            start = rng.randrange(max(1, len(sentence) - 4))
            word = sentence[start : start + rng.randint(2, 4)].strip(" .,!?;:。、，")
        else:
            word = rng.choice(sentence.split()).strip(".,!?;:\"'()[]«»„“”")
        if 2 <= len(word) <= 14 and word not in out and not any(c.isspace() for c in word):
            out.append(word)
        if len(out) == n:
            break
    return out or ["Home"]


def _domain(rng: random.Random, lang: str) -> str:
    consonants, vowels = "bcdfghjklmnprstvz", "aeiou"
    name = "".join(rng.choice(consonants) + rng.choice(vowels) for _ in range(rng.randint(2, 4)))
    if rng.random() < 0.3:
        name += "-" + "".join(rng.choice(consonants) + rng.choice(vowels) for _ in range(2))
    tld = rng.choice(TLD.get(lang, [lang if len(lang) == 2 else "com", "com"]))
    return f"{name}.{tld}"


@dataclass
class Site:
    domain: str
    lang: str
    header: list[str]  # lines at the top of every page
    footer: list[str]  # lines at the bottom of every page
    sep: str  # how this site's navigation separates items


def make_site(rng: random.Random, lang: str, pool: list[str]) -> Site:
    sep = rng.choice([" | ", " · ", " - ", "  "])
    domain = _domain(rng, lang)
    brand = domain.split(".")[0].replace("-", " ").title()
    header = [sep.join(_words(rng, pool, rng.randint(4, 7), lang))]
    if rng.random() < 0.6:
        header.append(rng.choice(pool))  # tagline
    if rng.random() < 0.4:
        header.append(rng.choice(GLOBAL_BOILERPLATE[:3]))
    footer = []
    if rng.random() < 0.7:
        footer.append(rng.choice(pool))  # site notice (cookies, newsletter) in the site's language
    footer.append(sep.join(_words(rng, pool, rng.randint(3, 5), lang)))
    footer.append(f"© {rng.randint(2008, 2019)} {brand}. " + rng.choice(
        ["All rights reserved.", "Alle Rechte vorbehalten.", "Tous droits réservés.", ""]).strip())
    for line in rng.sample(GLOBAL_BOILERPLATE[3:], rng.randint(0, 3)):
        footer.append(line)
    return Site(domain=domain, lang=lang, header=header, footer=footer, sep=sep)


def _paragraph(rng: random.Random, pool: list[str], lang: str, k: int) -> str:
    joiner = "" if lang in NO_SPACE_LANGS else " "
    return joiner.join(rng.choice(pool) for _ in range(k))


def make_page(rng: random.Random, site: Site, pools: dict[str, list[str]], kind: str,
              median_paragraphs: float) -> str:
    """The text of one page (a WET body): title line, then paragraphs, "\\n"-separated."""
    pool = pools[site.lang]
    title = _paragraph(rng, pool, site.lang, 1)[:80].rstrip() + site.sep + site.domain.split(".")[0].title()
    if kind == "short":
        body = [_words(rng, pool, 1, site.lang)[0], rng.choice(pool)[:200]]
        return "\n".join([title, *body])
    n = max(1, int(round(rng.lognormvariate(math.log(median_paragraphs), 0.6))))
    body = []
    for _ in range(min(n, 60)):
        r = rng.random()
        k = 1 if r < 0.25 else 2 if r < 0.6 else 3 if r < 0.85 else 4
        body.append(_paragraph(rng, pool, site.lang, k))
    if kind == "mixed" and "en" in pools:
        body.insert(rng.randrange(len(body) + 1), _paragraph(rng, pools["en"], "en", 2))
    if rng.random() < 0.3:  # a date or a short call to action between paragraphs
        body.insert(rng.randrange(len(body) + 1), f"{rng.randint(1, 28):02d}.{rng.randint(1, 12):02d}.{rng.randint(2010, 2019)}")
    return "\n".join([title, *site.header, *body, *site.footer])


# -- WET records ---------------------------------------------------------------------------------


def _date(rng: random.Random, millis: bool = True) -> str:
    t = time.gmtime(CRAWL_START + rng.randrange(CRAWL_SECONDS))
    return time.strftime("%Y-%m-%dT%H:%M:%S", t) + (".000Z" if millis else "Z")


def gzip_member(data: bytes) -> bytes:
    """One gzip member at level 6 (faster than the demo's 9 for million-record files)."""
    return wet.gzip_member(data, level=6)


def warcinfo_record(rng: random.Random, filename: str, snapshot: str) -> bytes:
    date = _date(rng, millis=False)
    fields = [
        ("Software-Info", "cc100 bench/synth_wet.py (synthetic pages from real sentences)"),
        ("Extracted-Date", time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.strptime(date, "%Y-%m-%dT%H:%M:%SZ"))),
        ("robots", "checked via crawler-commons 0.11-SNAPSHOT"),
        ("isPartOf", snapshot),
        ("operator", "Common Crawl Admin"),
    ]
    return wet.warcinfo_record(filename, date, wet.record_id(rng), fields)  # the 2019 layout


def conversion_record(rng: random.Random, url: str, text: str) -> bytes:
    date = _date(rng)
    record, refers_to = wet.record_id(rng), wet.record_id(rng)
    return wet.conversion_record(url, date, record, refers_to, text)  # the 2019 layout


# -- the file ------------------------------------------------------------------------------------


def plan_documents(config: SynthConfig, pools: dict[str, list[str]], rng: random.Random):
    """[(lang, site index, kind)] in crawl order, and the sites: the whole shape of the file."""
    weights = language_weights(pools, config.english_share, config.zipf)
    counts = apportion(weights, config.docs)
    sites: list[Site] = []
    plan = []
    for lang in sorted(counts):
        n = counts[lang]
        n_sites = max(1, round(n / config.docs_per_site))
        first = len(sites)
        sites.extend(make_site(rng, lang, pools[lang]) for _ in range(n_sites))
        # Zipf-sized sites: a few big ones, many with a page or two
        site_w = [1.0 / (i + 1) for i in range(n_sites)]
        for _ in range(n):
            plan.append([lang, first + rng.choices(range(n_sites), site_w)[0], "normal"])
    rng.shuffle(plan)  # a WET segment interleaves sites and languages
    for entry in plan:
        r = rng.random()
        if r < config.short_share:
            entry[2] = "short"
        elif r < config.short_share + config.duplicate_share:
            entry[2] = "duplicate"
        elif entry[0] != "en" and rng.random() < config.mixed_share:
            entry[2] = "mixed"
    return plan, sites


def synthesize(output: str | os.PathLike, config: SynthConfig, data_dir: str | os.PathLike,
               progress=None) -> SynthSummary:
    """Write the WET file and its manifest; returns what was written."""
    t0 = time.perf_counter()
    pools = load_sentences(Path(data_dir))
    if config.langs:
        missing = [lang for lang in config.langs if lang not in pools]
        if missing:
            raise ValueError(f"langs: no reference text for {', '.join(missing)} in {data_dir}")
        pools = {lang: pools[lang] for lang in config.langs}
    if not pools:
        raise ValueError(f"{data_dir}: no reference text found under {' or '.join(SOURCES)}/*.txt")
    rng = random.Random(config.seed)
    plan, sites = plan_documents(config, pools, rng)
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    pages: dict[str, list[tuple[str, str]]] = {}  # lang -> (url, text) of earlier pages
    langs, kinds = Counter(), Counter()
    text_bytes = 0
    with atomic_path(output) as tmp, atomic_path(manifest_path(output)) as manifest_tmp, \
            open(tmp, "wb") as out, open(manifest_tmp, "w", encoding="utf-8") as manifest:
        out.write(gzip_member(warcinfo_record(rng, output.name, config.snapshot)))
        manifest.write("index\turl\tlanguage\tsite\tkind\n")
        for i, (lang, site_index, kind) in enumerate(plan):
            site = sites[site_index]
            if kind == "duplicate" and pages.get(lang):  # a re-crawl of an earlier page, same language
                url, text = pages[lang].pop(rng.randrange(len(pages[lang])))  # re-crawled once at most
                url = url.replace("http://", "https://", 1) if url.startswith("http://") else url + "?amp=1"
                domain = url.split("/")[2].removeprefix("www.")
            else:
                kind = "normal" if kind == "duplicate" else kind
                scheme = "https" if rng.random() < 0.4 else "http"
                www = "www." if rng.random() < 0.5 else ""
                slug = quote("-".join(w.lower() for w in _words(rng, pools[lang], rng.randint(2, 5), lang)), safe="-")
                url = f"{scheme}://{www}{site.domain}/{slug}-{rng.randrange(10 ** 6)}"
                text = make_page(rng, site, pools, kind, config.paragraphs)
                domain = site.domain
                if kind != "short" and len(pages.setdefault(lang, [])) < 1000:
                    pages[lang].append((url, text))
            record = conversion_record(rng, url, text)
            out.write(gzip_member(record))
            manifest.write(f"{i}\t{url}\t{lang}\t{domain}\t{kind}\n")
            text_bytes += len(text.encode("utf-8"))
            langs[lang] += 1
            kinds[kind] += 1
            if progress and (i + 1) % 10_000 == 0:
                progress(f"  {i + 1}/{len(plan)} documents")
    return SynthSummary(
        path=str(output), docs=len(plan), bytes_compressed=output.stat().st_size, bytes_text=text_bytes,
        languages=dict(langs.most_common()), kinds=dict(sorted(kinds.items())), sites=len(sites),
        seconds=round(time.perf_counter() - t0, 2), config=asdict(config))


def manifest_path(output: str | os.PathLike) -> Path:
    output = Path(output)
    return output.with_name(output.name + ".manifest.tsv")


def read_manifest(output: str | os.PathLike) -> list[dict]:
    lines = manifest_path(output).read_text(encoding="utf-8").splitlines()
    names = lines[0].split("\t")
    return [dict(zip(names, line.split("\t"))) for line in lines[1:]]


def default_data_dir() -> Path:
    env = os.environ.get("CC100_SHARED_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[1].parent / "shared" / "data"


def format_summary(s: SynthSummary) -> str:
    top = ", ".join(f"{lang} {n / s.docs:.1%}" for lang, n in list(s.languages.items())[:10])
    kinds = ", ".join(f"{k} {n}" for k, n in s.kinds.items())
    return (f"wrote {s.path}: {s.docs} documents, {len(s.languages)} languages, {s.sites} sites, "
            f"{s.bytes_text / 1e6:.1f} MB text, {s.bytes_compressed / 1e6:.1f} MB gzip, {s.seconds:.1f}s\n"
            f"  languages: {top}, ...\n  kinds: {kinds}\n  manifest: {manifest_path(s.path)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.synth_wet", description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", required=True, metavar="FILE.warc.wet.gz",
                        help="where to write the WET file (keep it outside the repository)")
    parser.add_argument("--docs", type=int, default=SynthConfig.docs, help="conversion records (default 10000)")
    parser.add_argument("--seed", type=int, default=SynthConfig.seed)
    parser.add_argument("--data", default=None, metavar="DIR",
                        help="shared data directory with reference_leipzig/ and reference/ "
                        "(default: $CC100_SHARED_DATA or ../shared/data)")
    parser.add_argument("--english-share", type=float, default=SynthConfig.english_share)
    parser.add_argument("--zipf", type=float, default=SynthConfig.zipf)
    parser.add_argument("--docs-per-site", type=float, default=SynthConfig.docs_per_site)
    parser.add_argument("--short-share", type=float, default=SynthConfig.short_share)
    parser.add_argument("--duplicate-share", type=float, default=SynthConfig.duplicate_share)
    parser.add_argument("--langs", default="", help="comma-separated languages (default: all)")
    args = parser.parse_args(argv)
    data_dir = Path(args.data) if args.data else default_data_dir()
    if not data_dir.is_dir():
        print(f"synth_wet: {data_dir}: data directory not found (pass --data)", file=sys.stderr)
        return 2
    try:
        config = SynthConfig(docs=args.docs, seed=args.seed, english_share=args.english_share, zipf=args.zipf,
                             docs_per_site=args.docs_per_site, short_share=args.short_share,
                             duplicate_share=args.duplicate_share,
                             langs=tuple(x.strip() for x in args.langs.split(",") if x.strip()))
        summary = synthesize(args.output, config, data_dir, progress=print)
    except (ValueError, OSError) as e:
        print(f"synth_wet: {e}", file=sys.stderr)
        return 2
    print(format_summary(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
