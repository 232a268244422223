#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Runs tools/weft-gdb.py under gdb in batch mode on the known tree of tests/dump_tree.c.

Usage: gdb_check.py GDB SCRIPT DUMP_TREE_PROGRAM
gdb stops the program at dump_tree_built (the tree is built), lists the tasks (`weft tasks`) and
prints the backtrace of the sleeper and of the descriptor's waiter (`weft bt`); this checks each
task's line, that each backtrace shows the task's own function under the runtime's wait, that
asking for a running or unknown task is refused, and that the program's own registers are back
after (`bt` of the stopped thread). Fails, saying why, where gdb is missing.
"""
import re
import shutil
import subprocess
import sys


def fail(why, out=""):
    sys.stderr.write("gdb_check: %s\n%s\n" % (why, out))
    sys.exit(1)


def main():
    if len(sys.argv) != 4:
        fail("usage: gdb_check.py GDB SCRIPT PROGRAM")
    gdb, script, program = sys.argv[1:]
    if not shutil.which(gdb):
        fail("gdb (%s) is missing: tools/setup installs it" % gdb)
    cmd = [gdb, "-batch", "-nx", "-x", script,
           "-ex", "set pagination off",
           "-ex", "break dump_tree_built",
           "-ex", "run",
           "-ex", "weft tasks",
           "-ex", "weft bt dump_tree_sleeper_id",
           "-ex", "weft bt dump_tree_spinner_id",
           "-ex", "weft bt 999999999",
           "-ex", "bt 2",
           "-ex", "kill",
           "--args", program, "text"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=100)
    out = p.stdout + p.stderr

    def expect(pattern, why):
        if not re.search(pattern, out, re.M):
            fail(why + " (no match for %r)" % pattern, out)

    expect(r"hit Breakpoint 1, .* in dump_tree_built", "the program stopped where the tree is built")
    # weft tasks: every task, with what it waits on.
    expect(r"^\s+1\s+root\s+running on worker [01]$", "the root task running")
    expect(r"^\s+\d+\s+spinner\s+running on worker [01]$", "the spinner running")
    expect(r"^\s+\d+\s+doomer\s+parked: join of scope \"doomed[^\"]*\"$", "the doomer on its join")
    expect(r"^\s+\d+\s+sleeper\s+parked: sleep$", "the sleeper")
    expect(r"^\s+\d+\s+semwaiter\s+parked: semaphore 0x[0-9a-f]+$", "the semaphore's waiter")
    expect(r"^\s+\d+\s+blocker\s+parked: blocking call 0x[0-9a-f]+$", "the blocking call")
    expect(r"^\s+\d+\s+joiner\s+parked: join of scope \"level2\"$", "the joiner")
    expect(r"^\s+\d+\s+chanwaiter\s+parked: channel 0x[0-9a-f]+$", "the channel's waiter")
    expect(r"^\s+\d+\s+inner\s+parked: join of scope \"level3\"$", "inner on its join")
    expect(r"^\s+\d+\s+eventwaiter\s+parked: event 0x[0-9a-f]+$", "the event's waiter")
    expect(r"^\s+\d+\s+fdwaiter\s+parked: fd readable \(fd \d+\)$", "the descriptor's waiter")
    expect(r"^\s+\d+\s+selecter\s+parked: select 0x[0-9a-f]+$", "the select")
    expect(r"^\s+\d+\s+latecomer\s+unstarted$", "the latecomer")
    expect(r"^\s+\d+\s+hoster\s+joining: runs task \d+ inline on its stack$",
           "the task whose join runs a child inline")
    expect(r"^\s+\d+\s+middle\s+joining: runs task \d+ inline on its stack$",
           "the inline child whose own join runs one inline")
    expect(r"^\s+\d+\s+inlined\s+parked: sleep$", "the innermost inline child")
    expect(r"^16 tasks$", "sixteen tasks")
    # weft bt: the sleeper's own function, under the sleep and the park.
    m = re.search(r"^task (\d+) \"sleeper\" \(parked: sleep\)\n((?:#\d+ .*\n)+)", out, re.M)
    if not m:
        fail("no backtrace of the sleeper", out)
    frames = m.group(2)
    for fn in ("sched_park", "weft_sleep_until", "sleeper"):
        if not re.search(r"\b%s \(" % fn, frames):
            fail("the sleeper's backtrace lacks %s" % fn, out)
    if frames.find("sched_park") > frames.find(" sleeper ("):
        fail("the park is not the innermost frame", out)
    spinner = re.search(r"^\s+(\d+)\s+spinner\s", out, re.M).group(1)
    expect(r"weft: task %s runs on worker [01]: select that worker's thread" % spinner,
           "a running task refused")
    expect(r"weft: no live task 999999999", "an unknown id refused")
    # The stopped thread's registers are its own again.
    expect(r"^#0 .* in dump_tree_built \(\)\n#1 .* in tree_main \(\)", "registers put back")
    print("gdb_check: weft tasks and weft bt as expected")


main()
