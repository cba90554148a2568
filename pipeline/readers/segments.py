"""The per-segment phase of the corpus job, checkpointed: WET file -> Documents -> spool.

A segment is one WET file: a local/`gs://` path (`--input`) or a line of a snapshot's
wet.paths.gz (`--snapshot`), fetched over HTTP with retries and Range resume
(pipeline/readers/snapshot.py). Turning a segment into Documents (download, parse, --min-len filter) is
the expensive part of a run, and the only part that is per segment. So it is checkpointed:

    WORK/work.json                      what the spools were made with (min_len, max_record_bytes,
                                        format)
    WORK/segments/{name}-{key}.parquet  a finished segment: its Documents (PARQUET_SCHEMA, before
                                        dedup, record_offset kept) and, in the footer, its
                                        per-file report; written under a temporary name and
                                        renamed, so it exists only when complete
    WORK/downloads/                     the download cache (default; a local disk only)

`ReadSegments` reads a segment's spool when there is one, and otherwise downloads/parses the
segment and writes its spool while passing the Documents on. Everything after it - paragraph
dedup (whose groups span segments), LID, perplexity, buckets, writing - is recomputed from the
documents of all segments on every run; so a resumed run skips only download + parse, and its
output is identical to an uninterrupted run's. A segment's documents leave only from its
committed spool, so they reach the output entirely or not at all. A segment whose download fails
for good, or whose read breaks off, goes to a tagged output (never silently skipped, never
half kept); its absence is reported, and a re-run fetches it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import tempfile
import threading
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics

from pipeline.contracts import STATS_FILE
from pipeline.utils.cliflags import option, sub_config
from pipeline.readers.download import DEFAULT_MAX_CONCURRENT, RetryPolicy
from pipeline.readers.snapshot import DEFAULT_BASE_URL, validate_base_url
from pipeline.writers.parquet import CorpusIOError, remove_tree, write_json
from pipeline.utils.progress import Progress
from pipeline.schema import PARQUET_SCHEMA, Document, document_from_row
from pipeline.readers.wet import MAX_RECORD_BYTES, SKIP_REASONS, WetFileReport, read_wet_file

NAMESPACE = "cc100"
LOG = logging.getLogger("cc100.corpus")
SPOOL_VERSION = 1  # bump when the spool layout or the parser's output changes
WORK_CONFIG = "work.json"
SPOOL_DIR = "segments"
DOWNLOAD_DIR = "downloads"
FAILED_RUN_STATS = STATS_FILE  # WORK/stats.json: the accounting of a run that did not commit
SPOOL_REPORT_KEY = b"cc100_segment_report"
SPOOL_BATCH = 1000  # documents per Parquet row group of a spool (bounds a worker's memory)
_SAFE_RE = re.compile(r"[^A-Za-z0-9_.-]")


def _is_local(path: str) -> bool:
    return "://" not in path


# -- segments -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Segment:
    """One WET file of the run. `name` becomes every document's cc_segment; `key` names its spool."""

    name: str  # the input path, or the wet.paths line (crawl-data/...), mirror-independent
    key: str  # spool file name (without .parquet): readable prefix + hash of the identity
    remote: bool = False  # True: fetched from the snapshot's HTTP host, not opened directly


def spool_key(name: str, size: int | None = None) -> str:
    """File-name-safe, unique key of a segment: basename + sha1 of (name, size).

    The size makes a changed local input file get a new spool (Common Crawl files never change).
    """
    base = name.rstrip("/").rsplit("/", 1)[-1]
    for suffix in (".warc.wet.gz", ".wet.gz", ".gz"):
        if base.endswith(suffix):
            base = base[: -len(suffix)]
            break
    identity = name if size is None else f"{name}\0{size}"
    digest = hashlib.sha1(identity.encode("utf-8", "surrogatepass")).hexdigest()[:12]
    return f"{_SAFE_RE.sub('_', base)[:80]}-{digest}"


def input_segments(files: Sequence[str]) -> list[Segment]:
    """Segments of --input files (already matched and sorted), keyed by path and size."""
    results = FileSystems.match(list(files)) if files else []
    segments = []
    for path, result in zip(files, results):
        size = result.metadata_list[0].size_in_bytes if result.metadata_list else None
        segments.append(Segment(path, spool_key(path, size)))
    return segments


