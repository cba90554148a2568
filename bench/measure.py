"""Shared helpers of the benchmarks: run a command and measure it, medians, machine description."""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import threading
import time
from dataclasses import asdict, dataclass


@dataclass
class ProcessRun:
    command: list[str]
    returncode: int
    wall_s: float
    cpu_s: float  # user + sys of the process and every descendant it waited for
    peak_tree_rss_mb: float  # largest sum of RSS over the process tree (sampled every 0.1 s)
    peak_process_rss_mb: float  # largest RSS of any single process (kernel's ru_maxrss or sampled)
    peak_root_rss_mb: float  # the launched process itself (the Beam runner / driver)
    peak_child_rss_mb: float  # the largest descendant (a Beam worker process), 0 if none
    load_before: float
    load_after: float
    output_tail: str

    def to_dict(self) -> dict:
        return asdict(self)


def run_measured(command: list[str], env: dict | None = None, cwd: str | None = None,
                 interval: float = 0.1) -> ProcessRun:
    """Run `command` to completion; wall and CPU time, peak memory of the whole process tree.

    CPU time comes from wait4's rusage, which includes every descendant the child waited for
    (Beam's worker processes), so it is exact; memory is sampled with psutil.
    """
    import psutil

    load_before = os.getloadavg()[0]
    out_path = f"/tmp/cc100-bench-run-{os.getpid()}-{time.monotonic_ns()}.log"
    peak_tree, peak_proc, peak_root, peak_child = 0, 0, 0, 0
    stop = threading.Event()
    with open(out_path, "w+b") as out:
        t0 = time.perf_counter()
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=cwd)

        def sample():
            nonlocal peak_tree, peak_proc, peak_root, peak_child
            try:
                root = psutil.Process(proc.pid)
            except psutil.NoSuchProcess:
                return
            while not stop.is_set():
                try:
                    procs = [root, *root.children(recursive=True)]
                    rss = []
                    for i, p in enumerate(procs):
                        try:
                            value = p.memory_info().rss
                        except psutil.Error:
                            continue
                        rss.append(value)
                        if i == 0:
                            peak_root = max(peak_root, value)
                        else:
                            peak_child = max(peak_child, value)
                    peak_tree = max(peak_tree, sum(rss))
                    peak_proc = max(peak_proc, max(rss, default=0))
                except psutil.Error:
                    pass
                stop.wait(interval)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        stop.set()
        sampler.join()
        out.seek(0)
        tail = out.read()[-3000:].decode("utf-8", "replace")
    os.unlink(out_path)
    return ProcessRun(
        command=command, returncode=proc.returncode, wall_s=wall,
        cpu_s=usage.ru_utime + usage.ru_stime,
        peak_tree_rss_mb=peak_tree / 2**20,
        peak_process_rss_mb=max(peak_proc / 2**20, usage.ru_maxrss / 1024),
        peak_root_rss_mb=peak_root / 2**20, peak_child_rss_mb=peak_child / 2**20,
        load_before=load_before, load_after=os.getloadavg()[0], output_tail=tail)


def median(values) -> float:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else float("nan")


def spread(values) -> str:
    """'min-max' of a list, for the noise column."""
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    return f"{min(values):.3g}-{max(values):.3g}"


def machine() -> dict:
    """nproc, CPU model, memory, load: what every figure in docs/benchmarks.md is quoted with."""
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem_gb = None
    try:
        with open("/proc/meminfo") as f:
            mem_gb = round(int(f.readline().split()[1]) / 2**20, 1)
    except (OSError, ValueError, IndexError):
        pass
    return {"nproc": os.cpu_count(), "cpu_model": model or platform.processor(), "mem_gb": mem_gb,
            "loadavg": [round(x, 2) for x in os.getloadavg()], "python": platform.python_version(),
            "time": time.strftime("%Y-%m-%d %H:%M:%S")}
