"""`make demo`: the README's first command runs the whole chain offline on the bundled sample."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.slow


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_demo_runs_every_stage_and_exports_a_loadable_model(tmp_path):
    demo = tmp_path / "demo"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(
        ["make", "--no-print-directory", "demo", f"DEMO={demo}", f"PYTHON={sys.executable}"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=1500,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    stats = json.loads((demo / "corpus" / ".cc100" / "stats.json").read_text())
    languages = stats["languages"]["documents_by_language"]
    assert len(languages) >= 8, languages
    assert stats["counters"]["duplicate_lines_removed"] > 0  # the bundled site boilerplate
    assert (demo / "corpus" / ".cc100" / "report" / "index.html").is_file()
    assert (demo / "vocab" / "sentencepiece.bpe.model").is_file()
    assert json.loads((demo / "shards" / "manifest.json").read_text())
    log = [json.loads(line) for line in (demo / "run" / "log.jsonl").read_text().splitlines()]
    losses = [row["loss"] for row in log if "loss" in row]
    assert losses[-1] < losses[0] - 0.5, losses  # it learned something
    # the summary at the end names where things are
    assert str(demo / "run" / "hf") in proc.stdout

    transformers = pytest.importorskip("transformers")
    model = transformers.XLMRobertaForMaskedLM.from_pretrained(demo / "run" / "hf")
    tokenizer = transformers.AutoTokenizer.from_pretrained(demo / "run" / "hf")
    batch = tokenizer(["The city is on the <mask> of the river."], return_tensors="pt")
    assert model(**batch).logits.shape[-1] == len(tokenizer)
