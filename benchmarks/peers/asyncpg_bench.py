#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""asyncpg_bench.py WORKLOAD THREADS -- the PostgreSQL workloads of benchmarks/README.md
(pg-add, pg-sleep) on Python asyncio with asyncpg (Debian's python3-asyncpg), against the server
the PG* variables name.

A task per query in an asyncio.TaskGroup; an asyncio.Semaphore of as many tokens as
connections guards a list of idle connections, the same pool weft's tasks share. Run with
Debian's /usr/bin/python3, where python3-asyncpg installs. One event loop, one thread: it prints
nothing for THREADS > 1, nor for pg-cancel.
"""
import asyncio
import resource
import sys
import time

WORKLOADS = {
    "pg-add": ("SELECT $1::int + 1", 20000, 16, True),
    "pg-sleep": ("SELECT pg_sleep(0.005)", 2000, 64, False),
}


def cpu_s():
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


async def run(name):
    import asyncpg
    sql, queries, nconn, param = WORKLOADS[name]
    # Connected before the interval; everything from the PG* variables.
    idle = [await asyncpg.connect() for _ in range(nconn)]
    sem = asyncio.Semaphore(nconn)
    ok = 0

    async def one(i):
        nonlocal ok
        async with sem:
            conn = idle.pop()
            try:
                if param:
                    if await conn.fetchval(sql, i) == i + 1:
                        ok += 1
                else:
                    await conn.fetchval(sql)
                    ok += 1
            finally:
                idle.append(conn)

    t0, c0 = time.monotonic(), cpu_s()
    async with asyncio.TaskGroup() as tg:
        for i in range(queries):
            tg.create_task(one(i))
    seconds, cpu = time.monotonic() - t0, cpu_s() - c0
    print(f"{name} threads=1 seconds={seconds:.6f} check={ok} conns={nconn} "
          f"client_cpu_us_per_query={cpu * 1e6 / queries:.3f}", flush=True)
    for c in idle:
        await c.close()
    return ok == queries


def main():
    if len(sys.argv) != 3:
        sys.stderr.write("usage: asyncpg_bench.py pg-add|pg-sleep THREADS\n")
        return 2
    if sys.argv[1] not in WORKLOADS or sys.argv[2] != "1":
        return 0  # not expressed: pg-cancel, or more than one thread
    return 0 if asyncio.run(run(sys.argv[1])) else 1


if __name__ == "__main__":
    sys.exit(main())
