"""Input globs, writing Documents as Parquet (`WriteByLanguage`), and the output directory
protocol: write into a staging directory, commit by rename. (Reading segments into Documents,
with spools for resume, is pipeline/segments.py.)

All file access goes through `apache_beam.io.filesystems.FileSystems`, so the same code reads
and writes gs:// on Dataflow. Output layout (fixed for the later stages):

    OUTPUT/{language}/{bucket}/part-{shard:05d}-of-{n:05d}.parquet   PARQUET_SCHEMA, zstd
    OUTPUT/stats.json    counters, config, inputs (written last: marks a finished run)
    OUTPUT/files.jsonl   one line per input file (segment): records, documents, problems, source
    OUTPUT/cutoffs.csv   the perplexity cutoffs used (cc_net format, reusable with --cutoffs)

Documents without a language (before language identification) go to `und/`, without a perplexity
bucket to `all/`. Each partition is split into ceil(documents / docs_per_file) files by a stable
hash of the document key, and rows are sorted by (cc_segment, record_offset) inside each file,
so the output is the same whatever the runner's parallelism.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import shutil
import uuid
import zlib
from collections.abc import Sequence

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics

from pipeline.batch import BatchDocuments
from pipeline.leftovers import staging_path
from pipeline.schema import PARQUET_SCHEMA, Document, documents_from_bytes, documents_to_bytes

NAMESPACE = "cc100"
LOG = logging.getLogger("cc100.corpus")
UNDEFINED_LANGUAGE = "und"  # ISO 639-2 "undetermined": documents before language identification
ALL_BUCKETS = "all"  # documents without a perplexity bucket
STATS_FILE = "stats.json"
FILES_REPORT = "files.jsonl"
PARQUET_METADATA_KEY = b"cc100"
WRITE_COUNTER_PREFIX = "documents_to_write:"  # + "{language}:{bucket}", see write_counter
_SAFE_NAME_RE = re.compile(r"[^A-Za-z0-9_.-]")


class CorpusIOError(Exception):
    """A problem with --input or --output found before the pipeline starts (message is for users)."""


# -- inputs -----------------------------------------------------------------------------------


def _is_local(path: str) -> bool:
    return "://" not in path


def match_inputs(patterns: Sequence[str]) -> list[str]:
    """Every file matched by the globs, sorted and de-duplicated; each glob must match a file."""
    files: set[str] = set()
    for pattern in patterns:
        try:
            result = FileSystems.match([pattern])[0]
        except Exception as e:  # noqa: BLE001 - filesystems raise many types; name the glob
            raise CorpusIOError(f"--input {pattern!r}: cannot list files ({e})") from None
        matched = [
            m.path
            for m in result.metadata_list
            if not (_is_local(m.path) and os.path.isdir(m.path))
        ]
        if not matched and _is_local(pattern) and os.path.isdir(pattern):
            raise CorpusIOError(f"--input {pattern!r} is a directory; give a glob such as '{pattern.rstrip('/')}/*.warc.wet.gz'")
        if not matched:
            raise CorpusIOError(f"--input {pattern!r} matches no files")
        files.update(matched)
    return sorted(files)


# -- WriteByLanguage --------------------------------------------------------------------------


def partition_of(doc: Document) -> tuple[str, str]:
    """(language, bucket) directory names of a document; safe as path components.

    Language identification drops labels that are not language codes; this is the second
    line: no name can be "." or ".." or hidden, or hold a separator.
    """
    return _path_part(doc.language, UNDEFINED_LANGUAGE), _path_part(doc.bucket, ALL_BUCKETS)


def _path_part(name: str | None, default: str) -> str:
    part = _SAFE_NAME_RE.sub("_", name or "") or default
    return "_" + part if part.startswith(".") else part


def shard_of(doc: Document, n_shards: int) -> int:
    """Stable (process-independent) shard of a document: crc32 of its key."""
    key = f"{doc.cc_segment}\0{doc.record_offset}".encode("utf-8", "surrogatepass")
    return zlib.crc32(key) % n_shards


def n_files(n_docs: int, docs_per_file: int) -> int:
    return max(1, math.ceil(n_docs / docs_per_file))


def part_path(root: str, language: str, bucket: str, shard: int, n: int) -> str:
    return FileSystems.join(root, language, bucket, f"part-{shard:05d}-of-{n:05d}.parquet")


def parquet_schema(metadata: dict | None) -> pa.Schema:
    """PARQUET_SCHEMA carrying the run's config (JSON under the key "cc100") in the footer."""
    if not metadata:
        return PARQUET_SCHEMA
    return PARQUET_SCHEMA.with_metadata({PARQUET_METADATA_KEY: json.dumps(metadata, sort_keys=True)})


