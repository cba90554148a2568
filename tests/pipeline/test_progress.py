"""Progress lines for people: i/N, a rate and an ETA; a bar only on a terminal."""

from __future__ import annotations

import io

from pipeline.utils.progress import Progress


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def test_periodic_lines_with_rate_and_eta_and_one_done_line():
    clock, lines = Clock(), []
    p = Progress(10, "files", items_unit="documents", log=lines.append, every=30, clock=clock,
                 stream=io.StringIO())
    clock.t = 10
    p.update(1, 500)
    assert lines == []  # not yet 30 s since the last line
    clock.t = 40
    p.update(4, 2000)
    assert lines == ["files 4/10 (40%), 50 documents/s, ETA 0:01:00"]
    clock.t = 100
    p.update(10, 5000)
    assert lines[-1] == "files 10/10 (100%), 50 documents/s, done in 0:01:40"
    clock.t = 500  # later stages still running: no more lines, and the rate stays the read rate
    p.update(10, 5000)
    p.close()
    assert len(lines) == 2


def test_eta_counts_only_this_runs_work():
    clock, lines = Clock(), []
    p = Progress(10, "files", initial=6, log=lines.append, every=0, clock=clock, bar=False)
    clock.t = 20
    p.update(8)  # 2 files in 20 s -> 2 left take 20 s more
    assert lines == ["files 8/10 (80%), ETA 0:00:20"]
    p.close()
    assert lines[-1] == "files 8/10 (80%), ETA 0:00:20"
    assert Progress(3, "files", log=lines.append, bar=False).line().endswith("ETA unknown")


def test_a_bar_on_a_terminal_and_plain_lines_elsewhere():
    class Tty(io.StringIO):
        def isatty(self):
            return True

    tty = Tty()
    p = Progress(4, "files", items_unit="documents", stream=tty, log=lambda s: None)
    p.update(4, 100)
    p.close()
    assert "4/4" in tty.getvalue() and "documents/s" in tty.getvalue() and "100%|" in tty.getvalue()

    plain, lines = io.StringIO(), []
    p = Progress(4, "files", stream=plain, log=lines.append)
    p.update(4)
    p.close()
    assert plain.getvalue() == "" and lines == ["files 4/4 (100%), done in 0:00:00"]