def snapshot_segments(paths: Sequence[str]) -> list[Segment]:
    """Segments of selected wet.paths lines (downloaded inside the job)."""
    return [Segment(p, spool_key(p), remote=True) for p in paths]


# -- the work directory -------------------------------------------------------------------------


def work_fingerprint(min_len: int, max_record_bytes: int = MAX_RECORD_BYTES) -> dict:
    """What the spools depend on. Not the segment selection: spools are per segment, so a run
    over 0-199 reuses those of an earlier run over 0-99; nor dedup/LID/buckets: recomputed."""
    return {"spool_version": SPOOL_VERSION, "min_len": min_len, "max_record_bytes": max_record_bytes}


def spool_dir(work_dir: str) -> str:
    return FileSystems.join(work_dir, SPOOL_DIR)


def spool_path(work_dir: str, segment: Segment) -> str:
    return FileSystems.join(work_dir, SPOOL_DIR, f"{segment.key}.parquet")


def _read_json(path: str) -> dict | None:
    try:
        if not FileSystems.exists(path):
            return None
        with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
            return json.loads(f.read().decode("utf-8"))
    except (OSError, ValueError):
        return None


def _list(pattern: str) -> list[str]:
    try:
        return [m.path for m in FileSystems.match([pattern])[0].metadata_list]
    except Exception:  # noqa: BLE001 - a missing directory matches nothing
        return []


def _spooled(work_dir: str, segments: Sequence[Segment]) -> set[str]:
    """File names of the committed spools of `segments` (one listing, not one request each)."""
    names = {p.rstrip("/").rsplit("/", 1)[-1] for p in _list(FileSystems.join(work_dir, SPOOL_DIR, "*.parquet"))}
    return names & {f"{s.key}.parquet" for s in segments}


def finished_segments(work_dir: str, segments: Sequence[Segment]) -> int:
    """How many of `segments` have a committed spool."""
    return len(_spooled(work_dir, segments))


def _spooled_documents(work_dir: str, name: str) -> int:
    """The documents of a committed spool, from its footer (0 if it cannot be read)."""
    try:
        path = FileSystems.join(work_dir, SPOOL_DIR, name)
        with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
            return int(json.loads(pq.ParquetFile(f).metadata.metadata[SPOOL_REPORT_KEY])["documents"])
    except Exception:  # noqa: BLE001 - progress only; the job itself reports a bad spool
        return 0


