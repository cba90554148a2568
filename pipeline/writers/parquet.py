"""Input globs, writing Documents as Parquet (`WriteByLanguage`), and the output directory
protocol: write into a staging directory, commit by rename. (Reading segments into Documents,
with spools for resume, is pipeline/readers/segments.py.)

All file access goes through `apache_beam.io.filesystems.FileSystems`, so the same code reads
and writes gs:// on Dataflow. Output layout (fixed for the later stages):

    OUTPUT/{language}/{bucket}/part-{shard:05d}-of-{n:05d}.parquet   OUTPUT_SCHEMA, zstd
    OUTPUT/README.md            dataset card (pipeline/writers/card.py)
    OUTPUT/.cc100/stage.json    {"stage": "corpus", "format_version": 1}: the job's own output
    OUTPUT/.cc100/stats.json    counters, config, inputs (written last: marks a finished run)
    OUTPUT/.cc100/files.jsonl   one line per input file (segment): records, documents, problems
    OUTPUT/.cc100/cutoffs.csv   the perplexity cutoffs used (cc_net format, reusable with --cutoffs)

(the names are pipeline/contracts.py's). Each file has row groups of at most ROW_GROUP_ROWS
documents and about ROW_GROUP_BYTES of text, so readers can skip and parallelise inside it.

Documents without a language (before language identification) go to `und/`, without a perplexity
bucket to `all/`. Each partition is split into ceil(documents / docs_per_file) files by a stable
hash of the document key, and rows are sorted by (cc_segment, record_offset) inside each file,
so the output is the same whatever the runner's parallelism.
"""

from __future__ import annotations

import hashlib
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
from apache_beam.io.filesystem import BeamIOError
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics

from pipeline.utils.batch import BatchDocuments
from pipeline.contracts import (
    COMPLETE_FILE,
    MARKER_FILE,
    META_DIR,
    claim_problem,
    completion_bytes,
    completion_record,
    mark_complete,
    marker_bytes,
    ownership_problem,
    PART_FILE_GLOB,
    parse_marker,
    part_name,
    remove_tree_no_follow,
    stat_digest,
    undecodable_name,
)
from pipeline.utils.leftovers import staging_path
from pipeline.schema import OUTPUT_SCHEMA, Document, documents_from_bytes, documents_to_bytes, output_table

NAMESPACE = "cc100"
LOG = logging.getLogger("cc100.corpus")
UNDEFINED_LANGUAGE = "und"  # ISO 639-2 "undetermined": documents before language identification
ALL_BUCKETS = "all"  # documents without a perplexity bucket
PARQUET_METADATA_KEY = b"cc100"
ROW_GROUP_ROWS = 10_000  # documents per Parquet row group, at most
ROW_GROUP_CHARS = 64 * 2**20  # characters of raw_content per row group (about, at most)
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
        for path in matched:
            name = undecodable_name(path)
            if name:  # it would become cc_segment, a UTF-8 string: refused before any work
                raise CorpusIOError(f"--input {pattern!r}: the file name {name} is not valid UTF-8; "
                                    "rename the file")
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
    return FileSystems.join(root, language, bucket, part_name(shard, n))


def parquet_schema(metadata: dict | None) -> pa.Schema:
    """OUTPUT_SCHEMA carrying the run's config (JSON under the key "cc100") in the footer."""
    if not metadata:
        return OUTPUT_SCHEMA
    return OUTPUT_SCHEMA.with_metadata({PARQUET_METADATA_KEY: json.dumps(metadata, sort_keys=True)})


def row_groups(docs: Sequence[Document], max_rows: int, max_chars: int) -> list[Sequence[Document]]:
    """Consecutive runs of documents, each at most max_rows long and (unless one document is
    larger alone) at most max_chars of raw_content."""
    groups, start, chars = [], 0, 0
    for i, doc in enumerate(docs):
        size = len(doc.raw_content or "")
        if i > start and (i - start >= max_rows or chars + size > max_chars):
            groups.append(docs[start:i])
            start, chars = i, 0
        chars += size
    if start < len(docs) or not groups:
        groups.append(docs[start:])
    return groups


