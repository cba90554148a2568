"""The dataset card: OUTPUT/README.md, as the Hugging Face Hub and `datasets` read it.

`cc100 corpus` writes it from the run's stats.json (just before stats.json itself). Its YAML
header has one `configs:` entry per language (`en`) and per language and bucket (`en_head`),
plus `default` (everything), so `datasets.load_dataset(OUTPUT, "en_head")` works offline, the
features (OUTPUT_SCHEMA, described by COLUMN_DOCS), size category, languages and licence;
the text says where the data comes from (Common Crawl's terms of use, the snapshot(s), the
pipeline version and config), how it was filtered, and the counts per language and bucket.
"""

from __future__ import annotations

import json
import re
from importlib import metadata as importlib_metadata

import pyarrow as pa

from pipeline.contracts import CUTOFFS_FILE, FILES_REPORT, META_DIR, PART_GLOB, STATS_FILE, partition_glob
from pipeline.schema import COLUMN_DOCS, OUTPUT_SCHEMA

TEMPLATE = "card.md.j2"
SNAPSHOT_RE = re.compile(r"CC-MAIN-\d{4}-\d{2}")
TERMS_OF_USE = "https://commoncrawl.org/terms-of-use"
# The Hub's size categories: (upper bound, name), the first bound above the count wins.
SIZE_CATEGORIES = (
    (1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
    (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M"), (1_000_000_000, "100M<n<1B"),
    (10_000_000_000, "1B<n<10B"), (100_000_000_000, "10B<n<100B"), (1_000_000_000_000, "100B<n<1T"),
)
BUCKET_ORDER = ("head", "middle", "tail", "all")
# The config values the card's "How it was filtered" shows ("?" where a run did not record one).
FILTER_DEFAULTS = {"min_len": "?", "dedup": "?", "near_dedup": False, "near_dedup_threshold": "?",
                   "lid": "doc", "lang_threshold": "?", "langs": []}


def size_category(n: int) -> str:
    return next((name for bound, name in SIZE_CATEGORIES if n < bound), "n>1T")


def feature_type(dtype: pa.DataType) -> str | dict:
    """An Arrow type as the card's `dataset_info.features` spells it (datasets' YAML form)."""
    if pa.types.is_list(dtype):
        return {"list": feature_type(dtype.value_type)}
    if pa.types.is_timestamp(dtype):
        return f"timestamp[{dtype.unit}, tz={dtype.tz}]" if dtype.tz else f"timestamp[{dtype.unit}]"
    return {"float": "float32", "double": "float64"}.get(str(dtype), str(dtype))


def features() -> list[dict]:
    return [{"name": f.name, "type": feature_type(f.type), "doc": COLUMN_DOCS[f.name]} for f in OUTPUT_SCHEMA]


def _bucket_rank(bucket: str) -> tuple[int, str]:
    return (BUCKET_ORDER.index(bucket) if bucket in BUCKET_ORDER else len(BUCKET_ORDER), bucket)


def partitions(stats: dict) -> dict[str, dict[str, dict]]:
    """{language: {bucket: {documents, files, bytes}}} from stats["partitions"], sorted."""
    out: dict[str, dict[str, dict]] = {}
    for key, entry in sorted((stats.get("partitions") or {}).items()):
        language, _, bucket = key.partition("/")
        out.setdefault(language, {})[bucket] = entry
    return {lang: dict(sorted(b.items(), key=lambda kv: _bucket_rank(kv[0]))) for lang, b in out.items()}


def configs(parts: dict[str, dict[str, dict]]) -> list[dict]:
    """`default` (every file), then per language and per language/bucket; one split, train."""
    out = [{"name": "default", "path": PART_GLOB}]
    for language, buckets in parts.items():
        out.append({"name": language, "path": partition_glob(language)})
        out += [{"name": f"{language}_{bucket}", "path": partition_glob(language, bucket)} for bucket in buckets]
    return out


def snapshots(stats: dict) -> list[str]:
    """The Common Crawl snapshots the inputs came from (--snapshot, or CC-MAIN-... in paths)."""
    inputs = stats.get("inputs") or {}
    found = set(SNAPSHOT_RE.findall(" ".join(map(str, [inputs.get("snapshot") or "", *inputs.get("files", [])]))))
    return sorted(found)


def pipeline_version() -> str:
    try:
        return importlib_metadata.version("cc100")
    except importlib_metadata.PackageNotFoundError:
        return "unknown"


def yaml_string(value: str) -> str:
    """A YAML scalar that is always a plain string (JSON strings are valid YAML)."""
    return json.dumps(value, ensure_ascii=False)


def card_context(stats: dict) -> dict:
    parts = partitions(stats)
    documents = sum(e["documents"] for buckets in parts.values() for e in buckets.values())
    config = stats.get("config") or {}
    languages = [lang for lang in parts if lang != "und"]
    return {
        "title": f"cc100 corpus ({', '.join(snapshots(stats)) or 'local WET files'})",
        "languages": languages,
        "multilinguality": "multilingual" if len(languages) > 1 else "monolingual",
        "size_category": size_category(documents),
        "documents": documents,
        "bytes": sum(e["bytes"] for buckets in parts.values() for e in buckets.values()),
        "configs": configs(parts),
        "features": features(),
        "partitions": parts,
        "buckets": sorted({b for buckets in parts.values() for b in buckets}, key=_bucket_rank),
        "snapshots": snapshots(stats),
        "snapshot": (stats.get("inputs") or {}).get("snapshot"),
        "segments": (stats.get("inputs") or {}).get("segments"),
        "input_files": len((stats.get("inputs") or {}).get("files") or []),
        "started": stats.get("started"),
        "version": pipeline_version(),
        "config": {key: config.get(key, default) for key, default in FILTER_DEFAULTS.items()},
        "config_json": json.dumps(config, indent=2, ensure_ascii=False, sort_keys=True),
        "counters": stats.get("counters") or {},
        "terms_of_use": TERMS_OF_USE,
        "meta_dir": META_DIR, "stats_file": STATS_FILE, "files_report": FILES_REPORT,
        "cutoffs_file": CUTOFFS_FILE, "part_glob": PART_GLOB,
    }


def render_card(stats: dict) -> str:
    from pipeline.writers.templates import environment

    return environment().get_template(TEMPLATE).render(**card_context(stats), yaml_string=yaml_string)