@contextlib.contextmanager
def segment_progress(work_dir: str, segments: Sequence[Segment], log, every: float = 30.0):
    """While the job runs: files done i/N, documents/s and an ETA of the per-segment phase (the
    long part: download + parse), from the spools that appear in the work dir. Any runner works,
    since only the work dir is watched (listed every 2 s locally, 15 s on gs://)."""
    seen = _spooled(work_dir, segments)
    progress = Progress(len(segments), "files", items_unit="documents", initial=len(seen),
                        log=log, every=every)
    documents = 0
    stop = threading.Event()

    def tick() -> None:
        nonlocal documents, seen
        new = _spooled(work_dir, segments) - seen
        documents += sum(_spooled_documents(work_dir, name) for name in new)
        seen |= new
        progress.update(len(seen), documents)

    def loop() -> None:
        while not stop.wait(2.0 if _is_local(work_dir) else 15.0):
            tick()

    thread = threading.Thread(target=loop, name="cc100-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        tick()
        progress.close()


def _work_dir_is_empty(work_dir: str) -> bool:
    if _is_local(work_dir):
        return not os.path.exists(work_dir) or (os.path.isdir(work_dir) and not any(os.scandir(work_dir)))
    return not _list(FileSystems.join(work_dir, "**"))


def check_work_dir(work_dir: str, fingerprint: dict, overwrite: bool) -> str:
    """Can this run use `work_dir`? "new", "resume" or "reset" (overwrite a foreign config).

    Reads only: nothing is created before every other check of the run has passed.
    """
    if _is_local(work_dir) and os.path.exists(work_dir) and not os.path.isdir(work_dir):
        raise CorpusIOError(f"--work-dir {work_dir}: exists and is not a directory")
    recorded = _read_json(FileSystems.join(work_dir, WORK_CONFIG))
    if recorded is None:
        if _work_dir_is_empty(work_dir):
            return "new"
        raise CorpusIOError(
            f"--work-dir {work_dir}: not empty and not a cc100 work directory (no {WORK_CONFIG}); "
            "choose another --work-dir or remove it"
        )
    if recorded.get("fingerprint") == fingerprint:
        return "resume"
    if overwrite:
        return "reset"
    old = recorded.get("fingerprint") or {}
    changed = ", ".join(
        f"{k} {old.get(k)!r} -> {v!r}" for k, v in fingerprint.items() if old.get(k) != v
    ) or "unknown format"
    raise CorpusIOError(
        f"--work-dir {work_dir}: holds segment spools made with other settings ({changed}); "
        "pass --overwrite to discard them, or choose another --work-dir"
    )


def prepare_work_dir(work_dir: str, fingerprint: dict, state: str) -> None:
    """Create the work dir (or clear a foreign one when state is "reset") and record its config."""
    if state == "reset":
        clear_work_dir(work_dir)
    if _is_local(work_dir):
        os.makedirs(os.path.join(work_dir, SPOOL_DIR), exist_ok=True)
    path = FileSystems.join(work_dir, WORK_CONFIG)
    if state != "resume" or _read_json(path) is None:
        write_json(path, {"stage": "corpus-work", "fingerprint": fingerprint})


def clear_work_dir(work_dir: str, remove_dir: bool = True) -> None:
    """Remove what a run put in the work dir (spools, downloads, records), then the dir if empty
    (and `remove_dir`). Only our own entries: a --work-dir shared with other files keeps them.
    """
    for name in (SPOOL_DIR, DOWNLOAD_DIR):
        remove_tree(FileSystems.join(work_dir, name))
    for name in (WORK_CONFIG, FAILED_RUN_STATS):
        path = FileSystems.join(work_dir, name)
        try:
            if FileSystems.exists(path):
                FileSystems.delete([path])
        except Exception:  # noqa: BLE001 - cleanup never hides the real outcome
            LOG.warning("could not remove %s", path)
    if remove_dir and _is_local(work_dir):
        try:
            os.rmdir(work_dir)
        except OSError:
            pass


def resolve_download_cache(download_cache: str | None, work_dir: str) -> str:
    """--download-cache, else WORK/downloads when the work dir is local, else the temp dir.

    Called on the worker: on Dataflow the default is the worker VM's own disk.
    """
    if download_cache:
        return download_cache
    if _is_local(work_dir):
        return os.path.join(work_dir, DOWNLOAD_DIR)
    return os.path.join(tempfile.gettempdir(), "cc100-downloads")


# -- spools -------------------------------------------------------------------------------------


class SpoolWriter:
    """Documents -> WORK/segments/{key}.parquet, row group by row group; commit() renames it.

    The per-file report goes into the Parquet footer, so documents and report are committed
    together by one rename. Until then the file has a temporary name that readers ignore.
    """

    def __init__(self, path: str):
        self.path = path
        self.tmp = f"{path}.tmp-{uuid.uuid4().hex[:12]}"
        self.rows: list[dict] = []
        self.file = None
        self.writer = None
        self.count = 0

    def add(self, doc: Document) -> None:
        self.rows.append(doc.to_row())
        if len(self.rows) >= SPOOL_BATCH:
            self._flush()

    def _flush(self) -> None:
        if self.writer is None:
            self.file = FileSystems.create(self.tmp)
            self.writer = pq.ParquetWriter(self.file, PARQUET_SCHEMA, compression="zstd")
        if self.rows:
            self.writer.write_table(pa.Table.from_pylist(self.rows, schema=PARQUET_SCHEMA))
            self.count += len(self.rows)
            self.rows = []

    def commit(self, report: dict) -> None:
        self._flush()  # creates the file even for a segment without documents
        self.writer.add_key_value_metadata({SPOOL_REPORT_KEY: json.dumps(report, ensure_ascii=False)})
        self.writer.close()
        self.file.close()
        self.writer = self.file = None
        FileSystems.rename([self.tmp], [self.path])

    def abort(self) -> None:
        try:
            if self.writer is not None:
                self.writer.close()
            if self.file is not None:
                self.file.close()
        except Exception:  # noqa: BLE001 - best effort: the temp file is garbage anyway
            pass
        self.writer = self.file = None
        try:
            if FileSystems.exists(self.tmp):
                FileSystems.delete([self.tmp])
        except Exception:  # noqa: BLE001
            pass


class SpoolError(Exception):
    """A spool that cannot be read back (footer or report missing); the segment is redone."""


def open_spool(path: str) -> tuple[dict, Iterator[Document]]:
    """(the segment's report, its Documents in record order) from a committed spool."""
    f = FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED)
    try:
        parquet = pq.ParquetFile(f)
        meta = parquet.metadata.metadata or {}
        report = json.loads(meta[SPOOL_REPORT_KEY])
    except Exception as e:  # noqa: BLE001 - any damage means "redo this segment"
        f.close()
        raise SpoolError(f"{path}: unreadable spool ({type(e).__name__}: {e})") from None

    def documents() -> Iterator[Document]:
        try:
            for batch in parquet.iter_batches(batch_size=SPOOL_BATCH):
                for row in batch.to_pylist():
                    yield document_from_row(row)
        finally:
            f.close()

    return report, documents()