def write_parquet(path: str, docs: Sequence[Document], schema: pa.Schema) -> tuple[int, int]:
    """Documents sorted by (cc_segment, record_offset) -> one zstd Parquet file of bounded row
    groups; returns (rows, dates that could not be parsed)."""
    ordered = sorted(docs, key=lambda d: (d.cc_segment, d.record_offset))
    bad_dates = 0
    with FileSystems.create(path) as f, pq.ParquetWriter(f, schema, compression="zstd") as writer:
        for group in row_groups(ordered, ROW_GROUP_ROWS, ROW_GROUP_CHARS):
            table, bad = output_table(group, schema)
            writer.write_table(table, row_group_size=max(1, table.num_rows))
            bad_dates += bad
    return len(ordered), bad_dates


class _WritePartFn(beam.DoFn):
    def __init__(self, root: str, metadata: dict | None):
        self.root = root
        self.metadata = metadata

    def setup(self):
        self.schema = parquet_schema(self.metadata)
        self.docs_out = Metrics.counter(NAMESPACE, "documents_out")
        self.files_out = Metrics.counter(NAMESPACE, "parquet_files_written")
        self.bad_dates = Metrics.counter(NAMESPACE, "date_download_unparsed")

    def process(self, element):
        (language, bucket, shard, n), batches = element
        path = part_path(self.root, language, bucket, shard, n)
        docs = [doc for batch in batches for doc in documents_from_bytes(batch)]
        rows, bad_dates = write_parquet(path, docs, self.schema)
        self.docs_out.inc(rows)
        if bad_dates:
            self.bad_dates.inc(bad_dates)
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
    write_text(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def write_text(path: str, text: str) -> None:
    """UTF-8 text to any Beam filesystem path."""
    with FileSystems.create(path) as f:
        f.write(text.encode("utf-8"))


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


STAGE = "corpus"  # the stage name in OUTPUT/.cc100/stage.json (pipeline/contracts.py)


def output_problem(output: str, stage: str = STAGE, replace: bool = True) -> str | None:
    """Why `stage` may not write (`replace`: or replace) `output`, on any filesystem; None: it may."""
    if _is_local(output):
        return claim_problem(output, stage, replace)
    exists = FileSystems.exists(FileSystems.join(output, META_DIR, MARKER_FILE))
    marker = read_stage_record(output, MARKER_FILE) if exists else None
    return ownership_problem(output, stage, marker, exists, exists or bool(_match_all(output)))


def check_output(output: str, overwrite: bool) -> None:
    """Refuse an --output that the corpus job did not write, or a finished run without overwrite.

    The job's own outputs carry OUTPUT/.cc100/stage.json (written into the staging directory,
    so it arrives with the rename); anything else that is not empty is never touched.
    """
    problem = output_problem(output)
    if problem:
        raise CorpusIOError(f"--output {problem}")
    if _is_nonempty_dir(output) and not overwrite:
        raise CorpusIOError(
            f"--output {output}: already holds a finished cc100 corpus run; "
            "pass --overwrite to replace it, or choose another directory"
        )


def read_stage_record(directory: str, name: str) -> dict | None:
    """`directory`'s marker (MARKER_FILE) or completion record (COMPLETE_FILE), on any Beam
    filesystem; None when there is none or it is not one."""
    path = FileSystems.join(directory, META_DIR, name)
    try:
        if not FileSystems.exists(path):
            return None
        with FileSystems.open(path, compression_type="uncompressed") as f:
            return parse_marker(f.read())
    except (OSError, BeamIOError):
        return None


def up_to_date_hooks(directory: str) -> dict:
    """contracts.skip_if_up_to_date's readers for `directory`: none for a local path (the
    defaults), Beam's FileSystems for gs:// and other object stores."""
    if _is_local(directory):
        return {}
    return {"read": lambda d: read_stage_record(d, COMPLETE_FILE),
            "marker": lambda d: read_stage_record(d, MARKER_FILE),
            "exists": lambda d: bool(_match_all(d))}


def write_completion(directory: str, stage: str, config: dict, inputs: dict) -> None:
    """contracts.mark_complete on any Beam filesystem (the directory is committed by a rename
    afterwards, so the record arrives with the output)."""
    if _is_local(directory):
        mark_complete(directory, stage, config, inputs)
        return
    with FileSystems.create(FileSystems.join(directory, META_DIR, COMPLETE_FILE)) as f:
        f.write(completion_bytes(completion_record(stage, config, inputs)))


def remote_stat_fingerprint(paths: Sequence[str]) -> str:
    """contracts.stat_fingerprint for files on any Beam filesystem: path, size, last update."""
    metas = [(path, FileSystems.match([path])[0].metadata_list[0]) for path in paths]
    return stat_digest((path, m.size_in_bytes, m.last_updated_in_seconds) for path, m in metas)


def remote_fingerprint(path: str) -> str:
    """contracts.fingerprint on an object store: a cc100 output's completion record (the chain),
    else the size and update time of the file or of every file under the prefix (not META_DIR)."""
    record = FileSystems.join(path, META_DIR, COMPLETE_FILE)
    if FileSystems.exists(record):
        with FileSystems.open(record, compression_type="uncompressed") as f:
            return "record:" + hashlib.sha256(f.read()).hexdigest()
    if FileSystems.exists(path) and FileSystems.match([path])[0].metadata_list:
        return remote_stat_fingerprint([path])
    meta = "/" + META_DIR + "/"
    files = [p for p in _match_all(path) if meta not in p]
    return remote_stat_fingerprint(files) if files else "missing"


def write_marker(directory: str, stage: str = STAGE) -> None:
    """A stage's marker, on any Beam filesystem (see pipeline/contracts.py)."""
    with FileSystems.create(FileSystems.join(directory, META_DIR, MARKER_FILE)) as f:
        f.write(marker_bytes(stage))


def create_staging(output: str) -> str:
    """A new staging directory beside `output` holding the stage marker (which doubles as the
    write probe); CorpusIOError if it cannot be written."""
    staging = staging_path(output)  # names its owner, so a later run can remove it if killed
    try:
        if _is_local(staging):
            os.makedirs(staging)
        write_marker(staging)
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
    the old output when overwriting), so the switch is not atomic there. Either way the old
    output is checked again for the stage's marker first (it may have changed during the run).
    """
    if overwrite:
        problem = output_problem(output)
        if problem:
            raise CorpusIOError(f"--output {problem}; not replaced")
    if _is_local(output):
        old = None
        if os.path.lexists(output):
            if os.path.isdir(output) and not os.path.islink(output) and not any(os.scandir(output)):
                os.rmdir(output)
            elif overwrite:
                old = f"{output.rstrip('/')}.old-{uuid.uuid4().hex[:12]}"
                os.rename(output, old)
            else:
                raise CorpusIOError(f"--output {output}: appeared while the pipeline ran; not replaced")
        os.rename(staging, output)
        if old:
            remove_tree_no_follow(old)
        return
    if overwrite:
        remove_tree(output)
    sources = _match_all(staging)
    destinations = [output.rstrip("/") + s[len(staging.rstrip("/")) :] for s in sources]
    FileSystems.rename(sources, destinations)
    remove_tree(staging)


def list_parts(root: str) -> list[dict]:
    """Every Parquet part under root/{language}/{bucket}/ with its row count (from the footer)."""
    pattern = FileSystems.join(root, "*", "*", PART_FILE_GLOB)
    parts = []
    for m in sorted(FileSystems.match([pattern])[0].metadata_list, key=lambda m: m.path):
        with FileSystems.open(m.path, compression_type="uncompressed") as f:
            rows = pq.ParquetFile(f).metadata.num_rows
        relative = m.path[len(root.rstrip("/")) + 1 :]
        language, bucket, _ = relative.split("/", 2)
        parts.append({"path": relative, "language": language, "bucket": bucket, "documents": rows, "bytes": m.size_in_bytes})
    return parts
