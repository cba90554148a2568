"""What a killed `cc100 corpus` leaves behind, and how a later run recognises and removes it.

A run writes into a staging directory beside the output and renames it at the end; a run killed
before that leaves the staging directory, and one killed right after the commit leaves its work
directory. A later run of the stage removes such leftovers, and only those it can prove are
its own and dead:

* a staging directory is named `OUTPUT.tmp-{host}-{pid}-{random}` (`staging_path`): it belongs
  to this stage, on this host (`host` is a hash of the host name), and its owner is dead when
  that pid is gone (`os.kill(pid, 0)`; a live pid - even a recycled one - keeps it). Its content
  must also look like a staging directory (Parquet parts under {language}/{bucket}/, the run's
  own files); anything else there keeps it, with a warning.
* the work directory of a committed run that did not ask to keep it (OUTPUT's stats.json says
  committed, no --keep-work, no failed segment, that work dir) is removed when nothing in it is
  newer than that stats.json and no staging directory of OUTPUT is alive.

Local paths only: object stores have no process to ask, so a leftover there is left alone.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import socket
import uuid

from pipeline.contracts import CUTOFFS_FILE, DATASET_CARD, FILES_REPORT, META_DIR, STATS_FILE, TOP_LINES_FILE

LOG = logging.getLogger("cc100.corpus")
STAGING_INFIX = ".tmp-"
_STAGING_RE = re.compile(r"\.tmp-([0-9a-f]{8})-([0-9]+)-[0-9a-f]{12}$")
_OLD_STAGING_RE = re.compile(r"\.tmp-[0-9a-f]{12}$")  # cc100 before the owner was in the name
# What a staging directory may hold besides {language}/{bucket}/part-*.parquet.
STAGING_FILES = frozenset({STATS_FILE, FILES_REPORT, CUTOFFS_FILE, TOP_LINES_FILE, ".write-probe", DATASET_CARD})
STAGING_DIR_PREFIXES = ("beam-temp-", META_DIR)  # WriteToText's temporary files; the metadata dir
_PARTITION_RE = re.compile(r"^[A-Za-z0-9_.-]+$")


def host_tag() -> str:
    return hashlib.sha1(socket.gethostname().encode("utf-8", "surrogatepass")).hexdigest()[:8]


def staging_path(output: str) -> str:
    """A new staging directory name for `output`, naming this host and process."""
    return f"{output.rstrip('/')}{STAGING_INFIX}{host_tag()}-{os.getpid()}-{uuid.uuid4().hex[:12]}"


def pid_alive(pid: int) -> bool:
    """True unless the process is certainly gone (a pid we may not signal is alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def _is_local(path: str) -> bool:
    return "://" not in path


def _looks_like_staging(path: str) -> bool:
    """Only the files a corpus run writes into its staging directory."""
    for entry in os.scandir(path):
        if entry.is_symlink():
            return False
        if entry.is_file():
            if entry.name not in STAGING_FILES:
                return False
        elif entry.name.startswith(STAGING_DIR_PREFIXES):
            continue
        elif not (_PARTITION_RE.match(entry.name) and _holds_only_parts(entry.path)):
            return False
    return True


def _holds_only_parts(language_dir: str) -> bool:
    for bucket in os.scandir(language_dir):
        if bucket.is_symlink() or not bucket.is_dir() or not _PARTITION_RE.match(bucket.name):
            return False
        for part in os.scandir(bucket.path):
            if part.is_symlink() or not part.is_file() or not re.match(r"^part-\d+-of-\d+\.parquet$", part.name):
                return False
    return True


def staging_dirs(output: str) -> list[tuple[str, str]]:
    """(path, state) of every staging directory beside `output`: "dead" (ours, owner gone,
    content recognised), "alive" (owner running, or another host's), or "unknown"."""
    output = output.rstrip("/")
    parent, base = os.path.split(os.path.abspath(output))
    try:
        names = [e.name for e in os.scandir(parent) if e.name.startswith(base + STAGING_INFIX)]
    except OSError:
        return []
    found = []
    for name in sorted(names):
        path = os.path.join(parent, name)
        match = _STAGING_RE.fullmatch(name[len(base):])
        if os.path.islink(path) or not os.path.isdir(path) or not (match or _OLD_STAGING_RE.fullmatch(name[len(base):])):
            continue
        if not match:
            found.append((path, "unknown"))  # no owner recorded: cannot prove it is dead
        elif match.group(1) != host_tag() or pid_alive(int(match.group(2))):
            found.append((path, "alive"))
        else:
            found.append((path, "dead" if _looks_like_staging(path) else "unknown"))
    return found


def remove_dead_staging(output: str) -> list[str]:
    """Remove the staging directories of `output` left by killed runs; returns what went."""
    if not _is_local(output):
        return []
    removed = []
    for path, state in staging_dirs(output):
        if state == "dead":
            shutil.rmtree(path)
            LOG.info("removed %s, left by a killed run", path)
            removed.append(path)
        elif state == "unknown":
            LOG.warning("%s looks like a staging directory of an earlier run but its owner or content "
                        "cannot be verified; not removed", path)
    return removed


def _newest_mtime(path: str) -> float:
    newest = os.lstat(path).st_mtime
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            try:
                newest = max(newest, os.lstat(os.path.join(root, name)).st_mtime)
            except OSError:
                pass
    return newest


def committed_run_left_work_dir(output: str, stats_path: str, work_dir: str, work_config: str) -> bool:
    """True when `work_dir` is the work dir of the run committed to `output` (its stats.json at
    `stats_path`) that should have been removed after the commit (see the module docstring)."""
    if not (_is_local(output) and _is_local(work_dir)):
        return False
    try:
        with open(stats_path, encoding="utf-8") as f:
            stats = json.load(f)
    except (OSError, ValueError):
        return False
    config = stats.get("config") or {}
    if not (isinstance(stats, dict) and stats.get("committed") and not stats.get("failed_segments")
            and not config.get("keep_work") and stats.get("work_dir") == work_dir):
        return False
    if not os.path.isfile(os.path.join(work_dir, work_config)):
        return False
    if any(state != "dead" for _, state in staging_dirs(output)):
        return False  # a run on this output may be using it right now
    return _newest_mtime(work_dir) <= os.stat(stats_path).st_mtime
