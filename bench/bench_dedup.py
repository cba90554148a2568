"""The dedup stage alone as the input grows (1x, 4x, 16x): time and peak memory per worker.

Input: SCALE files of --docs documents each, synthesised with bench.synth_wet (seed = file index,
so sites and boilerplate differ from file to file, as different WET segments do). For every
scale two Beam pipelines run in a subprocess on the local runner, interleaved per repeat:

  read    WET files -> Documents -> count                     (what the dedup stage is fed)
  dedup   WET files -> Documents -> DedupParagraphs -> count  (pipeline/dedup/paragraphs.py, one group)

dedup - read is the stage's own cost. Peak memory is the largest RSS of any process of the
tree (with --workers 1 the in-memory runner is one process: it holds every PCollection between
stages, so its memory includes the shuffled data; with --workers 2 the worker processes are
separate).

    python -m bench.bench_dedup --docs 2500 --scales 1,4,16 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from bench.measure import machine, median, run_measured, spread

REPO = Path(__file__).resolve().parents[1]


def build(p, files: list[str], dedup: bool, min_len: int = 300):
    """The pipeline of one measurement; writes the document count to a text file."""
    import apache_beam as beam

    from pipeline.dedup.paragraphs import DedupParagraphs
    from pipeline.readers.wet import WetFileReport, read_wet_file

    def read(path):
        yield from read_wet_file(path, min_len, WetFileReport(path))

    docs = p | "Files" >> beam.Create(files) | "Reshuffle" >> beam.Reshuffle() | "Read" >> beam.FlatMap(read)
    if dedup:
        docs = docs | "Dedup" >> DedupParagraphs(files)
    return docs | "Count" >> beam.combiners.Count.Globally()


def run_once(files: list[str], workers: int, dedup: bool, out: str) -> None:
    import apache_beam as beam
    from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions
    from apache_beam.runners.portability.fn_api_runner import fn_runner

    options = PipelineOptions([])
    direct = options.view_as(DirectOptions)
    direct.direct_num_workers = workers
    direct.direct_running_mode = "multi_processing" if workers > 1 else "in_memory"
    with beam.Pipeline(runner=fn_runner.FnApiRunner(), options=options) as p:
        count = build(p, files, dedup)
        _ = count | beam.Map(lambda n: Path(out).write_text(str(n)))


def make_inputs(work: Path, docs: int, n_files: int, data_dir) -> list[str]:
    from bench.synth_wet import SynthConfig, synthesize

    files = []
    for i in range(n_files):
        path = work / f"dedup-{docs}-{i:03d}.warc.wet.gz"
        if not path.exists():
            synthesize(path, SynthConfig(docs=docs, seed=1000 + i), data_dir)
        files.append(str(path))
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_dedup", description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=2500, help="documents per file (1x = one file)")
    parser.add_argument("--scales", default="1,4,16", help="numbers of files (default 1,4,16)")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--work-dir", default="/tmp/cc100-bench/dedup")
    parser.add_argument("--data", default=None, help="shared data dir (default: ../shared/data)")
    parser.add_argument("--json", default=None)
    parser.add_argument("--report", metavar="JSON", help="only re-print the table of an earlier --json run")
    # internal: one measured pipeline (run in a subprocess by the driver)
    parser.add_argument("--run-once", nargs="*", metavar="FILE", help=argparse.SUPPRESS)
    parser.add_argument("--mode", choices=("read", "dedup"), help=argparse.SUPPRESS)
    parser.add_argument("--count-file", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.run_once is not None:
        run_once(args.run_once, args.workers, args.mode == "dedup", args.count_file)
        return 0

    if args.report:
        return report(args.report)
    from bench.synth_wet import default_data_dir

    scales = [int(x) for x in args.scales.split(",") if x]
    if not scales or min(scales) < 1 or args.docs < 1 or args.repeats < 1:
        print("bench_dedup: --scales, --docs and --repeats must be positive", file=sys.stderr)
        return 2
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    data_dir = Path(args.data) if args.data else default_data_dir()
    files = make_inputs(work, args.docs, max(scales), data_dir)
    modes = ["read", "dedup"]
    results = {"machine": machine(), "args": vars(args), "runs": []}
    for r in range(args.repeats):
        for scale in scales:
            for mode in modes:
                env = dict(os.environ, PYTHONPATH=str(REPO))
                count_file = str(work / "count.txt")
                cmd = [sys.executable, "-m", "bench.bench_dedup", "--workers", str(args.workers), "--mode", mode,
                       "--count-file", count_file, "--run-once", *files[:scale]]
                res = run_measured(cmd, env=env, cwd=str(REPO))
                if res.returncode != 0:
                    print(f"bench_dedup: {mode} x{scale} failed:\n{res.output_tail}", file=sys.stderr)
                    return 1
                run = {"repeat": r, "scale": scale, "mode": mode,
                       "documents": int(Path(count_file).read_text()), **res.to_dict()}
                results["runs"].append(run)
                print(f"repeat {r + 1} x{scale:<3} {run['mode']:<14} wall {res.wall_s:6.1f}s cpu {res.cpu_s:6.1f}s "
                      f"peak/process {res.peak_process_rss_mb:6.0f} MB (largest worker "
                      f"{res.peak_child_rss_mb:.0f} MB) -> {run['documents']} docs "
                      f"(load {res.load_before:.2f})", flush=True)
    results["machine_end"] = machine()
    print()
    print(format_table(results, scales, modes))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, default=str))
        print(f"\nall measurements: {args.json}")
    return 0


def format_table(results: dict, scales, modes) -> str:
    """Medians per (scale, mode); the stage's own CPU = dedup CPU - read CPU, per input document."""
    runs = results["runs"]

    def pick(scale, mode, key):
        return [x[key] for x in runs if x["scale"] == scale and x["mode"] == mode]

    lines = [f"{'scale':>5} {'mode':<14} {'docs':>7} {'wall s':>7} {'spread':>12} {'cpu s':>6} "
             f"{'stage cpu s':>11} {'ms/doc':>7} {'runner MB':>9} {'worker MB':>9} {'worker MB/1x':>12}"]
    base_worker = {}
    for scale in scales:
        read_cpu = median(pick(scale, "read", "cpu_s"))
        docs = median(pick(scale, "read", "documents"))
        for mode in modes:
            wall, cpu = pick(scale, mode, "wall_s"), median(pick(scale, mode, "cpu_s"))
            root = median(pick(scale, mode, "peak_root_rss_mb"))
            worker = median(pick(scale, mode, "peak_child_rss_mb")) or median(pick(scale, mode, "peak_process_rss_mb"))
            stage = cpu - read_cpu if mode != "read" else cpu
            base_worker.setdefault(mode, worker)
            lines.append(f"{scale:>4}x {mode:<14} {docs:>7.0f} {median(wall):>7.1f} {spread(wall):>12} {cpu:>6.1f} "
                         f"{stage:>11.1f} {1000 * stage / docs:>7.2f} {root:>9.0f} {worker:>9.0f} "
                         f"{worker / base_worker[mode]:>12.2f}")
    return "\n".join(lines)


def report(path: str) -> int:
    """Re-print the table of an earlier --json run."""
    results = json.loads(Path(path).read_text())
    runs = results["runs"]
    scales = sorted({x["scale"] for x in runs})
    modes = list(dict.fromkeys(x["mode"] for x in runs))
    print(format_table(results, scales, modes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