# -- the Beam stage -------------------------------------------------------------------------


@dataclass(frozen=True)
class FetchSettings:
    """How workers download snapshot segments (a picklable part of the DoFn), and their flags."""

    # may hold credentials: never log it (redact_url)
    base_url: str = option("--cc-base-url", default=DEFAULT_BASE_URL, metavar="URL",
                           help="Common Crawl host or mirror (default %(default)s)")
    download_cache: str | None = option(  # None: resolve_download_cache on the worker
        "--download-cache", default=None, metavar="DIR",
        help="local directory for WET downloads on each worker (a file is deleted once its "
        "documents are spooled; default WORK/downloads, or the system temp dir when the work "
        "dir is not local)")
    max_downloads: int = option("--max-downloads", default=DEFAULT_MAX_CONCURRENT, metavar="N",
                                help="concurrent downloads per worker process (default %(default)s)")
    # attempts, backoff, deadline, size limit, Retry-After cap
    policy: RetryPolicy = sub_config(RetryPolicy)

    def __post_init__(self):
        try:
            object.__setattr__(self, "base_url", validate_base_url(self.base_url))
        except ValueError as e:
            raise ValueError(f"cc_base_url: {e}") from None
        if self.download_cache is not None and "://" in self.download_cache:
            raise ValueError("download_cache: --download-cache must be a local directory, "
                             f"got {self.download_cache!r}")
        if self.max_downloads < 1:
            raise ValueError(f"max_downloads: --max-downloads must be >= 1, got {self.max_downloads}")


FILE_COUNTERS = (
    "files_read", "files_failed", "files_truncated", "files_empty",
    "files_without_conversion_records", "records_read", "conversion_records",
    "non_conversion_records", "invalid_utf8_records", "content_length_mismatch",
    "garbage_bytes_skipped", "docs_too_short", "documents_read", "bad_wet_record",
)
SEGMENT_COUNTERS = (
    "segments_parsed", "segments_from_spool", "segments_downloaded", "segments_failed",
    "segments_spooled", "spools_unreadable", "download_retries", "download_bytes",
    "downloads_resumed",
)


def report_counts(report: dict) -> dict[str, int]:
    """A file report (WetFileReport.to_dict() + "unreadable") -> the counters it adds up to."""
    unreadable = bool(report.get("unreadable"))
    records = report["records"]
    counts = {
        "files_read": 1,
        "files_failed": int(unreadable),
        "files_truncated": int(bool(report["error"]) and not unreadable),
        "files_empty": int(not report["error"] and records == 0),
        "files_without_conversion_records": int(bool(records) and not report["conversion_records"]),
        "records_read": records,
        "conversion_records": report["conversion_records"],
        "non_conversion_records": report["non_conversion_records"],
        "invalid_utf8_records": report["invalid_utf8"],
        "content_length_mismatch": report["content_length_mismatch"],
        "garbage_bytes_skipped": report["garbage_bytes"],
        "docs_too_short": report["too_short"],
        "documents_read": report["documents"],
        "bad_wet_record": sum(report["skipped"].values()),
    }
    for reason, n in report["skipped"].items():
        if reason in SKIP_REASONS:
            counts[f"bad_wet_record_{reason}"] = n
    return counts


