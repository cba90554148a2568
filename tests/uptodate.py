"""Checks shared by the stages' "up to date" tests (pipeline/contracts.py, completion records)."""

from __future__ import annotations

import os
from pathlib import Path


def tree_state(root: str | os.PathLike) -> dict[str, tuple[int, bytes]]:
    """Every file under `root` (hidden ones too): relative path -> (mtime_ns, content)."""
    root = Path(root)
    return {str(p.relative_to(root)): (p.stat().st_mtime_ns, p.read_bytes())
            for p in sorted(root.rglob("*")) if p.is_file()}


def assert_up_to_date(stage: str, output: str | os.PathLike, rc: int, out: str,
                      before: dict[str, tuple[int, bytes]]) -> None:
    """A second identical run: one "up to date" line, exit 0, nothing under `output` touched."""
    assert rc == 0, out
    assert f"cc100 {stage}: up to date ({output})" in out, out
    assert tree_state(output) == before, "an up-to-date output must not be touched"
