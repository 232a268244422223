#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Checks `tools/bench --report DIR --results FILE` on canned results, without running a benchmark:
every workload of tools/bench's WORKLOADS and IO_WORKLOADS (those added later too) gets its
chart, drawn by gnuplot and referenced by report.md, the scaling runs get their speed-up chart,
the ratios their chart; --help describes every workload; and with gnuplot missing the report
fails and says why instead of passing without charts. Also the rayon peer's build where it
cannot be built (no cargo, a cargo that fails): it is left out with the reason, and the run goes
on without it.

    bench_report.py TOOLS_BENCH WORK_DIR
"""
import importlib.machinery
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys

sys.dont_write_bytecode = True  # no __pycache__ beside tools/bench
failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print(f"FAIL: {what}", file=sys.stderr)


def load(path):
    loader = importlib.machinery.SourceFileLoader("bench", path)
    spec = importlib.util.spec_from_loader("bench", loader)
    mod = importlib.util.module_from_spec(spec)
    loader.exec_module(mod)
    return mod


def canned(bench):
    """A results document as --report saves it: weft, tbb, rayon and go on every workload, a failed
    cell, an n/a one, scaling runs at 1, 2 and 4 workers, every I/O case."""
    cells = []

    def cell(case, t, system, values, runs=3, failed=0, na=False):
        cells.append({"case": case, "threads": t, "system": system, "runs": runs,
                      "failed": failed, "na": na, "values": values})

    for k, wl in enumerate(bench.WORKLOADS + bench.PG_WORKLOADS):
        counts = [1, 2, 4] if wl.name in bench.SCALES else [1, 4] if wl.all_threads else [1]
        for t in counts:
            for j, s in enumerate(("weft", "tbb", "rayon", "go")):
                base = (k + 1) * (j + 1) * 0.01 / t
                vals = {key: [base * (1 + i / 10) * (1000 if key != wl.metric else 1)
                              for i in range(3)] for key in (wl.metric,) + wl.extras}
                cell(wl.name, t, s, vals)
    cell("fib", 1, "asyncio", {}, runs=0, na=True)
    cell("fib", 4, "asyncio", {}, runs=0, na=True)
    cell("pfor", 4, "asyncio", {}, runs=2, failed=1)
    io = []
    for wl in bench.IO_WORKLOADS:
        for c in wl.conns:
            for t in (1, 4):
                for j, s in enumerate(wl.systems):
                    io.append({"case": f"{wl.name} c={c}", "threads": t, "system": s, "runs": 3,
                               "failed": 0, "na": False,
                               "values": {"rps": [1e5 * (j + 1), 1.1e5 * (j + 1), 1.2e5 * (j + 1)],
                                          "p50_ms": [1, 1.1, 1.2], "p99_ms": [5, 6, 7],
                                          "per_cpu_s": [2e5, 2.1e5, 2.2e5]}})
    return {"format": 1, "created": "canned", "command": "bench_report.py", "nproc": 4,
            "machine": [["CPU", "canned"]], "scaling": sorted(bench.SCALES),
            "cpu": {"systems": ["weft", "tbb", "rayon", "go", "asyncio"], "missing": {},
                    "cells": cells},
            "io": {"systems": bench.IO_SYSTEMS, "missing": {}, "cells": io},
            "failures": ["pfor asyncio T=4 run 1: canned failure"]}


def chart_ok(path):
    """An SVG that gnuplot wrote with at least one plotted data set in it."""
    try:
        with open(path) as f:
            svg = f.read()
    except OSError:
        return False
    return "<svg" in svg and "gnuplot_plot_1" in svg


def check_rayon_missing(bench, tool, work):
    """The rayon peer without a usable toolchain: build_rayon says why instead of raising, and
    tools/bench runs on without rayon (a table that names it as not run, exit 0)."""
    check("rayon" in bench.CPU_SYSTEMS, "rayon is not a system of tools/bench")
    saved = (bench.PEERS_OUT, bench.DEBIAN_REGISTRY, os.environ.get("WEFT_BENCH_CARGO"))
    try:
        bench.PEERS_OUT = os.path.join(work, "peers")
        os.makedirs(bench.PEERS_OUT)
        os.environ["WEFT_BENCH_CARGO"] = os.path.join(work, "nowhere", "cargo")
        cmd, why = bench.build_rayon()
        check(cmd is None and why and "nowhere/cargo" in why, f"no cargo: got {cmd}, {why}")

        # A toolchain that is there but fails, and a registry that has rayon: the build runs,
        # fails, and the reason names the rustc.
        tc = os.path.join(work, "toolchain")
        os.makedirs(tc)
        for name, body in (("cargo", "echo 'error: cannot build' >&2; exit 101"),
                           ("rustc", "echo 'rustc 0.0.1 (canned)'")):
            with open(os.path.join(tc, name), "w") as f:
                f.write(f"#!/bin/sh\n{body}\n")
            os.chmod(os.path.join(tc, name), 0o755)
        bench.DEBIAN_REGISTRY = os.path.join(work, "registry")
        os.makedirs(os.path.join(bench.DEBIAN_REGISTRY, "rayon-1.0.0"))
        os.environ["WEFT_BENCH_CARGO"] = os.path.join(tc, "cargo")
        cmd, why = bench.build_rayon()
        check(cmd is None and why and "does not build with rustc 0.0.1" in why,
              f"a failing cargo: got {cmd}, {why}")
        check(not os.path.exists(os.path.join(bench.PEERS_OUT, "rayon_bench")),
              "a failed build left a rayon_bench")
    finally:
        bench.PEERS_OUT, bench.DEBIAN_REGISTRY = saved[0], saved[1]
        if saved[2] is None:
            os.environ.pop("WEFT_BENCH_CARGO", None)
        else:
            os.environ["WEFT_BENCH_CARGO"] = saved[2]

    # The whole tool: rayon alone and not buildable is a table that says why, and exit 0.
    env = dict(os.environ, WEFT_BENCH_CARGO=os.path.join(work, "nowhere", "cargo"))
    p = subprocess.run([sys.executable, tool, "--no-setup", "--no-build", "--system", "rayon",
                        "--workload", "fib-serial", "--runs", "1"], env=env,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=60)
    check(p.returncode == 0, f"tools/bench without rayon's toolchain exited {p.returncode}")
    check("not run: rayon (no " in p.stdout and "nowhere/cargo" in p.stdout,
          f"tools/bench does not say why rayon did not run: {p.stdout[-1000:]}")


def check_uring_missing(bench, tool, work):
    """The io_uring peers without liburing: build_uring_peer says why, and tools/bench leaves
    them out with the reason (exit 0) instead of failing their cells."""
    check("uring" in bench.IO_SYSTEMS and "uring-poll" in bench.IO_SYSTEMS,
          "uring and uring-poll are not I/O systems of tools/bench")
    check("uring" not in bench.IO_DEFAULT, "the io_uring peers run without being named")
    saved = os.environ.get("WEFT_BENCH_LIBURING")
    try:
        os.environ["WEFT_BENCH_LIBURING"] = os.path.join(work, "nowhere", "liburing.h")
        for poll in (False, True):
            exe, why = bench.build_uring_peer("echo", poll)
            check(exe is None and why == bench.NO_LIBURING, f"no liburing: got {exe}, {why}")
    finally:
        if saved is None:
            os.environ.pop("WEFT_BENCH_LIBURING", None)
        else:
            os.environ["WEFT_BENCH_LIBURING"] = saved

    env = dict(os.environ, WEFT_BENCH_LIBURING=os.path.join(work, "nowhere", "liburing.h"))
    p = subprocess.run([sys.executable, tool, "--no-setup", "--no-build", "--system",
                        "uring,uring-poll", "--workload", "http,echo", "--runs", "1"], env=env,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=60)
    check(p.returncode == 0, f"tools/bench without liburing exited {p.returncode}: "
          f"{p.stdout[-1000:]}")
    for s in ("uring", "uring-poll"):
        check(f"bench: {s} left out: liburing is not installed" in p.stdout,
              f"tools/bench does not say why {s} did not run: {p.stdout[-1000:]}")
    check("FAILED" not in p.stdout, f"a left-out io_uring peer failed a cell: {p.stdout[-1000:]}")


def main():
    tool, work = sys.argv[1], sys.argv[2]
    bench = load(tool)
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    results = os.path.join(work, "results.json")
    with open(results, "w") as f:
        json.dump(canned(bench), f)

    check(bench.scale_counts(1) == [1] and bench.scale_counts(6) == [1, 2, 4, 6]
          and bench.scale_counts(8) == [1, 2, 4, 8], "scale_counts")

    # The CPU speed line warns where the CPUs ran more than 1.1x apart, before or after the runs,
    # and only there; one CPU (or none measured) gives no line.
    even = bench.cpu_speed_line({0: 0.00200, 1: 0.00210}, {0: 0.00205, 1: 0.00200})
    check(even is not None and "cpu0 2; 2.05" in even and "apart" not in even,
          f"cpu_speed_line for CPUs at one speed: {even!r}")
    uneven = bench.cpu_speed_line({0: 0.00200, 1: 0.00201}, {0: 0.00280, 1: 0.00200})
    check(uneven is not None and "1.40x apart" in uneven, f"cpu_speed_line, apart: {uneven!r}")
    missing = bench.cpu_speed_line({0: 0.002, 1: 0.002}, {0: 0.002})
    check(missing is not None and "cpu1 2; -" in missing, f"cpu_speed_line, a CPU lost: {missing!r}")
    check(bench.cpu_speed_line({0: 0.002}, {0: 0.002}) is None, "cpu_speed_line with one CPU")

    out = os.path.join(work, "report")
    p = subprocess.run([sys.executable, tool, "--report", out, "--results", results],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=120)
    check(p.returncode == 0, f"--report --results exited {p.returncode}: {p.stdout[-2000:]}")
    try:
        with open(os.path.join(out, "report.md")) as f:
            md = f.read()
    except OSError as e:
        md = ""
        check(False, f"no report.md: {e}")
    images = re.findall(r"!\[[^]]*\]\(([^)]+)\)", md)
    for img in images:
        check(chart_ok(os.path.join(out, img)), f"{img}: referenced but not a drawn chart")
    cpu_like = bench.WORKLOADS + bench.PG_WORKLOADS
    expected = [bench.file_name(w.name) for w in cpu_like]
    expected += [bench.file_name(f"{w.name}-{k}") for w in cpu_like for k in w.extras]
    expected += [bench.file_name(f"{w.name}-c{c}") for w in bench.IO_WORKLOADS for c in w.conns]
    expected += [f"scaling-{bench.file_name(n)}" for n in bench.SCALES
                 if n in bench.WORKLOAD_BY_NAME]
    expected += ["ratios-T1", "ratios-T4"]
    for name in expected:
        check(f"charts/{name}.svg" in images, f"report.md does not show charts/{name}.svg")
    for w in bench.WORKLOADS + bench.IO_WORKLOADS + bench.PG_WORKLOADS:
        check(f"### {w.name}\n" in md, f"report.md has no section for {w.name}")
    check("FAILED (1/2)" in md, "the failed cell does not show as FAILED")
    check("canned failure" in md, "the failed run is not listed")
    check("| weft | 1.00x" in md, "no speed-up table")
    check("| rayon | 1.00x" in md and "weft/rayon" in md, "rayon is not in the report")

    # --help: one line per workload saying what it measures.
    h = subprocess.run([sys.executable, tool, "--help"], stdout=subprocess.PIPE, text=True,
                       timeout=60).stdout
    for w in bench.WORKLOADS + bench.IO_WORKLOADS + bench.PG_WORKLOADS:
        line = re.search(rf"^  {re.escape(w.name)} +(.+)$", h, re.M)
        check(line is not None and "see benchmarks/README.md" not in line.group(1),
              f"--help does not say what {w.name} measures")

    # Without gnuplot the report must fail and say why, not pass with no charts.
    env = dict(os.environ, PATH=os.path.join(work, "empty-path"))
    out2 = os.path.join(work, "report-nognuplot")
    p = subprocess.run([sys.executable, tool, "--report", out2, "--results", results], env=env,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=120)
    check(p.returncode != 0, "a report without gnuplot exited 0")
    check("gnuplot is not installed" in p.stdout, f"no reason given without gnuplot: {p.stdout}")

    check_rayon_missing(bench, tool, work)
    check_uring_missing(bench, tool, work)

    if failures:
        print(f"{len(failures)} check(s) failed", file=sys.stderr)
        return 1
    print(f"ok: {len(images)} charts")
    return 0


if __name__ == "__main__":
    sys.exit(main())
