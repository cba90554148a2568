"""Applies bench/patches.py's fixes named in $CC100_BENCH_PATCHES in every Python process
(the local runner's workers are fresh interpreters). Used only by bench/bench_corpus.py, which
puts this directory and the repository root on PYTHONPATH."""
import os

if os.environ.get("CC100_BENCH_PATCHES"):
    from bench.patches import apply_from_env

    apply_from_env()
