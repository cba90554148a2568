"""One log format for every `cc100` command and every local Beam worker process (stdlib only).

Beam logs through the root logger at import time ("apitools not found ..." when the optional
GCP client is absent) and its worker processes log start-up chatter ("Logging handler created.",
"No semi_persistent_directory found ..."). A root-level `logging.warning` with no handler also
installs logging's default format ("WARNING:root:..."), so the first such line decided the format
of everything after it. `quiet_imports` (run when `pipeline` is imported, before any module
imports Beam) gives the root logger our handler first and drops those lines; `setup` is what a
command calls to show its own progress at INFO.
"""

from __future__ import annotations

import logging
import sys

FORMAT = "%(asctime)s %(levelname)s %(message)s"
DATE_FORMAT = "%H:%M:%S"
OURS = ("cc100", "pipeline")  # loggers whose INFO lines are progress a person reads
NOISE = (  # messages that say nothing to a cc100 user
    "apitools not found",
    "Logging handler created.",
    "No semi_persistent_directory found",
    "semi_persistent_directory:",
    "Load pipeline options from file",
)


class DropNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(NOISE)


class _Stderr(logging.StreamHandler):
    """Writes to sys.stderr as it is when a record is emitted (as logging's last-resort handler
    does), so a later redirection (contextlib.redirect_stderr, pytest's capsys) is followed."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _):
        pass


def _handler() -> logging.Handler:
    handler = _Stderr()
    handler.setFormatter(logging.Formatter(FORMAT, DATE_FORMAT))
    handler.addFilter(DropNoise())
    return handler


def quiet_imports() -> None:
    """Drop Beam's import-time noise, and give the root logger our format if it has none yet
    (an application that configured logging, such as Airflow, keeps its own)."""
    root = logging.getLogger()
    if not any(isinstance(f, DropNoise) for f in root.filters):
        root.addFilter(DropNoise())
    if not root.handlers:
        root.addHandler(_handler())


class DropBeamTracebacks(logging.Filter):
    """Beam logs a failing DoFn's traceback at ERROR before the job raises; the command then
    says what failed in one line, so without --verbose that traceback is dropped."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith("apache_beam"):
            return True
        return record.exc_info is None and "Traceback (most recent call last)" not in str(record.msg)


def setup(verbose: bool = False) -> None:
    """A command's logging: our loggers at INFO on stderr in our format, libraries at WARNING
    (everything with --verbose; Beam's tracebacks only with --verbose)."""
    quiet_imports()
    handler = _handler()
    for name in OURS:
        ours = logging.getLogger(name)
        ours.handlers[:] = [handler]
        ours.setLevel(logging.INFO)
        ours.propagate = False
    root = logging.getLogger()
    root.setLevel(logging.INFO if verbose else logging.WARNING)
    for h in root.handlers:
        if isinstance(h, _Stderr):  # ours (quiet_imports); an application's handlers are its own
            h.filters[:] = [f for f in h.filters if not isinstance(f, DropBeamTracebacks)]
            if not verbose:
                h.addFilter(DropBeamTracebacks())