class ProcessSegmentFn(beam.DoFn):
    """Segment -> its Documents (from the spool, or fetched + parsed + spooled).

    Outputs: Documents (main), one report dict per segment (REPORTS), and one dict per segment
    whose download failed for good (FAILED: name, reason, attempts, HTTP status).
    """

    REPORTS = "file_reports"
    FAILED = "failed_segments"

    def __init__(self, work_dir: str, min_len: int, fetch: FetchSettings | None = None,
                 max_record_bytes: int = MAX_RECORD_BYTES):
        self.work_dir = work_dir
        self.min_len = min_len
        self.fetch = fetch
        self.max_record_bytes = max_record_bytes

    def setup(self):
        names = FILE_COUNTERS + SEGMENT_COUNTERS + tuple(f"bad_wet_record_{r}" for r in SKIP_REASONS)
        self.counters = {name: Metrics.counter(NAMESPACE, name) for name in names}
        self.fetcher = None
        if self.fetch is not None:
            from pipeline.readers.snapshot import SegmentFetcher

            self.fetcher = SegmentFetcher(
                resolve_download_cache(self.fetch.download_cache, self.work_dir),
                self.fetch.base_url,
                policy=self.fetch.policy,
                max_concurrent=self.fetch.max_downloads,
            )

    def _inc(self, name: str, n: int = 1) -> None:
        if n:
            self.counters[name].inc(n)

    def process(self, segment: Segment):
        spool = spool_path(self.work_dir, segment)
        if FileSystems.exists(spool):
            try:
                report, docs = open_spool(spool)
            except SpoolError as e:
                LOG.warning("%s; processing the segment again", e)
                self._inc("spools_unreadable")
            else:
                yield from docs
                report = {**report, "source": "spool"}
                self._inc("segments_from_spool")
                yield from self._finish(report)
                return

        local, download = segment.name, None
        if segment.remote:
            from pipeline.readers.download import DownloadError

            try:
                local = str(self.fetcher.fetch(segment.name))
            except DownloadError as e:
                self._inc("segments_failed")
                LOG.warning("segment %s FAILED: %s", segment.name, e)
                yield beam.pvalue.TaggedOutput(self.FAILED, {
                    "path": segment.name, "url": e.url, "reason": e.reason, "attempts": e.attempts,
                    "status": e.status, "permanent": e.permanent,
                })
                return
            result = self.fetcher.downloaded.get(segment.name)
            if result is not None:  # not a file someone prefetched into the cache
                download = {"attempts": result.attempts, "retries": result.retries,
                            "resumed": result.resumed, "bytes": result.bytes,
                            "seconds": round(result.seconds, 3)}
                self._inc("segments_downloaded")
                self._inc("download_retries", result.attempts - 1)
                self._inc("download_bytes", result.bytes)
                self._inc("downloads_resumed", int(result.resumed))

        report = self._spool_segment(segment, local, spool)
        if download is not None:
            self.fetcher.discard(segment.name)  # bounded disk: the spool holds what we need
        self._inc("segments_parsed")
        if report["unreadable"]:  # maybe transient (a gs:// hiccup): not checkpointed, no document
            for name in ("files_read", "files_failed", "segments_failed"):
                self._inc(name)
            LOG.warning("segment %s FAILED: %s", segment.name, report["error"])
            yield beam.pvalue.TaggedOutput(self.FAILED, {
                "path": segment.name, "reason": report["error"], "attempts": 1, "status": None,
                "permanent": False, "documents_discarded": report["documents"],
                "problem": f"read failed, none of its {report['documents']} documents kept: {report['error']}"})
            return
        _, docs = open_spool(spool)  # all of the segment or nothing: only a committed spool is read
        yield from docs
        yield from self._finish({**report, "source": "download" if segment.remote else "file",
                                 **({"download": download} if download else {})})

    def _spool_segment(self, segment: Segment, local: str, spool: str) -> dict:
        """Parse the segment into its spool (committed only when the whole file was read);
        returns its report. No document leaves before the read is complete (issue #15 §5)."""
        report_obj = WetFileReport(segment.name)
        writer = SpoolWriter(spool)
        try:
            for doc in read_wet_file(local, self.min_len, report_obj, self.max_record_bytes):
                if segment.remote:
                    doc = doc.replace(cc_segment=segment.name)
                writer.add(doc)
            report_obj.path = segment.name
            report = {**report_obj.to_dict(), "unreadable": report_obj.unreadable}
            if report_obj.unreadable:
                writer.abort()
            else:
                writer.commit(report)
                self._inc("segments_spooled")
        except BaseException:
            writer.abort()
            raise
        return report

    def _finish(self, report: dict):
        for name, n in report_counts(report).items():
            self._inc(name, n)
        rate = report["records"] / report["seconds"] if report.get("seconds") else 0.0
        how = {"spool": "from spool", "download": "downloaded", "file": "read"}[report["source"]]
        line = (f"{how} {report['path']}: {report['records']} records, {report['documents']} documents"
                + ("" if report["source"] == "spool" else f" in {report['seconds']:.1f}s ({rate:,.0f} records/s)"))
        if report.get("problems"):
            LOG.warning("%s; problems: %s", line, "; ".join(report["problems"]))
        else:
            LOG.info("%s", line)
        yield beam.pvalue.TaggedOutput(self.REPORTS, report)


