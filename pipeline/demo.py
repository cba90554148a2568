"""Offline demo data: a small, multilingual Common Crawl lookalike built from bundled text.

`python -m pipeline.demo --output DIR` writes

* `DIR/wet/demo-00000.warc.wet.gz`, `DIR/wet/demo-00001.warc.wet.gz` - WET files as Common Crawl
  writes them (a `warcinfo` record, then `conversion` records, one gzip member per record). The
  first file uses the 2019 header layout, the second the 2024 one (which adds
  `WARC-Identified-Content-Language` and `WARC-Payload-Digest`), so readers meet both.
* `DIR/reference/{lang}.txt` - clean reference sentences (one per line) for `cc100 lm`.
* `DIR/truth.json` - what every record is (language, kind, site, the page a near-copy copies),
  so tests and the report can check what each stage removed.

Everything comes from `pipeline/demo_data/` (text written for this repository): per-language
reference sentences, per-language "web" sentences in topic blocks (different sentences from the
reference, so perplexity means something) and per-language site templates (menus, cookie
notices, footers). The pages are composed the way Common Crawl looks to CCNet: a skewed language
mix (much English), boilerplate lines repeated across the pages of a site (paragraph dedup must
remove them), near-copies of articles with a few words changed (for near-dedup), exact paragraphs
syndicated across sites, short error/login pages (below 300 characters), keyword spam and word
salad (high perplexity), number tables (low language-ID confidence), bilingual pages, and a few
pages in languages without reference text (no LM: bucket "all").

Deterministic: the same seed gives the same bytes (gzip with mtime 0, seeded record ids).

`python -m pipeline.demo --summary DEMO_DIR` prints where `make demo` left every artifact
(input, LMs, corpus, report, vocabulary, shards, run, HF export) and exits 1 if one is missing.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.resources
import json
import random
import re
import sys
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from pipeline.contracts import (CHECKPOINT, DEMO_REFERENCE_DIR, DEMO_TRUTH, DEMO_WET_DIR, META_DIR, REPORT_DIR,
                                REPORT_INDEX, RUN_EXPORT_DIR, SHARDS_MANIFEST, STATS_FILE, TRAINING_LOG, VOCAB_MODEL,
                                OwnershipError, atomic_write_bytes, claim, find_meta, lm_languages, meta_path)
from pipeline.writers import wet

DATA_PACKAGE = "pipeline"
DATA_DIR = "demo_data"

# Article pages per language: a Common-Crawl-like skew (English dominates). Languages without
# `reference/{lang}.txt` (it, pt) get no LM, so the corpus job must put them in bucket "all".
ARTICLE_PAGES = {
    "en": 96, "de": 26, "fr": 24, "es": 24, "ru": 22, "ja": 14, "zh": 14,
    "el": 10, "ar": 10, "hi": 10, "it": 3, "pt": 3,
}
# Near-copies of articles (same text, a few words changed), per language.
NEAR_DUPLICATES = {"en": 5, "de": 2, "fr": 1, "es": 1, "ru": 1, "ja": 1, "zh": 1}
# Paragraphs copied verbatim onto pages of other sites (syndication), per language.
SYNDICATED_PARAGRAPHS = {"en": 2, "de": 1, "fr": 1}
WORD_SALAD_PAGES = {"en": 3, "de": 1, "ru": 1, "fr": 1}  # shuffled words: high perplexity
KEYWORD_SPAM_PAGES = {"en": 2, "es": 1}
TABLE_PAGES = 4  # timetables and price lists: almost no words, low LID confidence
MIXED_PAGES = (("en", "es"), ("fr", "de"))  # bilingual pages: alternating paragraphs

# Languages written without spaces between words.
NO_SPACE_LANGS = frozenset({"zh", "ja"})
# How many topic blocks one article draws from (CJK sentences are short in characters).
STORIES_PER_PAGE = {"zh": 2, "ja": 2}
SENTENCES_PER_STORY = {"zh": (6, 8), "ja": (6, 8)}  # (min, max); others (5, 7)
# ISO 639-3 codes, as Common Crawl writes WARC-Identified-Content-Language (2024 layout).
ISO639_3 = {
    "en": "eng", "fr": "fra", "de": "deu", "es": "spa", "ru": "rus", "el": "ell", "ar": "ara",
    "hi": "hin", "zh": "zho", "ja": "jpn", "it": "ita", "pt": "por",
}

CRAWL = "CC-MAIN-DEMO"
CRAWL_START = dt.datetime(2024, 5, 17, 0, 0, 0, tzinfo=dt.timezone.utc)
CRAWL_SECONDS = 3 * 24 * 3600
WET_FILES = ("demo-00000.warc.wet.gz", "demo-00001.warc.wet.gz")
LAYOUTS = wet.LAYOUTS  # header layout of each WET file, in order
MAX_JACCARD_TRIES = 40  # candidate sentence sets per article (keeps articles distinct)


class DemoDataError(Exception):
    """The bundled demo data is missing or malformed (a packaging bug; names the file)."""


# -- the bundled data ------------------------------------------------------------------------


@dataclass(frozen=True)
class Block:
    """A topic block of web sentences: one headline and the sentences of one story."""

    headline: str
    sentences: tuple[str, ...]


@dataclass(frozen=True)
class Bundle:
    reference: dict[str, list[str]]  # lang -> sentences
    blocks: dict[str, list[Block]]  # lang -> topic blocks
    sites: dict[str, dict]  # lang -> site template (see demo_data/sites.json)


def data_root():
    return importlib.resources.files(DATA_PACKAGE) / DATA_DIR


def parse_blocks(text: str, name: str = "pages") -> list[Block]:
    """`## headline` then one sentence per line; blank lines separate blocks."""
    blocks: list[Block] = []
    headline: str | None = None
    sentences: list[str] = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if line.startswith("## "):
            if headline is not None:
                blocks.append(Block(headline, tuple(sentences)))
            headline, sentences = line[3:].strip(), []
        elif line:
            if headline is None:
                raise DemoDataError(f"{name}:{lineno}: sentence before the first '## headline'")
            sentences.append(line)
    if headline is not None:
        blocks.append(Block(headline, tuple(sentences)))
    for block in blocks:
        if len(block.sentences) < 4:
            raise DemoDataError(f"{name}: block {block.headline!r} has fewer than 4 sentences")
    return blocks


def load_bundle() -> Bundle:
    root = data_root()
    try:
        sites = json.loads((root / "sites.json").read_text(encoding="utf-8"))
        reference = {}
        for entry in sorted((root / "reference").iterdir(), key=lambda p: p.name):
            if entry.name.endswith(".txt"):
                lines = entry.read_text(encoding="utf-8").splitlines()
                reference[entry.name[:-4]] = [s.strip() for s in lines if s.strip()]
        blocks = {}
        for lang in ARTICLE_PAGES:
            path = root / "pages" / f"{lang}.txt"
            blocks[lang] = parse_blocks(path.read_text(encoding="utf-8"), f"pages/{lang}.txt")
    except (OSError, ValueError) as e:
        raise DemoDataError(f"bundled demo data under {root} is unreadable: {e}") from e
    missing = [lang for lang in ARTICLE_PAGES if lang not in sites]
    if missing:
        raise DemoDataError(f"sites.json has no template for {', '.join(missing)}")
    return Bundle(reference=reference, blocks=blocks, sites=sites)


# -- composing pages -------------------------------------------------------------------------


@dataclass
class Page:
    url: str
    date: str  # WARC-Date
    lang: str  # language of the text; "en+es" for bilingual pages, "und" for tables
    kind: str  # article | near_duplicate | short | word_salad | keyword_spam | table | mixed
    site: str  # host
    lines: list[str]  # the WET text, one line per paragraph; lines[0] is the title
    content: list[str] = field(default_factory=list)  # the article paragraphs only
    source_url: str | None = None  # near_duplicate: the page it copies
    syndicated: list[str] = field(default_factory=list)  # paragraphs copied onto this page

    @property
    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def join_sentences(sentences: list[str] | tuple[str, ...], lang: str) -> str:
    return ("" if lang in NO_SPACE_LANGS else " ").join(sentences)


def tokens(text: str, lang: str) -> list[str]:
    """Words, or characters for languages written without spaces (the units of shingles)."""
    if lang in NO_SPACE_LANGS:
        return [c for c in text if not c.isspace()]
    return text.split()


def shingles(text: str, lang: str, n: int = 5) -> set[tuple[str, ...]]:
    """Word (or character, for zh/ja) n-grams of lower-cased text: how near-dedup compares."""
    toks = tokens(text.lower(), lang)
    if len(toks) < n:
        return {tuple(toks)} if toks else set()
    return {tuple(toks[i : i + n]) for i in range(len(toks) - n + 1)}


def jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


def paragraphs_of(
    sentences: list[str], lang: str, rng: random.Random, used: set[str]
) -> list[str]:
    """Group consecutive sentences into paragraph lines of 1-3 sentences.

    A paragraph already used on another page of the language is merged with its neighbour, so
    articles share no paragraph by accident (only the planted duplicates repeat exactly).
    """
    groups, i = [], 0
    while i < len(sentences):
        k = rng.choice((1, 2, 2, 3))
        groups.append(list(sentences[i : i + k]))
        i += k
    merged = True
    while merged and len(groups) > 1:
        merged = False
        for j, group in enumerate(groups):
            if join_sentences(group, lang) in used:
                other = j + 1 if j + 1 < len(groups) else j - 1
                lo, hi = sorted((j, other))
                groups[lo:hi + 1] = [groups[lo] + groups[hi]]
                merged = True
                break
    paragraphs = [join_sentences(g, lang) for g in groups]
    used.update(paragraphs)
    return paragraphs


def slugify(text: str, fallback: str) -> str:
    words = re.findall(r"[a-z0-9]+", text.lower())
    ascii_ok = sum(len(w) for w in words) >= len(text) // 3
    return "-".join(words[:8]) if words and ascii_ok else fallback


def crawl_date(rng: random.Random) -> str:
    moment = CRAWL_START + dt.timedelta(seconds=rng.randrange(CRAWL_SECONDS))
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def published_date(rng: random.Random) -> str:
    day = dt.date(2023, 1, 1) + dt.timedelta(days=rng.randrange(500))
    return day.isoformat()


def site_lines(template: dict, site: list[str], style: int) -> tuple[list[str], list[str]]:
    """The header and footer lines a site repeats on every page (what dedup must remove)."""
    _host, name, _section = site
    menu = template["menu"]
    header = [template["skip"]]
    header += menu if style == 0 else [" | ".join(menu)]
    header.append(template["search"])
    footer = [
        template["newsletter"],
        template["cookie"],
        template["rights"].format(year=2024, name=name),
        template["links"],
    ]
    return header, footer


def build_page_lines(
    template: dict, site: list[str], style: int, title: str, headlines: list[str],
    content: list[str], related: list[str], rng: random.Random,
) -> list[str]:
    header, footer = site_lines(template, site, style)
    lines = [f"{title} | {site[1]}", *header]
    for h in headlines[:1]:
        lines.append(h)
    lines.append(template["published"].format(date=published_date(rng)))
    lines += content
    lines.append(template["share"])
    lines.append(template["related"])
    lines += related
    lines.append(template["comments"].format(n=rng.randrange(0, 60)))
    lines += footer
    return lines


def choose_sentences(
    blocks: list[Block], block_ids: list[int], lang: str, previous: list[set[str]],
    rng: random.Random,
) -> list[list[str]]:
    """Pick a subset of each block's sentences, keeping pages of a language distinct.

    Of `MAX_JACCARD_TRIES` candidates the one least similar (sentence-set Jaccard) to the
    pages already made is kept, so only the planted near-copies are near-duplicates.
    """
    low, high = SENTENCES_PER_STORY.get(lang, (5, 7))
    best, best_score = None, 2.0
    for _ in range(MAX_JACCARD_TRIES):
        stories = []
        for b in block_ids:
            sents = blocks[b].sentences
            k = min(len(sents), rng.randint(low, high))
            keep = sorted(rng.sample(range(len(sents)), k))
            stories.append([sents[i] for i in keep])
        chosen = {s for story in stories for s in story}
        score = max((jaccard(chosen, p) for p in previous), default=0.0)
        if score < best_score:
            best, best_score = stories, score
        if score <= 0.45:
            break
    assert best is not None
    return best


def story_blocks(i: int, n_stories: int, n_blocks: int) -> list[int]:
    """Blocks of page i: round-robin, and a second story that pairs differently each round."""
    first = i % n_blocks
    ids = [first]
    for s in range(1, n_stories):
        step = s * (1 + (i // n_blocks) % (n_blocks - 1))
        ids.append((first + step) % n_blocks)
    return ids


def compose_articles(
    bundle: Bundle, lang: str, rng: random.Random
) -> tuple[list[Page], list[int]]:
    """The language's article pages, and the indices of those chosen as near-copy sources.

    A near-copy source is written as one long paragraph per story: one edited word then
    changes few of its n-grams, so the copy stays above a 0.8 Jaccard threshold.
    """
    blocks = bundle.blocks[lang]
    template = bundle.sites[lang]
    sites = template["sites"]
    n_stories = STORIES_PER_PAGE.get(lang, 1)
    n_pages = ARTICLE_PAGES[lang]
    sources = sorted(rng.sample(range(n_pages), NEAR_DUPLICATES.get(lang, 0)))
    pages: list[Page] = []
    previous: list[set[str]] = []
    used: set[str] = set()
    for i in range(n_pages):
        site_index = i % len(sites)
        site = sites[site_index]
        block_ids = story_blocks(i, n_stories, len(blocks))
        stories = choose_sentences(blocks, block_ids, lang, previous, rng)
        previous.append({s for story in stories for s in story})
        if i in sources:
            content = [join_sentences(story, lang) for story in stories]
            used.update(content)
        else:
            content = [p for story in stories for p in paragraphs_of(story, lang, rng, used)]
        headlines = [blocks[b].headline for b in block_ids]
        others = [blk.headline for j, blk in enumerate(blocks) if j not in block_ids]
        related = rng.sample(others, min(3, len(others)))
        slug = slugify(headlines[0], f"article-{i:04d}")
        url = f"https://{site[0]}/{site[2]}/{2023 + i % 2}/{1 + i % 12:02d}/{slug}-{i}"
        lines = build_page_lines(
            template, site, site_index % 2, headlines[0], headlines, content, related, rng
        )
        pages.append(
            Page(url=url, date=crawl_date(rng), lang=lang, kind="article", site=site[0],
                 lines=lines, content=content)
        )
    return pages, sources


SENTENCE_END = ".!?;:,…。！？।"


def perturb_paragraph(paragraph: str, lang: str, rng: random.Random, vocabulary: list[str]) -> str:
    """Change two words (characters for zh/ja): one near the start, one near the end.

    Edits at the edges change few n-grams (the copy stays a near-duplicate for MinHash) while the
    paragraph no longer matches exactly (so paragraph dedup keeps both copies).
    """
    units = list(paragraph) if lang in NO_SPACE_LANGS else paragraph.split(" ")
    end = ""
    while units and all(c in SENTENCE_END for c in units[-1]):
        end = units.pop() + end
    if units and lang not in NO_SPACE_LANGS:
        word = units[-1]
        stripped = word.rstrip(SENTENCE_END)
        end = word[len(stripped):] + end
        units[-1] = stripped
    if len(units) < 6:
        return paragraph + ("" if lang in NO_SPACE_LANGS else " ") + rng.choice(vocabulary)
    if rng.random() < 0.5:  # the start: drop the first unit, or replace it
        units = units[1:]
    else:
        units[0] = rng.choice([v for v in vocabulary if v != units[0]])
    if rng.random() < 0.5:  # the end: drop the last unit, or replace it
        units = units[:-1]
    else:
        units[-1] = rng.choice([v for v in vocabulary if v != units[-1]])
    return ("" if lang in NO_SPACE_LANGS else " ").join(units) + end


def language_vocabulary(bundle: Bundle, lang: str) -> list[str]:
    text = " ".join(s for b in bundle.blocks[lang] for s in b.sentences)
    if lang in NO_SPACE_LANGS:
        return sorted({c for c in text if c.isalpha()})
    return sorted({w.strip(".,;:!?\"'()«»") for w in text.split() if w.isalpha() and len(w) > 3})


def compose_near_duplicates(
    bundle: Bundle, lang: str, sources: list[Page], rng: random.Random
) -> list[Page]:
    template = bundle.sites[lang]
    sites = template["sites"]
    vocabulary = language_vocabulary(bundle, lang)
    out = []
    for k, source in enumerate(sources):
        site_index = next(j for j, s in enumerate(sites) if s[0] != source.site) if k % 2 == 0 \
            else next(j for j, s in enumerate(sites) if s[0] == source.site)
        site = sites[site_index]
        content = [perturb_paragraph(p, lang, rng, vocabulary) for p in source.content]
        title = source.lines[0].rsplit(" | ", 1)[0]
        blocks = bundle.blocks[lang]
        related = rng.sample([b.headline for b in blocks], 3)
        lines = build_page_lines(
            template, site, site_index % 2, title, [title], content, related, rng
        )
        suffix = "amp" if site[0] == source.site else "syndication"
        url = f"https://{site[0]}/{site[2]}/{suffix}/{k}/{source.url.rsplit('/', 1)[-1]}"
        out.append(
            Page(url=url, date=crawl_date(rng), lang=lang, kind="near_duplicate", site=site[0],
                 lines=lines, content=content, source_url=source.url)
        )
    return out


def syndicate(articles: list[Page], lang: str, protected: set[str], rng: random.Random) -> None:
    """Copy a paragraph of one article verbatim onto two pages of other sites (in place)."""
    for _ in range(SYNDICATED_PARAGRAPHS.get(lang, 0)):
        candidates = [p for p in articles if p.url not in protected and len(p.content) >= 2]
        source = rng.choice(candidates)
        paragraph = max(source.content, key=len)
        targets = [p for p in candidates if p.site != source.site and p is not source]
        for target in rng.sample(targets, 2):
            at = target.lines.index(target.content[-1]) + 1
            target.lines.insert(at, paragraph)
            target.content.append(paragraph)
            target.syndicated.append(paragraph)
        protected.add(source.url)


def compose_short_pages(bundle: Bundle, rng: random.Random) -> list[Page]:
    """Error and login pages without site chrome: under 300 characters, dropped as too short."""
    out = []
    for lang in ARTICLE_PAGES:
        template = bundle.sites[lang]
        for n, (title, body) in enumerate(template.get("short", [])):
            site = template["sites"][n % len(template["sites"])]
            lines = [title, *body]
            out.append(
                Page(url=f"https://{site[0]}/{['missing', 'login', 'moved'][n % 3]}/{n}",
                     date=crawl_date(rng), lang=lang, kind="short", site=site[0], lines=lines)
            )
    return out


def compose_word_salad(bundle: Bundle, rng: random.Random) -> list[Page]:
    """Scraped-and-shuffled text (SEO filler): real words in a random order."""
    out = []
    for lang, count in WORD_SALAD_PAGES.items():
        template = bundle.sites[lang]
        sentences = [s for b in bundle.blocks[lang] for s in b.sentences]
        for n in range(count):
            words = " ".join(rng.sample(sentences, 8)).split()
            rng.shuffle(words)
            content = [" ".join(words[i : i + 18]) for i in range(0, len(words), 18)]
            host = f"www.{['best', 'top', 'mega', 'info'][n % 4]}-{lang}-{n}-portal.example"
            lines = [" ".join(words[:6]), *content, template["cookie"]]
            out.append(
                Page(url=f"http://{host}/index.php?id={rng.randrange(10**6)}",
                     date=crawl_date(rng), lang=lang, kind="word_salad", site=host,
                     lines=lines, content=content)
            )
    return out


def compose_keyword_spam(bundle: Bundle, rng: random.Random) -> list[Page]:
    out = []
    for lang, count in KEYWORD_SPAM_PAGES.items():
        keywords = bundle.sites[lang]["spam"]
        for n in range(count):
            content = [
                " ".join(rng.choice(keywords) for _ in range(rng.randint(8, 14))) for _ in range(9)
            ]
            host = f"www.{lang}-deals-{n}.example"
            lines = [" ".join(rng.sample(keywords, 4)), *content]
            out.append(
                Page(url=f"http://{host}/{'-'.join(rng.sample(keywords, 2)).replace(' ', '-')}",
                     date=crawl_date(rng), lang=lang, kind="keyword_spam", site=host,
                     lines=lines, content=content)
            )
    return out


def compose_tables(rng: random.Random) -> list[Page]:
    """Timetables and price lists: mostly digits and codes (language ID is unsure)."""
    out = []
    for n in range(TABLE_PAGES):
        if n % 2 == 0:
            title = f"L{40 + n} | 06:00-23:00"
            rows = []
            for stop in range(14):
                start = 6 * 60 + stop * 3 + n
                times = " ".join(f"{(start + 30 * j) // 60:02d}:{(start + 30 * j) % 60:02d}"
                                 for j in range(8))
                code = "".join(rng.choice("BCDFGHKLMNPRSTVZ") for _ in range(3))
                rows.append(f"{stop + 1:02d} {code} {times}")
        else:
            title = f"SKU / EUR / {2024 - n}"
            rows = [
                f"{rng.randrange(10**5, 10**6)} "
                f"{''.join(rng.choice('ABCDEFGHKLMNPRSTXZ') for _ in range(3))}-"
                f"{rng.randrange(10, 99)} {rng.randrange(1, 500)},{rng.randrange(0, 99):02d} "
                f"{rng.randrange(1, 50)} x {rng.randrange(1, 20)}"
                for _ in range(22)
            ]
        host = f"data{n}.tables.example"
        out.append(
            Page(url=f"https://{host}/t/{n}.csv.html", date=crawl_date(rng), lang="und",
                 kind="table", site=host, lines=[title, *rows], content=rows)
        )
    return out


def compose_mixed(bundle: Bundle, rng: random.Random) -> list[Page]:
    out = []
    for n, (a, b) in enumerate(MIXED_PAGES):
        block_a = bundle.blocks[a][(5 + n) % len(bundle.blocks[a])]
        block_b = bundle.blocks[b][(5 + n) % len(bundle.blocks[b])]
        content = []
        for i in range(0, 6, 2):
            content.append(join_sentences(list(block_a.sentences[i : i + 2]), a))
            content.append(join_sentences(list(block_b.sentences[i : i + 2]), b))
        host = f"www.{a}-{b}-exchange.example"
        out.append(
            Page(url=f"https://{host}/{a}-{b}/{n}", date=crawl_date(rng), lang=f"{a}+{b}",
                 kind="mixed", site=host, lines=[f"{block_a.headline} / {block_b.headline}",
                                                  *content], content=content)
        )
    return out


def compose_pages(bundle: Bundle, seed: int = 0) -> list[Page]:
    """All demo pages, in WET order (shuffled: languages and sites interleave like a crawl)."""
    rng = random.Random(seed)
    pages: list[Page] = []
    for lang in ARTICLE_PAGES:
        articles, source_ids = compose_articles(bundle, lang, rng)
        near = compose_near_duplicates(bundle, lang, [articles[i] for i in source_ids], rng)
        protected = {p.source_url for p in near if p.source_url}
        syndicate(articles, lang, protected, rng)
        pages += articles + near
    pages += compose_short_pages(bundle, rng)
    pages += compose_word_salad(bundle, rng)
    pages += compose_keyword_spam(bundle, rng)
    pages += compose_tables(rng)
    pages += compose_mixed(bundle, rng)
    rng.shuffle(pages)
    return pages


# -- WET records -----------------------------------------------------------------------------


def warcinfo_record(filename: str, layout: str, rng: random.Random) -> bytes:
    date = CRAWL_START.strftime("%Y-%m-%dT%H:%M:%SZ")
    fields = [
        ("Software-Info", "cc100 pipeline.demo (synthetic WET for the offline demo)"),
        ("Extracted-Date", CRAWL_START.strftime("%a, %d %b %Y %H:%M:%S GMT")),
        ("robots", "checked via crawler-commons (synthetic)"),
        ("isPartOf", CRAWL),
        ("operator", "cc100 demo"),
        ("description", "Synthetic multilingual pages written for the cc100 repository"),
        ("publisher", "cc100"),
    ]
    return wet.warcinfo_record(filename, date, wet.record_id(rng), fields, layout)


def conversion_record(page: Page, layout: str, rng: random.Random) -> bytes:
    record, refers_to = wet.record_id(rng), wet.record_id(rng)
    languages = [ISO639_3[x] for x in page.lang.split("+") if x in ISO639_3]
    return wet.conversion_record(page.url, page.date, record, refers_to, page.text, layout, languages)


def wet_bytes(filename: str, layout: str, pages: list[Page], rng: random.Random) -> bytes:
    """The warcinfo record, then one conversion record per page (pipeline/writers/wet.py)."""
    records = [warcinfo_record(filename, layout, rng)] + [conversion_record(p, layout, rng) for p in pages]
    return wet.wet_bytes(records)


# -- the whole demo input --------------------------------------------------------------------


@dataclass
class Summary:
    output: str
    wet_files: dict[str, int]  # name -> bytes
    records: int
    by_language: dict[str, int]
    by_kind: dict[str, int]
    reference: dict[str, int]  # lang -> sentences


def truth_entries(split: list[tuple[str, list[Page]]]) -> list[dict]:
    entries = []
    for filename, pages in split:
        for index, page in enumerate(pages):
            entries.append({
                "file": filename,
                "conversion_index": index,  # 0-based, among the file's conversion records
                "url": page.url,
                "lang": page.lang,
                "kind": page.kind,
                "site": page.site,
                "chars": len(page.text) - 1,
                "source_url": page.source_url,
                "syndicated_paragraphs": page.syndicated,
            })
    return entries


def write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, data)


def generate(output: Path, seed: int = 0) -> Summary:
    """Write DIR/wet/*.warc.wet.gz, DIR/reference/*.txt and DIR/truth.json (same bytes per seed)."""
    bundle = load_bundle()
    pages = compose_pages(bundle, seed)
    half = (len(pages) + 1) // 2
    split = [(WET_FILES[0], pages[:half]), (WET_FILES[1], pages[half:])]
    rng = random.Random(f"records-{seed}")
    sizes = {}
    for (filename, part), layout in zip(split, LAYOUTS):
        data = wet_bytes(filename, layout, part, rng)
        write_atomic(output / DEMO_WET_DIR / filename, data)
        sizes[filename] = len(data)
    for lang, sentences in bundle.reference.items():
        write_atomic(output / DEMO_REFERENCE_DIR / f"{lang}.txt", ("\n".join(sentences) + "\n").encode())
    summary = Summary(
        output=str(output),
        wet_files=sizes,
        records=len(pages),
        by_language=dict(sorted(Counter(p.lang for p in pages).items())),
        by_kind=dict(sorted(Counter(p.kind for p in pages).items())),
        reference={lang: len(s) for lang, s in bundle.reference.items()},
    )
    counts = {k: v for k, v in asdict(summary).items() if k != "output"}  # same bytes anywhere
    truth = {"seed": seed, "crawl": CRAWL, "layouts": dict(zip(WET_FILES, LAYOUTS)),
             "summary": counts, "pages": truth_entries(split)}
    write_atomic(output / DEMO_TRUTH,
                 (json.dumps(truth, ensure_ascii=False, indent=1) + "\n").encode("utf-8"))
    return summary


def format_summary(s: Summary) -> str:
    lines = [f"demo input written to {s.output}/"]
    for name, size in s.wet_files.items():
        lines.append(f"  wet/{name:<26} {size / 1024:8.1f} KiB")
    lines.append(f"  {s.records} conversion records")
    lines.append("  by language: " + ", ".join(f"{k} {v}" for k, v in s.by_language.items()))
    lines.append("  by kind:     " + ", ".join(f"{k} {v}" for k, v in s.by_kind.items()))
    lines.append(
        f"  reference/{{lang}}.txt for {len(s.reference)} languages: "
        + ", ".join(f"{k} {v}" for k, v in s.reference.items())
    )
    lines.append("  truth.json: kind, language and near-copy source of every record")
    return "\n".join(lines)


# -- the summary at the end of `make demo` ------------------------------------------------

# Where `make demo` puts each stage's output under its DEMO directory.
DEMO_LAYOUT = (
    ("input", "input/wet", "WET files + reference text (python -m pipeline.demo)"),
    ("lm", "lm", "SentencePiece + KenLM scoring models (cc100 lm)"),
    ("corpus", "corpus", "per-language Parquet + dataset card (cc100 corpus)"),
    ("report", f"corpus/{META_DIR}/{REPORT_DIR}/{REPORT_INDEX}", "corpus report (cc100 report)"),
    ("vocab", f"vocab/{VOCAB_MODEL}", "SentencePiece vocabulary (cc100 vocab)"),
    ("shards", f"shards/{SHARDS_MANIFEST}", "token shards (cc100 tokenize)"),
    ("run", f"run/{TRAINING_LOG}", f"pretraining log + {CHECKPOINT} (cc100 pretrain)"),
    ("hf", f"run/{RUN_EXPORT_DIR}", "Hugging Face XLMRobertaForMaskedLM export"),
)


def _json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _details(name: str, path: Path) -> str:
    """One short fact per artifact, read from the files each stage writes."""
    root = path.parent if name in ("corpus", "input") else path
    if name == "input":
        truth = _json(root / DEMO_TRUTH).get("summary", {})
        return f"{truth.get('records', '?')} pages in {len(list(path.glob('*.warc.wet.gz')))} files"
    if name == "lm":
        return f"{len(lm_languages(path))} languages"
    if name == "corpus":
        stats = _json(Path(find_meta(path, STATS_FILE) or meta_path(path, STATS_FILE)))
        docs = stats.get("counters", {}).get("documents_out", "?")
        langs = sorted({k.split("/")[0] for k in stats.get("partitions", {})})
        return f"{docs} documents, {len(langs)} languages ({', '.join(langs)})"
    if name == "run":
        losses = []
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                losses.append(json.loads(line)["loss"])
            except (ValueError, KeyError, TypeError):
                continue
        return f"loss {losses[0]:.2f} -> {losses[-1]:.2f} over {len(losses)} log lines" if losses else ""
    return ""


def summarize(demo_dir: Path) -> tuple[str, bool]:
    """(text, complete): where every artifact of `make demo` is, and whether all exist."""
    lines = [f"cc100 demo: everything is under {demo_dir}/"]
    complete = True
    for name, relative, what in DEMO_LAYOUT:
        path = demo_dir / relative
        if path.exists():
            shown = str(path.parent if name in ("input", "corpus") and path.is_file() else path)
            lines.append(f"  {what:<52} {shown}  {_details(name, path)}".rstrip())
        else:
            complete = False
            lines.append(f"  {what:<52} MISSING: {path}")
    if complete:
        report = demo_dir / dict((n, r) for n, r, _ in DEMO_LAYOUT)["report"]
        lines.append(f"  open {report} in a browser for the corpus report")
    return "\n".join(lines), complete


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m pipeline.demo",
        description="Write the bundled offline demo input (two WET files and reference text), "
        "or summarise a finished `make demo` directory.",
    )
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--output", type=Path, help="directory to write the demo input into")
    what.add_argument("--summary", type=Path, metavar="DEMO_DIR",
                      help="print where every artifact of `make demo` is (exit 1 if one is missing)")
    p.add_argument("--seed", type=int, default=0, help="composition seed (default 0)")
    args = p.parse_args(argv)
    if args.summary is not None:
        text, complete = summarize(args.summary)
        print(text)
        return 0 if complete else 1
    try:
        claim(args.output, "demo-input")  # so that `make demo` and `make clean` may replace it
        summary = generate(args.output, args.seed)
    except OwnershipError as e:
        print(f"demo: --output {e}", file=sys.stderr)
        return 2
    except DemoDataError as e:
        print(f"demo: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"demo: cannot write under {args.output}: {e.strerror or e}", file=sys.stderr)
        return 1
    print(format_summary(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
