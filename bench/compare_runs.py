"""Two `cc100 pretrain` runs of one config, step by step: how far apart are their losses?

Used by bench/gpu_check.sh to compare an unbroken run with one that was stopped after a
checkpoint and resumed. On a CPU the two are bit-identical (tests/train/test_trainer.py); on a
GPU, kernels that reduce in a nondeterministic order (atomics in embedding and attention
backward) let them drift apart by rounding, so this reports the largest differences instead.

    python -m bench.compare_runs RUN_A RUN_B [--from-step N] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pipeline.contracts import TRAINING_LOG

KEYS = ("loss", "mlm_accuracy", "grad_norm", "val_loss")


def read_log(run: Path) -> dict[int, dict]:
    records = {}
    for line in (run / TRAINING_LOG).read_text(encoding="utf-8").splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:  # a line cut by a kill
            continue
        if "step" in rec:
            records[rec["step"]] = rec  # a resumed run's later record of a step wins
    return records


def distance(x, y) -> float:
    """|x - y|; for per-language values (val_loss) the largest over the languages of both."""
    if isinstance(x, dict) or isinstance(y, dict):
        x, y = x if isinstance(x, dict) else {}, y if isinstance(y, dict) else {}
        return max((abs(x[k] - y[k]) if k in x and k in y else float("inf") for k in set(x) | set(y)),
                   default=0.0)
    return abs(x - y)


def compare(a: dict[int, dict], b: dict[int, dict], from_step: int = 1) -> dict:
    steps = sorted(s for s in set(a) & set(b) if s >= from_step)
    out = {"steps_compared": len(steps), "first": steps[0] if steps else None,
           "last": steps[-1] if steps else None, "only_in_a": sorted(set(a) - set(b)),
           "only_in_b": sorted(set(b) - set(a))}
    for key in KEYS:
        diffs = [(distance(a[s][key], b[s][key]), s) for s in steps if key in a[s] and key in b[s]]
        if diffs:
            worst, at = max(diffs)
            out[key] = {"max_abs_diff": worst, "at_step": at, "identical": worst == 0.0,
                        "final_a": a[steps[-1]].get(key), "final_b": b[steps[-1]].get(key)}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.compare_runs", description=__doc__.split("\n\n")[0])
    parser.add_argument("run_a", type=Path)
    parser.add_argument("run_b", type=Path)
    parser.add_argument("--from-step", type=int, default=1)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    try:
        result = compare(read_log(args.run_a), read_log(args.run_b), args.from_step)
    except OSError as e:
        print(f"compare_runs: {e}", file=sys.stderr)
        return 2
    for key in KEYS:
        if key in result:
            r = result[key]
            print(f"{key:>13}: max |a-b| {r['max_abs_diff']:.3g} (step {r['at_step']}), "
                  f"final {r['final_a']} vs {r['final_b']}")
    print(f"{result['steps_compared']} steps compared ({result['first']}..{result['last']})")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    return 0 if result["steps_compared"] else 1


if __name__ == "__main__":
    sys.exit(main())