class ReadSegments(beam.PTransform):
    """Segments -> Documents, each segment processed once per run on some worker.

    The segment list is spread over workers by a Reshuffle (one DoFn call per segment). With
    `report_path`, one JSON line per segment is written there: its report, or for a failed
    download {"path", "failed": true, "reason", ...}.
    """

    def __init__(self, segments: Sequence[Segment], work_dir: str, min_len: int = 300,
                 fetch: FetchSettings | None = None, report_path: str | None = None,
                 max_record_bytes: int = MAX_RECORD_BYTES):
        super().__init__()
        if any(s.remote for s in segments) and fetch is None:
            raise ValueError("ReadSegments: remote segments need FetchSettings")
        self.segments = list(segments)
        self.work_dir = work_dir
        self.min_len = min_len
        self.fetch = fetch
        self.report_path = report_path
        self.max_record_bytes = max_record_bytes

    def expand(self, pbegin):
        results = (
            pbegin
            | "ListSegments" >> beam.Create(self.segments)
            | "SpreadSegments" >> beam.Reshuffle()
            | "ProcessSegments"
            >> beam.ParDo(ProcessSegmentFn(self.work_dir, self.min_len, self.fetch,
                                           self.max_record_bytes)).with_outputs(
                ProcessSegmentFn.REPORTS, ProcessSegmentFn.FAILED, main="documents"
            )
        )
        if self.report_path:
            failed = results[ProcessSegmentFn.FAILED] | "MarkFailed" >> beam.Map(
                lambda f: {**f, "failed": True, "problems": [f.get("problem") or f"download failed: {f['reason']}"]})
            _ = (
                (results[ProcessSegmentFn.REPORTS], failed)
                | "AllSegmentReports" >> beam.Flatten()
                | "ReportsToJson" >> beam.Map(lambda r: json.dumps(r, ensure_ascii=False, sort_keys=True))
                | "WriteSegmentReports"
                >> beam.io.WriteToText(self.report_path, num_shards=1, shard_name_template="")
            )
        return results.documents


def failed_segments(reports: Sequence[dict]) -> list[dict]:
    """The failed segments among files.jsonl lines, as stats.json lists them (name + reason)."""
    return [
        {"segment": r["path"], "reason": r["reason"], "attempts": r.get("attempts"), "status": r.get("status")}
        for r in reports if r.get("failed")
    ]


def segment_sources(reports: Sequence[dict]) -> dict[str, int]:
    """How many segments came from where this run: spool, download, file, failed."""
    out = {"spool": 0, "download": 0, "file": 0, "failed": 0}
    for r in reports:
        out["failed" if r.get("failed") else r.get("source", "file")] += 1
    return out

