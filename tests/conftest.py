"""Shared fixtures. `shared_data` is the only way tests reach ../shared/data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def locate_shared_data() -> Path | None:
    env = os.environ.get("CC100_SHARED_DATA")
    candidate = Path(env) if env else REPO_ROOT.parent / "shared" / "data"
    return candidate if candidate.is_dir() else None


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Real public data for tests (Common Crawl WET samples, reference text, cc_net cutoffs)."""
    path = locate_shared_data()
    if path is None:
        pytest.skip(
            "shared test data not found: set CC100_SHARED_DATA or place it at ../shared/data "
            "beside the repository (see its SOURCES.md)"
        )
    return path


@pytest.fixture(scope="session")
def kenlm_tools() -> tuple:
    """KenLM's lmplz and build_binary (built by `make tools`); skips with the reason when absent."""
    from pipeline.utils.tools import ToolNotFoundError, find_tool

    try:
        return find_tool("lmplz"), find_tool("build_binary")
    except ToolNotFoundError as e:
        pytest.skip(str(e))