def write_parquet(path: str, docs: Sequence[Document], schema: pa.Schema) -> int:
    """Documents sorted by (cc_segment, record_offset) -> one zstd Parquet file; returns rows."""
    rows = [d.to_row() for d in sorted(docs, key=lambda d: (d.cc_segment, d.record_offset))]
    table = pa.Table.from_pylist(rows, schema=schema)
    with FileSystems.create(path) as f:
        pq.write_table(table, f, compression="zstd")
    return len(rows)


class _WritePartFn(beam.DoFn):
    def __init__(self, root: str, metadata: dict | None):
        self.root = root
        self.metadata = metadata

    def setup(self):
        self.schema = parquet_schema(self.metadata)
        self.docs_out = Metrics.counter(NAMESPACE, "documents_out")
        self.files_out = Metrics.counter(NAMESPACE, "parquet_files_written")

    def process(self, element):
        (language, bucket, shard, n), batches = element
        path = part_path(self.root, language, bucket, shard, n)
        docs = [doc for batch in batches for doc in documents_from_bytes(batch)]
        rows = write_parquet(path, docs, self.schema)
        self.docs_out.inc(rows)
        self.files_out.inc()
        LOG.info("wrote %s (%d documents)", path, rows)
        yield {"path": path, "language": language, "bucket": bucket, "documents": rows}


def write_counter(language: str, bucket: str) -> str:
    """Name of the counter of documents entering WriteByLanguage for one partition (checked
    against the Parquet rows of {language}/{bucket}/ before the commit)."""
    return f"{WRITE_COUNTER_PREFIX}{language}:{bucket}"


def _by_partition(batch: list[Document]):
    """A batch of documents -> ((language, bucket), (count, documents as bytes)) per partition."""
    parts: dict[tuple[str, str], list[Document]] = {}
    for doc in batch:
        parts.setdefault(partition_of(doc), []).append(doc)
    for partition, docs in parts.items():
        Metrics.counter(NAMESPACE, write_counter(*partition)).inc(len(docs))
        yield partition, (len(docs), documents_to_bytes(docs))


def _by_file(part, counts, docs_per_file):
    """((language, bucket), (count, documents)) -> ((language, bucket, shard, n), documents) per
    file (documents as bytes; passed on as they are when the partition has one file)."""
    (language, bucket), (_, data) = part
    n = n_files(counts[(language, bucket)], docs_per_file)
    if n == 1:
        yield (language, bucket, 0, 1), data
        return
    files: dict[int, list[Document]] = {}
    for doc in documents_from_bytes(data):
        files.setdefault(shard_of(doc, n), []).append(doc)
    for shard, members in files.items():
        yield (language, bucket, shard, n), documents_to_bytes(members)


class WriteByLanguage(beam.PTransform):
    """Documents -> root/{language}/{bucket}/part-*.parquet (see the module docstring).

    Documents travel in batches (one element per partition of a `BatchDocuments` batch, not
    one per document) through the count and the grouping by file. A worker holds one output
    file's documents (at most about `docs_per_file`) while sorting them. Returns a PCollection
    of {path, language, bucket, documents} per written file.
    """

    def __init__(self, root: str, metadata: dict | None = None, docs_per_file: int = 50_000):
        super().__init__()
        if docs_per_file < 1:
            raise ValueError(f"docs_per_file must be >= 1, got {docs_per_file}")
        self.root = root
        self.metadata = metadata
        self.docs_per_file = docs_per_file

    def expand(self, docs):
        parts = docs | "Batch" >> BatchDocuments() | "SplitByPartition" >> beam.FlatMap(_by_partition)
        counts = (
            parts
            | "PartitionSizes" >> beam.MapTuple(lambda partition, value: (partition, value[0]))
            | "CountPerPartition" >> beam.CombinePerKey(sum)
        )
        return (
            parts
            | "SplitByFile"
            >> beam.FlatMap(_by_file, counts=beam.pvalue.AsDict(counts), docs_per_file=self.docs_per_file)
            | "GroupByFile" >> beam.GroupByKey()
            | "WriteParquet" >> beam.ParDo(_WritePartFn(self.root, self.metadata))
        )


# -- output directory protocol ----------------------------------------------------------------


