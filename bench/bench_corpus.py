"""Corpus job throughput: the libraries' own limit, our Beam job (1 and 2 workers), cc_net itself.

Every repeat runs, interleaved so machine load hits all of them alike:

  limit      the raw library calls alone, one core, in this process, on the documents each stage
             really sees: WET parse (pipeline.readers.wet; FastWARC and warcio for reference), normalise +
             SHA-1 per line (once), lid.176 predict (after dedup), cc_net's normalize +
             SentencePiece + KenLM (after LID, languages with a model). Their sum = the limit.
  job        `cc100 corpus --workers N` through its CLI (local FnApiRunner), wall and CPU time
             of the whole process tree, peak memory
  ccnet      facebookresearch/cc_net 1.0.0's own code (bench/ccnet_run.py) in a separate venv:
             hash pass + mine pass of one shard, `run_pipes(processes=N)`

Medians over --repeats; ratios are taken within each repeat, then the median. Both jobs get
--cutoffs (cc_net's table) so neither computes percentiles; our job would otherwise add a
quantile pass that cc_net does not do.

    python -m bench.bench_corpus --input /tmp/cc100-bench/synth-10k.warc.wet.gz \
        --lm-dir /tmp/cc100-bench/lm --repeats 3 --json /tmp/cc100-bench/corpus.json
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import time
from pathlib import Path

from bench.measure import machine, median, run_measured, spread
from pipeline.contracts import part_files

REPO = Path(__file__).resolve().parents[1]
CCNET_PYTHON = "/tmp/ccnet-venv/bin/python"


# -- the limit ---------------------------------------------------------------------------------


class Limit:
    """The libraries' own per-document cost on one core; models are loaded once, outside timing."""

    def __init__(self, paths: list[str], lm_dir: str, lid_model: str | None, min_len: int = 300):
        from pipeline.quality.lid import default_lid_model, load_lid_model
        from pipeline.quality.perplexity import available_languages

        self.paths, self.lm_dir, self.min_len = paths, lm_dir, min_len
        self.lid = load_lid_model(lid_model or default_lid_model())
        self.available = available_languages(lm_dir)
        self.models: dict = {}

    def _models(self, lang):
        from pipeline.quality.perplexity import load_kenlm, load_sentencepiece, model_paths

        if lang not in self.models:
            sp, lm = model_paths(self.lm_dir, lang)
            self.models[lang] = (load_sentencepiece(sp), load_kenlm(lm))
        return self.models[lang]

    def parse_references(self) -> dict:
        """FastWARC and warcio over the same file: records -> text split in lines (no Documents)."""
        from fastwarc.warc import ArchiveIterator, WarcRecordType
        from warcio.archiveiterator import ArchiveIterator as WarcioIterator

        out = {}
        t = time.perf_counter()
        n = 0
        for path in self.paths:
            with open(path, "rb") as f:
                n += sum(len(r.reader.read().decode("utf-8", "replace").split("\n"))
                         for r in ArchiveIterator(f, record_types=WarcRecordType.conversion))
        out["parse_fastwarc"] = time.perf_counter() - t
        t = time.perf_counter()
        m = 0
        for path in self.paths:
            with open(path, "rb") as f:
                m += sum(len(r.content_stream().read().decode("utf-8", "replace").split("\n"))
                         for r in WarcioIterator(f) if r.rec_type == "conversion")
        out["parse_warcio"] = time.perf_counter() - t
        assert n == m, f"FastWARC and warcio disagree on the line count ({n} != {m})"
        return out

    def run(self) -> dict:
        from pipeline.dedup.paragraphs import apply_kept_lines, kept_line_ids, line_hashes
        from pipeline.quality.lid import predict_language
        from pipeline.quality.perplexity import lm_lines, tokenize
        from pipeline.readers.wet import WetFileReport, documents_from_records, iter_wet_records

        times: dict[str, float] = {}
        t = time.perf_counter()
        docs, records = [], 0
        for path in self.paths:
            report = WetFileReport(path)
            with open(path, "rb") as f:
                docs.extend(documents_from_records(iter_wet_records(f, path, report), path, self.min_len, report))
            records += report.conversion_records
        times["parse"] = time.perf_counter() - t

        t = time.perf_counter()
        hashes = [line_hashes(doc.raw_content) for doc in docs]
        times["hash"] = time.perf_counter() - t

        holders = collections.Counter(h for hs in hashes for h in set(hs))  # untimed: ccnet dedup
        removed = {h for h, n in holders.items() if n >= 2}
        deduped = [out for doc, hs in zip(docs, hashes)
                   if (out := apply_kept_lines(doc, kept_line_ids(hs, removed))) is not None]

        t = time.perf_counter()
        predictions = [predict_language(self.lid, doc.raw_content) for doc in deduped]
        times["lid"] = time.perf_counter() - t

        kept = [(doc, p[0]) for doc, p in zip(deduped, predictions)
                if p is not None and p[1] >= 0.5 and p[0] in self.available]
        for _, lang in kept:
            self._models(lang)
        t = time.perf_counter()
        lines = [lm_lines(doc.raw_content) for doc, _ in kept]
        times["normalize"] = time.perf_counter() - t
        t = time.perf_counter()
        pieces = [tokenize(self.models[lang][0], ls) for (_, lang), ls in zip(kept, lines)]
        times["sentencepiece"] = time.perf_counter() - t
        t = time.perf_counter()
        for (_, lang), ps in zip(kept, pieces):
            lm = self.models[lang][1]
            for line in ps:
                lm.score(line)
        times["kenlm"] = time.perf_counter() - t
        times["limit"] = sum(times[k] for k in ("parse", "hash", "lid", "normalize", "sentencepiece", "kenlm"))
        counts = {"records": records, "documents": len(docs), "after_dedup": len(deduped),
                  "scored": len(kept), "lines": sum(map(len, hashes)),
                  "text_bytes": sum(len(d.raw_content.encode("utf-8")) for d in docs)}
        return {"times": times, "counts": counts}


