# SPDX-License-Identifier: MIT
"""Checks a weft trace file: usage check_trace.py FILE TASKS [NAME [written]].

The file must parse as JSON (Chrome trace-event format); it must hold, for exactly TASKS task
ids, one start (a task slice begun with run "start") and one end (ended with run "end" or
"unrun") each; the slices of each worker thread must nest (every end closes a begin) and their
times must not go back. With NAME, a task slice of that name must be there. With "written",
the workers must have written full buffers out while they ran (the metadata says how many), so
that the events read back from those files are checked too.
"""
import collections
import json
import sys


def main():
    path, tasks = sys.argv[1], int(sys.argv[2])
    with open(path) as f:
        trace = json.load(f)
    events = trace["traceEvents"]
    starts, ends = collections.Counter(), collections.Counter()
    depth, last_ts = collections.Counter(), {}
    problems = []
    for e in events:
        ph, tid = e["ph"], e.get("tid")
        if ph in ("B", "E"):
            depth[tid] += 1 if ph == "B" else -1
            if depth[tid] < 0:
                problems.append("an end without a begin on thread %s: %r" % (tid, e))
                depth[tid] = 0
            if e["ts"] < last_ts.get(tid, 0):
                problems.append("time goes back on thread %s: %r" % (tid, e))
            last_ts[tid] = e["ts"]
        if e.get("cat") != "task":
            continue
        run = e["args"]["run"]
        if ph == "B" and run == "start":
            starts[e["args"]["id"]] += 1
        elif ph == "E" and run in ("end", "unrun"):
            ends[e["args"]["id"]] += 1
    for tid, d in depth.items():
        if d:
            problems.append("thread %s: %d slices never end" % (tid, d))
    if len(starts) != tasks:
        problems.append("%d task ids start, expected %d" % (len(starts), tasks))
    if set(starts) != set(ends):
        problems.append("ids that start and ids that end differ: %d start only, %d end only"
                        % (len(set(starts) - set(ends)), len(set(ends) - set(starts))))
    twice = [i for i, n in list(starts.items()) + list(ends.items()) if n != 1]
    if twice:
        problems.append("ids started or ended more than once: %r" % twice[:10])
    if trace.get("metadata", {}).get("weft-lost-events", 0):
        problems.append("events lost: %r" % trace["metadata"])
    if len(sys.argv) > 3:
        want = sys.argv[3]
        if not any(e.get("cat") == "task" and e.get("name") == want for e in events):
            problems.append("no task slice named %r" % want)
    if len(sys.argv) > 4 and sys.argv[4] == "written":
        if not trace.get("metadata", {}).get("weft-buffers-written", 0):
            problems.append("no buffer was written out while the workers ran: %r"
                            % trace.get("metadata"))
    names = {e["args"]["name"] for e in events if e.get("name") == "thread_name"}
    if not {"weft-w0", "weft-w1"} <= names:
        problems.append("thread names: %r" % names)
    for p in problems[:20]:
        print(p)
    print("%d events, %d tasks, %s" % (len(events), len(starts), "FAIL" if problems else "ok"))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
