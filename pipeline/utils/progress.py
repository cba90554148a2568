"""Progress of a long step for a person: done i/N, a rate and an ETA.

On a terminal it is a tqdm bar (stderr); anywhere else (Airflow task logs, CI, a file) it is one
plain line every `every` seconds plus a last one, so logs stay short and grep-able:

    files 3/10 (30%), 1,234 documents/s, ETA 0:01:20
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from datetime import timedelta


def _is_terminal(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def format_eta(seconds: float) -> str:
    return str(timedelta(seconds=round(seconds)))


class Progress:
    """`update(done, items)` with absolute numbers: `done` of `total` units (files, lines), and
    optionally `items` (documents) for a second rate. Rates and the ETA count only this run's
    work, so units already done at the start (`initial`) do not inflate them."""

    def __init__(self, total: int, unit: str, *, items_unit: str | None = None, initial: int = 0,
                 log: Callable[[str], None] | None = None, every: float = 30.0, stream=None,
                 bar: bool | None = None, clock: Callable[[], float] = time.monotonic):
        self.total, self.unit, self.items_unit = total, unit, items_unit
        self.initial, self.every, self.clock = initial, every, clock
        self.stream = stream or sys.stderr
        self.log = log or (lambda line: print(line, file=self.stream, flush=True))
        self.t0 = self.last_line = clock()
        self.done, self.items = initial, 0
        self.finished_at: float | None = None  # rates and the time stop when done reaches total
        self._bar = None
        if bar if bar is not None else _is_terminal(self.stream):
            from tqdm import tqdm

            self._bar = tqdm(total=total, initial=initial, unit=unit.rstrip("s") or unit,
                             file=self.stream, dynamic_ncols=True, leave=True)

    def line(self) -> str:
        """'files 3/10 (30%), 1,234 documents/s, ETA 0:01:20'."""
        elapsed = max((self.finished_at or self.clock()) - self.t0, 1e-9)
        pct = 100.0 * self.done / self.total if self.total else 100.0
        parts = [f"{self.unit} {self.done:,}/{self.total:,} ({pct:.0f}%)"]
        if self.items_unit:
            parts.append(f"{self.items / elapsed:,.0f} {self.items_unit}/s")
        new = self.done - self.initial
        if self.done >= self.total:
            parts.append(f"done in {format_eta(elapsed)}")
        elif new > 0:
            parts.append(f"ETA {format_eta(elapsed / new * (self.total - self.done))}")
        else:
            parts.append("ETA unknown")
        return ", ".join(parts)

    def update(self, done: int, items: int | None = None) -> None:
        step, self.done = done - self.done, done
        if items is not None:
            self.items = items
        finishing = self.finished_at is None and done >= self.total
        if finishing:
            self.finished_at = self.clock()
        if self._bar is not None:
            if self.items_unit:
                rate = self.items / max(self.clock() - self.t0, 1e-9)
                self._bar.set_postfix_str(f"{rate:,.0f} {self.items_unit}/s", refresh=False)
            self._bar.update(step)
        elif finishing or (self.finished_at is None and self.clock() - self.last_line >= self.every):
            self.last_line = self.clock()
            self.log(self.line())

    def close(self) -> None:
        """The last line, unless the one saying 'done' was already printed."""
        if self._bar is not None:
            self._bar.close()
        elif self.finished_at is None or self.last_line < self.finished_at:
            self.log(self.line())