# -- the runs ------------------------------------------------------------------------------------


def job_command(args, workers: int, output: str, input_path: str | None = None) -> list[str]:
    inputs = ["--input", input_path] if input_path else [x for path in args.files for x in ("--input", path)]
    cmd = [str(REPO / ".venv/bin/cc100"), "corpus", *inputs, "--output", output,
           "--overwrite", "--workers", str(workers), "--lm-dir", args.lm_dir, "--cutoffs", args.cutoffs]
    if args.lid_model:
        cmd += ["--lid-model", args.lid_model]
    return cmd


def ccnet_command(args, processes: int, output: str, lid_model: str) -> list[str]:
    return [args.ccnet_python, str(REPO / "bench" / "ccnet_run.py"), "--input", *args.files,
            "--lm-dir", args.lm_dir, "--lid-model", lid_model, "--cutoffs", args.cutoffs,
            "--output", output, "--processes", str(processes)]


def count_parquet_rows(output: str) -> int:
    import pyarrow.parquet as pq

    return sum(pq.ParquetFile(p).metadata.num_rows for p in part_files(output))


def output_digest(output: str) -> str:
    """SHA-1 over the sorted (partition, url, raw_content, line_ids, perplexity) of every row:
    runs with 1 and 2 workers must write the same corpus."""
    import hashlib

    import pyarrow.parquet as pq

    rows = []
    for path in part_files(output):
        partition = "/".join(path.parts[-3:-1])
        table = pq.read_table(path, columns=["url", "raw_content", "line_ids", "perplexity"])
        for r in table.to_pylist():
            rows.append(repr((partition, r["url"], r["raw_content"], r["line_ids"], r["perplexity"])))
    h = hashlib.sha1()
    for row in sorted(rows):
        h.update(row.encode("utf-8", "surrogatepass"))
    return h.hexdigest()


