#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Checks the dump of the known tree that tests/dump_tree.c builds (see there).

Usage: dump_check.py DUMP_TREE_PROGRAM json|text
Runs the program, parses what it wrote and checks every task's and scope's state. Standard
library only. Exit status 0 when all is right; otherwise the first wrong thing and the dump.
"""
import json
import re
import subprocess
import sys

HOUR_NS = 3600 * 10**9
# dump_tree.c's "doomed" scope as the JSON dump writes its name: the byte that is no UTF-8 and
# the letter cut at 31 bytes each as U+FFFD, the whole letters as they are.
DOOMED = "doomed\ufffd--\u043e\u0431\u0440\u0430\u0431\u043e\u0442\u043a\u0430-\u0434\ufffd"


def fail(why, dump):
    sys.stderr.write("dump_check: %s\n--- the dump ---\n%s\n" % (why, dump))
    sys.exit(1)


def run(program, mode):
    p = subprocess.run([program, mode], capture_output=True, text=True, timeout=100)
    if p.returncode != 0:
        fail("%s %s exited with %d: %s" % (program, mode, p.returncode, p.stderr), p.stdout)
    m = re.search(r"^fd (\d+)$", p.stderr, re.M)
    if not m:
        fail("no 'fd N' line on stderr: %r" % p.stderr, p.stdout)
    return p.stdout, int(m.group(1))


def check_json(out, fd):
    try:
        d = json.loads(out)
    except ValueError as e:
        fail("not JSON: %s" % e, out)

    def expect(cond, why):
        if not cond:
            fail(why, out)

    expect(d.get("weft_dump") == 1, "no weft_dump version")
    expect(len(d["workers"]) == 2, "two workers")
    tasks = {t["name"]: t for t in d["tasks"]}
    expect(len(d["tasks"]) == 16, "16 tasks, got %d" % len(d["tasks"]))
    scopes = {s["name"]: s for s in d["scopes"] if s["name"]}
    for name in ("level1", "level2", "level3", "hosted", "nested", DOOMED):
        expect(name in scopes, "scope %s" % name)
    ix = {name: s["index"] for name, s in scopes.items()}
    roots = [s for s in d["scopes"] if s["root"]]
    expect(len(roots) == 1 and roots[0]["parent"] is None, "one root scope, with no parent")
    root = tasks.get("root")
    expect(root is not None, "the root task")

    # Running: the root task (it dumps) and the spinner, on the two workers.
    expect(root["state"] == "running", "root running: %s" % root)
    spin = tasks["spinner"]
    expect(spin["state"] == "running", "spinner running: %s" % spin)
    expect({root["worker"], spin["worker"]} == {0, 1}, "on workers 0 and 1")
    by_worker = {w["index"]: w["task"] for w in d["workers"]}
    expect(by_worker[root["worker"]] == root["id"] and by_worker[spin["worker"]] == spin["id"],
           "the workers' tasks")

    # Parked, each on its own kind of wait.
    def parked(name, on, scope):
        t = tasks[name]
        expect(t["state"] == "parked", "%s parked: %s" % (name, t))
        expect(t["on"] == on, "%s parked on %s: %s" % (name, on, t))
        expect(t["scope"] == ix[scope], "%s in scope %s: %s" % (name, scope, t))
        expect(0 <= t["parked_ns"] < 100 * 10**9, "%s parked for a while: %s" % (name, t))
        return t

    sl = parked("sleeper", "sleep", "level1")
    expect(sl["until_ns"] is not None and 0 < sl["left_ns"] <= HOUR_NS, "sleeper's wake: %s" % sl)
    expect(sl["until_ns"] - d["now_ns"] == sl["left_ns"], "left = until - now")
    expect("object" in sl and sl["object"] is None, "a sleep waits on no object: %s" % sl)
    expect(parked("semwaiter", "sem", "level1")["object"].startswith("0x"), "a semaphore address")
    parked("blocker", "blocking", "level1")
    expect(parked("joiner", "join", "level1")["join_scope"] == ix["level2"], "joiner joins level2")
    parked("chanwaiter", "chan", "level2")
    expect(parked("inner", "join", "level2")["join_scope"] == ix["level3"], "inner joins level3")
    parked("eventwaiter", "event", "level3")
    expect(parked("fdwaiter", "fd_read", "level3")["fd"] == fd, "fdwaiter's descriptor")
    parked("selecter", "select", "level3")
    # Nested joins that run their children inline, on one stack: each joiner hosts its own.
    inl = parked("inlined", "sleep", "nested")
    expect(inl["inline"] is True, "inlined runs inline: %s" % inl)
    mid = tasks["middle"]
    expect(mid["state"] == "hosting" and mid.get("hosting") == inl["id"] and mid["inline"] is True
           and mid["scope"] == ix["hosted"], "middle hosts inlined: %s" % mid)
    ho = tasks["hoster"]
    expect(ho["state"] == "hosting" and ho.get("hosting") == mid["id"] and
           ho["scope"] == ix["level1"], "hoster hosts middle: %s" % ho)
    late = tasks["latecomer"]
    expect(late["state"] == "unstarted" and late["scope"] == ix["level1"] and "on" not in late,
           "latecomer unstarted: %s" % late)
    dm = tasks["doomer"]
    expect(dm["state"] == "parked" and dm["on"] == "join" and dm["join_scope"] == ix[DOOMED],
           "doomer joins doomed: %s" % dm)
    expect(spin["scope"] == ix[DOOMED], "spinner in doomed")
    expect(dm["scope"] == root["scope"], "doomer beside the root task")

    # The scopes: three levels, owners, policies, deadlines, the limit, the cancel.
    l1, l2, l3, doomed = (scopes[n] for n in ("level1", "level2", "level3", DOOMED))
    expect(l1["parent"] == root["scope"] and l1["owner"] == root["id"], "level1's place")
    expect(l2["parent"] == ix["level1"] and l2["owner"] == tasks["joiner"]["id"], "level2's place")
    expect(l3["parent"] == ix["level2"] and l3["owner"] == tasks["inner"]["id"], "level3's place")
    expect(doomed["owner"] == dm["id"], "doomed's owner")
    expect(l1["policy"] == "fail-fast" and l2["policy"] == "collect", "policies")
    expect(l1["deadline_ns"] is not None and 0 < l1["left_ns"] <= HOUR_NS, "level1's deadline")
    expect(l2["deadline_ns"] is None and l2["effective_deadline_ns"] == l1["deadline_ns"],
           "level2 bounded by level1's deadline")
    expect(l2["max_concurrency"] == 2 and l2["running"] == 2 and l2["waiting"] == 1,
           "level2's limit: %s" % l2)
    for s in (l1, l2, l3):
        expect(not s["cancelled"] and s["cancel_reason"] == "none" and s["state"] == "open",
               "%s not cancelled" % s["name"])
    expect(doomed["cancelled"] and doomed["cancel_reason"] == "explicit" and
           doomed["cancel_code"] == -125, "doomed cancelled: %s" % doomed)


def check_text(out, fd):
    lines = out.splitlines()

    def line(pattern):
        for i, l in enumerate(lines):
            if re.search(pattern, l):
                return i, l
        fail("no line matches %r" % pattern, out)

    def depth(l):
        return len(l) - len(l.lstrip(" "))

    line(r"^weft dump: runtime 0x[0-9a-f]+, pid \d+, 2 workers, 16 tasks, 8 scopes$")
    _, root = line(r'^\s+task 1 "root" running on worker [01]$')
    _, l1 = line(r'scope #\d+ "level1" fail-fast, deadline in 3\d\d\d\.\d{3} s$')
    line(r'task \d+ "sleeper" parked for \d+\.\d{3} s: sleep, wakes in 3\d\d\d\.\d{3} s$')
    line(r'task \d+ "semwaiter" parked for \d+\.\d{3} s: semaphore 0x[0-9a-f]+$')
    line(r'task \d+ "blocker" parked for .*: blocking call 0x[0-9a-f]+$')
    line(r'task \d+ "joiner" parked for .*: join of scope #\d+ "level2"$')
    _, l2 = line(r'scope #\d+ "level2" collect, deadline in .*, max_concurrency 2 '
                 r'\(2 running, 1 waiting unstarted\)$')
    line(r'task \d+ "chanwaiter" parked for .*: channel \(operation 0x[0-9a-f]+\)$')
    line(r'task \d+ "inner" parked for .*: join of scope #\d+ "level3"$')
    _, l3 = line(r'scope #\d+ "level3" fail-fast')
    line(r'task \d+ "eventwaiter" parked for .*: event 0x[0-9a-f]+$')
    line(r'task \d+ "fdwaiter" parked for .*: fd %d readable$' % fd)
    line(r'task \d+ "selecter" parked for .*: select \(operations at 0x[0-9a-f]+\)$')
    line(r'task \d+ "latecomer" unstarted$')
    line(r'task \d+ "hoster" joining, runs task \d+ inline on its stack$')
    line(r'task \d+ "middle" joining, runs task \d+ inline on its stack \(inline in its joiner\)$')
    line(r'task \d+ "inlined" parked for .*: sleep, wakes in .* \(inline in its joiner\)$')
    line(r'scope #\d+ "doomed\?--\?{18}-\?{3}" fail-fast, cancelled \(explicit, -ECANCELED\)$')
    line(r'task \d+ "spinner" running on worker [01]$')
    # Nesting: each level two columns (a task, then its scope) deeper than the one above.
    if not (depth(root) + 2 == depth(l1) and depth(l1) + 4 == depth(l2) and
            depth(l2) + 4 == depth(l3)):
        fail("levels not nested", out)


def main():
    if len(sys.argv) != 3 or sys.argv[2] not in ("json", "text"):
        sys.stderr.write("usage: dump_check.py PROGRAM json|text\n")
        sys.exit(2)
    out, fd = run(sys.argv[1], sys.argv[2])
    (check_json if sys.argv[2] == "json" else check_text)(out, fd)
    print("dump_check %s: every state as built" % sys.argv[2])


main()