def write_json(path: str, data) -> None:
    """JSON (indented, UTF-8) to any Beam filesystem path."""
    with FileSystems.create(path) as f:
        f.write(json.dumps(data, indent=2, ensure_ascii=False).encode("utf-8") + b"\n")


def _exists(path: str) -> bool:
    return os.path.exists(path) if _is_local(path) else FileSystems.exists(path)


def _is_nonempty_dir(path: str) -> bool:
    if _is_local(path):
        return os.path.isdir(path) and any(os.scandir(path))
    return bool(_match_all(path))


def _match_all(path: str) -> list[str]:
    """Every file under a non-local "directory" (object stores only have prefixes)."""
    try:
        return [m.path for m in FileSystems.match([FileSystems.join(path, "**")])[0].metadata_list]
    except Exception:  # noqa: BLE001 - nothing there (or nothing we can list)
        return []


def check_output(output: str, overwrite: bool) -> None:
    """Refuse an --output that holds a finished run (unless overwrite) or unrelated files."""
    if _is_local(output) and os.path.exists(output) and not os.path.isdir(output):
        raise CorpusIOError(f"--output {output}: exists and is not a directory")
    if _exists(FileSystems.join(output, STATS_FILE)):
        if not overwrite:
            raise CorpusIOError(
                f"--output {output}: already holds a finished run ({STATS_FILE}); "
                "pass --overwrite to replace it, or choose another directory"
            )
    elif _is_nonempty_dir(output):
        raise CorpusIOError(
            f"--output {output}: directory is not empty and is not a cc100 corpus output "
            f"(no {STATS_FILE}); choose an empty or new directory"
        )


def create_staging(output: str) -> str:
    """A new staging directory beside `output`, probed for writing; CorpusIOError if impossible."""
    staging = staging_path(output)  # names its owner, so a later run can remove it if killed
    probe = FileSystems.join(staging, ".write-probe")
    try:
        if _is_local(staging):
            os.makedirs(staging)
        with FileSystems.create(probe) as f:
            f.write(b"ok")
        FileSystems.delete([probe])
    except Exception as e:  # noqa: BLE001 - PermissionError, NotADirectoryError, gcs errors...
        remove_tree(staging)
        raise CorpusIOError(f"--output {output}: cannot write there ({type(e).__name__}: {e})") from None
    return staging


def remove_tree(path: str) -> None:
    """Best-effort removal of a directory tree (staging after a failure, replaced old output)."""
    try:
        if _is_local(path):
            shutil.rmtree(path, ignore_errors=True)
            return
        files = _match_all(path)  # object stores: delete every object under the prefix
        if files:
            FileSystems.delete(files)
        if FileSystems.exists(path):
            FileSystems.delete([path])
    except Exception:  # noqa: BLE001 - cleanup must never hide the real error
        LOG.warning("could not remove %s", path)


def commit_output(staging: str, output: str, overwrite: bool) -> None:
    """Move the finished staging directory to `output`.

    Local: two renames (old output aside, staging in), so readers never see a mix of runs.
    Other filesystems have no directory rename: files are renamed one by one (after deleting
    the old output when overwriting), so the switch is not atomic there.
    """
    if _is_local(output):
        old = None
        if os.path.exists(output):
            if os.path.isdir(output) and not any(os.scandir(output)):
                os.rmdir(output)
            elif overwrite:
                old = f"{output.rstrip('/')}.old-{uuid.uuid4().hex[:12]}"
                os.rename(output, old)
            else:
                raise CorpusIOError(f"--output {output}: appeared while the pipeline ran; not replaced")
        os.rename(staging, output)
        if old:
            shutil.rmtree(old, ignore_errors=True)
        return
    if overwrite:
        remove_tree(output)
    sources = _match_all(staging)
    destinations = [output.rstrip("/") + s[len(staging.rstrip("/")) :] for s in sources]
    FileSystems.rename(sources, destinations)
    remove_tree(staging)


def list_parts(root: str) -> list[dict]:
    """Every Parquet part under root/{language}/{bucket}/ with its row count (from the footer)."""
    pattern = FileSystems.join(root, "*", "*", "part-*.parquet")
    parts = []
    for m in sorted(FileSystems.match([pattern])[0].metadata_list, key=lambda m: m.path):
        with FileSystems.open(m.path, compression_type="uncompressed") as f:
            rows = pq.ParquetFile(f).metadata.num_rows
        relative = m.path[len(root.rstrip("/")) + 1 :]
        language, bucket, _ = relative.split("/", 2)
        parts.append({"path": relative, "language": language, "bucket": bucket, "documents": rows, "bytes": m.size_in_bytes})
    return parts