def run(args) -> dict:
    from pipeline.quality.lid import default_lid_model

    lid_model = args.lid_model or default_lid_model()
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    limit = Limit(args.files, args.lm_dir, lid_model)
    results = {"machine_start": machine(), "input": args.files,
               "input_bytes": sum(os.path.getsize(p) for p in args.files), "repeats": []}
    tiny = None
    if args.fixed_cost:  # the same job on a 50-document file: start-up and per-run fixed costs
        from bench.synth_wet import SynthConfig, default_data_dir, synthesize

        tiny = str(work / "fixed-cost-50.warc.wet.gz")
        synthesize(tiny, SynthConfig(docs=50, seed=0), default_data_dir())
    variants = [(f"job w{w}", w) for w in args.workers]
    for r in range(args.repeats):
        rep: dict = {"load": os.getloadavg()[0]}
        print(f"repeat {r + 1}/{args.repeats} (load {rep['load']:.2f})", flush=True)
        lim = limit.run()
        rep["limit"] = lim
        rep["parse_reference"] = limit.parse_references()
        print(f"  limit {lim['times']['limit']:.1f}s " + " ".join(
            f"{k} {v:.2f}" for k, v in lim["times"].items() if k != "limit"), flush=True)
        for name, workers in variants:
            out = str(work / f"out-{name.replace(' ', '-')}")
            res = run_measured(job_command(args, workers, out))
            if res.returncode != 0:
                raise SystemExit(f"{name} failed (exit {res.returncode}):\n{res.output_tail}")
            rep[name] = {**res.to_dict(), "documents_written": count_parquet_rows(out),
                         "output_sha1": output_digest(out)}
            if rep[name]["output_sha1"] != rep[variants[0][0]]["output_sha1"]:
                raise SystemExit(f"{name} wrote a different corpus than {variants[0][0]} (see {out})")
            if tiny:
                fixed = run_measured(job_command(args, workers, out + "-fixed", tiny))
                if fixed.returncode != 0:
                    raise SystemExit(f"{name} on 50 documents failed (exit {fixed.returncode}):\n{fixed.output_tail}")
                rep[name]["fixed_wall_s"], rep[name]["fixed_cpu_s"] = fixed.wall_s, fixed.cpu_s
            print(f"  {name}: wall {res.wall_s:.1f}s cpu {res.cpu_s:.1f}s peak tree "
                  f"{res.peak_tree_rss_mb:.0f} MB, runner {res.peak_root_rss_mb:.0f} MB, largest worker "
                  f"{res.peak_child_rss_mb:.0f} MB"
                  + (f"; fixed cost (50 docs) wall {rep[name]['fixed_wall_s']:.1f}s" if tiny else ""), flush=True)
        if args.ccnet:
            for processes in args.ccnet_processes:
                name = f"ccnet p{processes}"
                res = run_measured(ccnet_command(args, processes, str(work / f"ccnet-p{processes}"), lid_model))
                if res.returncode != 0:
                    raise SystemExit(f"{name} failed (exit {res.returncode}):\n{res.output_tail}")
                detail = json.loads(res.output_tail.strip().splitlines()[-1])
                rep[name] = {**res.to_dict(), **detail}
                print(f"  {name}: wall {res.wall_s:.1f}s cpu {res.cpu_s:.1f}s (hash pass "
                      f"{detail['hash_pass_s']:.1f}s, mine pass {detail['mine_pass_s']:.1f}s), "
                      f"peak {res.peak_process_rss_mb:.0f} MB", flush=True)
        results["repeats"].append(rep)
    results["machine_end"] = machine()
    results["summary"] = summarize(results, variants, args)
    return results


def summarize(results: dict, variants, args) -> dict:
    reps = results["repeats"]
    counts = reps[0]["limit"]["counts"]
    records, mb = counts["records"], counts["text_bytes"] / 1e6
    s: dict = {"records": records, "text_mb": round(mb, 1), "rows": []}

    def row(name, per_rep_seconds, cpu=None, mem=None, ratio_limit=None, ratio_ccnet=None, note=""):
        wall = median(per_rep_seconds)
        s["rows"].append({
            "name": name, "median_s": round(wall, 2), "spread_s": spread(per_rep_seconds),
            "docs_per_s": round(records / wall, 1), "mb_per_s": round(mb / wall, 2),
            "cpu_s": None if cpu is None else round(median(cpu), 2),
            "peak_process_mb": None if mem is None else round(median(mem)),
            "x_limit_per_core": None if ratio_limit is None else round(median(ratio_limit), 2),
            "x_ccnet": None if ratio_ccnet is None else round(median(ratio_ccnet), 2), "note": note})

    for stage in ("parse", "hash", "lid", "normalize", "sentencepiece", "kenlm"):
        row(f"limit: {stage}", [r["limit"]["times"][stage] for r in reps])
    row("limit (sum)", [r["limit"]["times"]["limit"] for r in reps])
    row("reference: FastWARC parse", [r["parse_reference"]["parse_fastwarc"] for r in reps])
    row("reference: warcio parse", [r["parse_reference"]["parse_warcio"] for r in reps])
    ccnet1 = "ccnet p1" if args.ccnet and 1 in args.ccnet_processes else None
    for name, workers in variants:
        # per core: the limit is one core's time; the job had `workers` cores (CPU time is the
        # load-independent view, wall the user's)
        ratio = [r["limit"]["times"]["limit"] / (r[name]["wall_s"] * workers) for r in reps]
        vs_cc = [r[ccnet1]["wall_s"] / r[name]["wall_s"] for r in reps] if ccnet1 else None
        note = (f"{reps[0][name]['documents_written']} documents written; tree peak "
                f"{median([r[name]['peak_tree_rss_mb'] for r in reps]):.0f} MB; limit/CPU "
                f"{median([r['limit']['times']['limit'] / r[name]['cpu_s'] for r in reps]):.2f}")
        if "fixed_wall_s" in reps[0][name]:
            steady = [r["limit"]["times"]["limit"] / ((r[name]["wall_s"] - r[name]["fixed_wall_s"]) * workers)
                      for r in reps]
            note += (f"; fixed cost {median([r[name]['fixed_wall_s'] for r in reps]):.1f}s wall, "
                     f"x limit/core without it {median(steady):.2f}")
        row(name, [r[name]["wall_s"] for r in reps], [r[name]["cpu_s"] for r in reps],
            [r[name]["peak_process_rss_mb"] for r in reps], ratio, vs_cc, note)
    for w in args.workers[1:]:
        a, b = f"job w{args.workers[0]}", f"job w{w}"
        s[f"scaling {a} -> {b}"] = round(median([r[a]["wall_s"] / r[b]["wall_s"] for r in reps]), 2)
    if args.ccnet:
        for p in args.ccnet_processes:
            name = f"ccnet p{p}"
            row(name, [r[name]["wall_s"] for r in reps], [r[name]["cpu_s"] for r in reps],
                [r[name]["peak_process_rss_mb"] for r in reps],
                [r["limit"]["times"]["limit"] / (r[name]["wall_s"] * p) for r in reps], None,
                f"{reps[0][name]['documents_written']} documents written; hash pass "
                f"{median([r[name]['hash_pass_s'] for r in reps]):.1f}s, mine pass "
                f"{median([r[name]['mine_pass_s'] for r in reps]):.1f}s")
    s["load"] = [round(r["load"], 2) for r in reps]
    return s


