#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""asyncio_bench.py WORKLOAD THREADS -- the Python asyncio peer of weft_bench
(benchmarks/README.md).

asyncio's TaskGroup, Semaphore and to_thread are the patterns weft brings to C, so this peer
shows what they cost where they come from. An event loop runs on one thread: the peer answers
for THREADS=1 only and prints nothing otherwise, as for any workload it cannot express.
"""
import asyncio
import os
import resource
import sys
import threading
import time

SEMFAN_TASKS = 100_000
SEMFAN_TOKENS = 64
BLOCKING_CALLS = 10_000


def rss_now():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGESIZE")


def rss_peak():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


async def semfan():
    counter = 0
    sem = asyncio.Semaphore(SEMFAN_TOKENS)

    async def task():
        nonlocal counter
        async with sem:
            await asyncio.sleep(0)  # asyncio's yield
            counter += 1

    t0 = time.monotonic()
    async with asyncio.TaskGroup() as tg:
        for _ in range(SEMFAN_TASKS):
            tg.create_task(task())
    return time.monotonic() - t0, counter, SEMFAN_TASKS, {}


class _Stop(Exception):
    """Raised in the TaskGroup body: the group cancels every child, waits, and re-raises."""


async def park(n, time_cancel):
    parked = 0
    cancelled = 0

    async def sleeper():
        nonlocal parked, cancelled
        parked += 1
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled += 1
            raise

    rss_before = rss_now()
    t0 = time.monotonic()
    t_parked = t1 = t2 = 0.0
    rss_per_task = 0.0
    try:
        async with asyncio.TaskGroup() as tg:
            for _ in range(n):
                tg.create_task(sleeper())
            while parked < n:
                await asyncio.sleep(0)
            for _ in range(8):
                await asyncio.sleep(0)
            t_parked = time.monotonic() - t0
            rss_per_task = (rss_peak() - rss_before) / n
            t1 = time.monotonic()
            raise _Stop()
    except* _Stop:
        t2 = time.monotonic()
    seconds = t2 - t1 if time_cancel else t_parked
    return seconds, cancelled, n, {"rss_per_task": f"{rss_per_task:.0f}"}


def trivial():
    return 0


async def blocking():
    t0 = time.monotonic()
    done = 0
    for _ in range(BLOCKING_CALLS):
        if await asyncio.to_thread(trivial) == 0:
            done += 1
    s = time.monotonic() - t0
    return s, done, BLOCKING_CALLS, {"ns_per_op": f"{s * 1e9 / BLOCKING_CALLS:.1f}"}


def blocking_thread():
    """The naive baseline: a thread created and joined per call."""
    t0 = time.monotonic()
    done = 0
    for _ in range(BLOCKING_CALLS):
        t = threading.Thread(target=trivial)
        t.start()
        t.join()
        done += 1
    s = time.monotonic() - t0
    return s, done, BLOCKING_CALLS, {"ns_per_op": f"{s * 1e9 / BLOCKING_CALLS:.1f}"}


WORKLOADS = {
    "semfan": lambda: asyncio.run(semfan()),
    "cancel": lambda: asyncio.run(park(100_000, True)),
    "million": lambda: asyncio.run(park(1_000_000, False)),
    "blocking": lambda: asyncio.run(blocking()),
    "blocking-pthread": blocking_thread,
}


def main():
    if len(sys.argv) != 3:
        print("usage: asyncio_bench.py WORKLOAD THREADS", file=sys.stderr)
        return 2
    workload, threads = sys.argv[1], int(sys.argv[2])
    # TaskGroup and except* arrived in 3.11; before that the peer cannot express the patterns.
    if threads != 1 or workload not in WORKLOADS or sys.version_info < (3, 11):
        return 0
    seconds, check, expect, extra = WORKLOADS[workload]()
    line = f"{workload} threads={threads} seconds={seconds:.6f} check={check}"
    for key, value in extra.items():
        line += f" {key}={value}"
    print(line, flush=True)
    if check != expect:
        print(f"asyncio_bench: {workload}: check {check}, expected {expect}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
