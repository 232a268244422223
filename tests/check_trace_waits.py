# SPDX-License-Identifier: MIT
"""Checks the trace of tests/stress/trace_waits.c: usage check_trace_waits.py FILE FD.

Its tasks, named, each start and end once; "sleeper" parks on a sleep and "reader" on reading
descriptor FD, each woken and resumed after; "yielder" yields three times (three slices end
"yield", three resume); the scope slice carries its name; the slices of the worker nest.
"""
import collections
import json
import sys


def main():
    path, fd = sys.argv[1], int(sys.argv[2])
    with open(path) as f:
        events = json.load(f)["traceEvents"]
    problems = []
    ids = {}  # task name -> id, from the starts
    runs = collections.Counter()  # (id, run) of the task slices' begins and ends
    parks, wakes, stack = {}, set(), []
    for e in events:
        ph, args = e["ph"], e.get("args", {})
        if ph == "B":
            stack.append((e["cat"], args.get("id", args.get("scope"))))
            if e["cat"] == "task" and args["run"] == "start":
                ids[e["name"]] = args["id"]
        elif ph == "E":
            top = stack.pop() if stack else None
            if top != (e["cat"], args.get("id", args.get("scope"))):
                problems.append("an end that closes %r: %r" % (top, e))
        if e.get("cat") == "task":
            runs[(args["id"], args["run"])] += 1
        if e.get("name") == "park":
            parks[args["id"]] = args
        if e.get("name") == "wake":
            wakes.add(args["id"])
    if stack:
        problems.append("slices never end: %r" % stack)
    for name in ("sleeper", "reader", "writer", "yielder"):
        if name not in ids:
            problems.append("no task %s" % name)
            continue
        i = ids[name]
        if runs[(i, "start")] != 1 or runs[(i, "end")] != 1:
            problems.append("%s: %d starts, %d ends" % (name, runs[(i, "start")], runs[(i, "end")]))
    want = {"sleeper": ("sleep", None), "reader": ("fd-read", fd)}
    for name, (on, arg) in want.items():
        p = parks.get(ids.get(name))
        if p is None or p["on"] != on or (arg is not None and p.get("fd") != arg):
            problems.append("%s's park: %r, expected on %s %s" % (name, p, on, arg or ""))
        if ids.get(name) not in wakes:
            problems.append("%s was not woken" % name)
        if runs[(ids.get(name), "park")] != 1 or runs[(ids.get(name), "resume")] != 1:
            problems.append("%s: slices ended by its park and resumed: %d, %d"
                            % (name, runs[(ids.get(name), "park")],
                               runs[(ids.get(name), "resume")]))
    y = ids.get("yielder")
    if runs[(y, "yield")] != 3 or runs[(y, "resume")] != 3:
        problems.append("yielder: %d yields, %d resumes" % (runs[(y, "yield")], runs[(y, "resume")]))
    if not any(e.get("name") == "scope waits-scope-of-24-bytes!" for e in events):
        problems.append("no scope slice named after the scope")
    for p in problems[:20]:
        print(p)
    print("%d events, %s" % (len(events), "FAIL" if problems else "ok"))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