def format_table(summary: dict) -> str:
    head = (f"{'':<34} {'median s':>9} {'spread':>12} {'docs/s':>8} {'MB/s':>6} {'cpu s':>7} "
            f"{'peak MB':>8} {'x limit/core':>12} {'x cc_net':>9}")
    lines = [f"{summary['records']} records, {summary['text_mb']} MB of text; load per repeat {summary['load']}",
             head, "-" * len(head)]
    for r in summary["rows"]:
        def f(v, fmt):
            return "-" if v is None else format(v, fmt)
        lines.append(f"{r['name']:<34} {r['median_s']:>9.2f} {r['spread_s']:>12} {r['docs_per_s']:>8.0f} "
                     f"{r['mb_per_s']:>6.2f} {f(r['cpu_s'], '.1f'):>7} {f(r['peak_process_mb'], '.0f'):>8} "
                     f"{f(r['x_limit_per_core'], '.2f'):>12} {f(r['x_ccnet'], '.2f'):>9}  {r['note']}")
    for k, v in summary.items():
        if k.startswith("scaling"):
            lines.append(f"{k}: {v}x")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_corpus", description=__doc__.split("\n\n")[0])
    parser.add_argument("--input", required=True, nargs="+",
                        help="WET files or globs (bench.synth_wet makes them); use 2+ files to let "
                        "2 workers share the reading")
    parser.add_argument("--lm-dir", required=True, help="models from `cc100 lm`")
    parser.add_argument("--lid-model", default=None, help="default: the bundled lid.176.ftz")
    parser.add_argument("--cutoffs", default=None,
                        help="cc_net cutoff CSV given to both jobs (default: ../shared/data/ccnet_cutoff.csv)")
    parser.add_argument("--workers", default="1,2", help="worker counts of our job (default 1,2)")
    parser.add_argument("--no-ccnet", dest="ccnet", action="store_false", help="skip cc_net")
    parser.add_argument("--ccnet-python", default=CCNET_PYTHON, help=f"venv with cc-net (default {CCNET_PYTHON})")
    parser.add_argument("--ccnet-processes", default="1", help="cc_net run_pipes processes (default 1)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-fixed-cost", dest="fixed_cost", action="store_false",
                        help="skip the 50-document runs that measure the job's fixed start-up cost")
    parser.add_argument("--work-dir", default="/tmp/cc100-bench/corpus-runs")
    parser.add_argument("--json", default=None, help="write all measurements here")
    args = parser.parse_args(argv)
    args.workers = [int(x) for x in args.workers.split(",") if x]
    args.ccnet_processes = [int(x) for x in args.ccnet_processes.split(",") if x]
    if args.cutoffs is None:
        args.cutoffs = str(REPO.parent / "shared" / "data" / "ccnet_cutoff.csv")
    import glob

    args.files = sorted({f for pattern in args.input for f in (glob.glob(pattern) or [pattern])})
    checks = [(f, "--input") for f in args.files] + [(args.lm_dir, "--lm-dir"), (args.cutoffs, "--cutoffs")]
    for path, what in checks:
        if not os.path.exists(path):
            print(f"bench_corpus: {what} {path}: not found", file=sys.stderr)
            return 2
    if args.ccnet and not os.path.exists(args.ccnet_python):
        print(f"bench_corpus: {args.ccnet_python}: no cc_net venv (see bench/README.md) or pass --no-ccnet",
              file=sys.stderr)
        return 2
    if args.repeats < 1:
        print("bench_corpus: --repeats must be >= 1", file=sys.stderr)
        return 2
    results = run(args)
    print()
    print(format_table(results["summary"]))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, default=str))
        print(f"\nall measurements: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
