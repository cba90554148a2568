"""Packaging shim, for Beam's `--setup_file ./setup.py` (Dataflow workers).

`pip install -e .` / `make setup` build the project from pyproject.toml; setuptools runs this
file then, and the plain `setup()` below reads everything from pyproject.toml (nothing changes).

`cc100 corpus --runner DataflowRunner --setup_file ./setup.py` makes Beam run
`python setup.py sdist` here (or `python -m build --sdist` when `build` is installed) and
`pip install` that archive on every worker. The project's own dependencies include torch (GBs of
CUDA wheels on Linux) that no worker needs, so for that build `cc100 corpus` sets
CC100_WORKER_SDIST=1 and this file builds a worker-only distribution instead, `cc100-pipeline`:
the `pipeline` package and what its DoFns import. KenLM's binaries (lmplz, build_binary) are not
needed there: workers only score with the `kenlm` Python module; `cc100 lm` runs lmplz locally.
`kenlm` is an sdist that compiles on each worker at start-up (about a minute); a custom container
(docs/dataflow.md) avoids that.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

from setuptools import find_packages, setup

ROOT = Path(__file__).resolve().parent
WORKER_ENV = "CC100_WORKER_SDIST"
# What pipeline/ imports on workers (apache-beam is in the Dataflow SDK container already, at the
# submitting version). Pins equal pyproject.toml's (tests/pipeline/test_dataflow.py checks).
WORKER_REQUIREMENTS = [
    "fasttext-numpy2==0.10.4",
    "kenlm==0.3.0",
    "sentencepiece==0.2.1",
    "pyarrow>=18,<26",
    "numpy>=1.26,<2.5",
]


def project_version() -> str:
    match = re.search(r'^version\s*=\s*"([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.M)
    return match.group(1) if match else "0.0.0"


def absolute_dist_dir(args: list[str]) -> list[str]:
    """sdist's --dist-dir/-d made absolute: the build below runs in another directory."""
    out, i = [], 0
    while i < len(args):
        arg = args[i]
        if arg in ("--dist-dir", "-d") and i + 1 < len(args):
            out += [arg, os.path.abspath(args[i + 1])]
            i += 2
            continue
        if arg.startswith("--dist-dir="):
            arg = "--dist-dir=" + os.path.abspath(arg.split("=", 1)[1])
        out.append(arg)
        i += 1
    if "sdist" in out and not any(a in ("--dist-dir", "-d") or a.startswith("--dist-dir=") for a in out):
        out += ["--dist-dir", os.path.abspath("dist")]
    return out


def worker_setup() -> None:
    """Build `cc100-pipeline` from a copy of pipeline/ in a directory without pyproject.toml
    (whose [project] table would otherwise take precedence over these arguments)."""
    args = absolute_dist_dir(sys.argv[1:])
    with tempfile.TemporaryDirectory(prefix="cc100-worker-sdist-") as tmp:
        shutil.copytree(ROOT / "pipeline", Path(tmp) / "pipeline",
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "demo_data"))
        cwd = os.getcwd()
        os.chdir(tmp)
        try:
            setup(
                name="cc100-pipeline",
                version=project_version(),
                description="cc100 corpus job code for Beam workers (Dataflow --setup_file)",
                packages=find_packages(include=["pipeline", "pipeline.*"]),
                package_data={"pipeline.writers": ["templates/*.j2"]},
                install_requires=WORKER_REQUIREMENTS,
                python_requires=">=3.10",
                script_args=args,
            )
        finally:
            os.chdir(cwd)


if os.environ.get(WORKER_ENV) == "1":
    worker_setup()
else:
    setup()
