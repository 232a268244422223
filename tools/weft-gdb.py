# SPDX-License-Identifier: MIT
"""gdb commands for weft: the tasks of the process's runtimes, and the backtrace of a parked one.

    weft tasks        every live task: id, state (running on worker N, parked on what, joining
                      with an inline child on its stack, ready, unstarted), name
    weft bt ID        the backtrace of task ID (an expression: `weft bt 4098`, or a variable),
                      unwound from the context it saved when it left its worker

Installed beside the library as libweft.so.<version>-gdb.py, so that gdb loads it with the
library where auto-loading allows it (see README.md, "When something is stuck"); or load it by
hand: `source /path/to/weft-gdb.py`. It needs no debug information: it reads the library's own
table of where the fields it needs lie (weft__dump_layout, lib/dump.c) and the list of the
process's runtimes (weft__dump_runtimes), through the symbol table.
"""
import struct

import gdb

# The indexes of weft__dump_layout (lib/dump.c), version 2.
(L_VERSION, L_STRIDE, L_FIRST, L_RT_NEXT, L_RT_CHUNKS, L_RT_WORKERS, L_RT_NWORKERS, L_WORKER_SIZE,
 L_WORKER_CURRENT, L_CHUNK_NEXT, L_CHUNK_BYTES, L_CHUNK_RECORDS, L_T_ID, L_T_FLAGS, L_T_WAIT,
 L_T_WAIT_ON, L_T_WAIT_OBJ, L_T_NAME, L_T_CTX, L_T_HOST, L_T_SCOPE, L_T_RT, L_S_NAME, L_FREE,
 L_PARKED, L_T_PARKED_AT, L_T_JOINER, L_INLINE) = range(28)
LAYOUT_LEN = 28

ON = ["?", "join of scope", "sleep", "semaphore", "event", "channel", "select", "fd readable",
      "fd writable", "fd readable or writable", "blocking call", "forked function"]


def _addr(symbol):
    try:
        return int(gdb.parse_and_eval("(unsigned long)&%s" % symbol))
    except gdb.error:
        raise gdb.GdbError("weft: no symbol %s: the program is not linked with weft or not "
                           "running, or weft's symbol table was stripped (this script needs it; "
                           "it needs no debug information)" % symbol)


def _mem(addr, n):
    return bytes(gdb.selected_inferior().read_memory(addr, n))


def _u64(addr):
    return struct.unpack("<Q", _mem(addr, 8))[0]


def _u32(addr):
    return struct.unpack("<I", _mem(addr, 4))[0]


def _cstr(raw):
    return raw.split(b"\0", 1)[0].decode("utf-8", "replace")


class Layout:
    def __init__(self):
        base = _addr("weft__dump_layout")
        self.v = struct.unpack("<%dQ" % LAYOUT_LEN, _mem(base, 8 * LAYOUT_LEN))
        if self.v[L_VERSION] != 2:
            raise gdb.GdbError("weft: layout version %d, this script reads 2" % self.v[L_VERSION])

    def __getitem__(self, i):
        return self.v[i]


class Task:
    hosting = None  # the id of the child its join runs inline, if any (_mark_hosts)


def _runtimes(lay):
    rt = _u64(_addr("weft__dump_runtimes"))
    seen = set()
    while rt and rt not in seen:
        seen.add(rt)
        yield rt
        rt = _u64(rt + lay[L_RT_NEXT])


def _running(lay, rt):
    """task record -> worker index, for the tasks the workers run now."""
    workers = _u64(rt + lay[L_RT_WORKERS])
    n = _u32(rt + lay[L_RT_NWORKERS])
    out = {}
    for i in range(n):
        cur = _u64(workers + i * lay[L_WORKER_SIZE] + lay[L_WORKER_CURRENT])
        if cur:
            out[cur] = i
    return out


def _tasks(lay):
    """Every live task record of every runtime (the walk of weft__records_walk, lib/records.c)."""
    stride, first = lay[L_STRIDE], lay[L_FIRST]
    for rt in _runtimes(lay):
        running = _running(lay, rt)
        chunk = _u64(rt + lay[L_RT_CHUNKS])
        seen = set()
        while chunk and chunk not in seen:
            seen.add(chunk)
            nbytes = _u64(chunk + lay[L_CHUNK_BYTES])
            is_records = _u32(chunk + lay[L_CHUNK_RECORDS])
            nxt = _u64(chunk + lay[L_CHUNK_NEXT])
            if is_records:
                raw = _mem(chunk, nbytes)
                end = first + (nbytes - first) // stride * stride
                for off in range(first, end, stride):
                    rid = struct.unpack_from("<Q", raw, off + lay[L_T_ID])[0]
                    flags = struct.unpack_from("<I", raw, off + lay[L_T_FLAGS])[0]
                    trt = struct.unpack_from("<Q", raw, off + lay[L_T_RT])[0]
                    if not rid or flags & lay[L_FREE] or trt != rt:
                        continue
                    t = Task()
                    t.rt, t.addr, t.id = rt, chunk + off, rid
                    t.wait = struct.unpack_from("<I", raw, off + lay[L_T_WAIT])[0]
                    t.on = raw[off + lay[L_T_WAIT_ON]]
                    t.obj = struct.unpack_from("<Q", raw, off + lay[L_T_WAIT_OBJ])[0]
                    t.host = struct.unpack_from("<Q", raw, off + lay[L_T_HOST])[0]
                    t.joiner = (struct.unpack_from("<Q", raw, off + lay[L_T_JOINER])[0]
                                if flags & lay[L_INLINE] else 0)
                    t.name = _cstr(raw[off + lay[L_T_NAME]:off + lay[L_T_NAME] + 32])
                    t.worker = running.get(t.addr)
                    yield t
            chunk = nxt


def _mark_hosts(tasks):
    """Notes on each task whose join runs a child inline that child's id: only the child's record
    names its joiner (nested inline joins share one stack, its `host`), as in lib/dump.c."""
    by_addr = {t.addr: t for t in tasks}
    for t in tasks:
        joiner = by_addr.get(t.joiner or t.host)
        if joiner is not None and joiner is not t:
            joiner.hosting = t.id
    return tasks


def _describe(lay, t):
    if t.worker is not None:
        return "running on worker %d" % t.worker
    if t.wait == lay[L_PARKED]:
        what = ON[t.on] if t.on < len(ON) else "?"
        if t.on == 1:
            return "parked: %s \"%s\"" % (what, _cstr(_mem(t.obj + lay[L_S_NAME], 32)))
        if t.on == 2:
            return "parked: sleep"
        if t.on in (7, 8, 9):
            return "parked: %s (fd %d)" % (what, t.obj)
        return "parked: %s 0x%x" % (what, t.obj)
    if t.hosting is not None:
        return "joining: runs task %d inline on its stack" % t.hosting
    if t.host:
        return "ready"
    return "unstarted"


class WeftPrefix(gdb.Command):
    """Commands for weft's tasks: weft tasks, weft bt ID."""

    def __init__(self):
        super().__init__("weft", gdb.COMMAND_STACK, gdb.COMPLETE_NONE, True)


class WeftTasks(gdb.Command):
    """List the live tasks of weft's runtimes: id, state (what a parked one waits on), name."""

    def __init__(self):
        super().__init__("weft tasks", gdb.COMMAND_STACK)

    def invoke(self, arg, from_tty):
        lay = Layout()
        tasks = sorted(_mark_hosts(list(_tasks(lay))), key=lambda t: t.id)
        for t in tasks:
            gdb.write("%8d  %-20s  %s\n" % (t.id, t.name or "-", _describe(lay, t)))
        gdb.write("%d tasks\n" % len(tasks))


# The registers weft__ctx_switch pushes (lib/arch/switch_*.S): name -> offset from the saved
# stack pointer, the return address as the pc, and the stack pointer after the pops.
SAVED = {
    "x86-64": ({"r15": 8, "r14": 16, "r13": 24, "r12": 32, "rbx": 40, "rbp": 48}, "rip", 56,
               "rsp", 64),
    "aarch64": (dict([("x%d" % (19 + i), 8 * i) for i in range(11)] + [("x29", 80), ("x30", 88)]),
                "pc", 88, "sp", 176),
}


class WeftBt(gdb.Command):
    """Print the backtrace of the weft task of id ID (parked or ready): weft bt ID."""

    def __init__(self):
        super().__init__("weft bt", gdb.COMMAND_STACK)

    def invoke(self, arg, from_tty):
        if not arg.strip():
            raise gdb.GdbError("usage: weft bt ID")
        try:
            want = int(gdb.parse_and_eval(arg))
        except gdb.error:
            # A variable of a program built without debug information: read as 64 bits.
            want = int(gdb.parse_and_eval("*(unsigned long *)&(%s)" % arg))
        lay = Layout()
        task = next((t for t in _tasks(lay) if t.id == want), None)
        if task is None:
            raise gdb.GdbError("weft: no live task %d" % want)
        if task.worker is not None:
            raise gdb.GdbError("weft: task %d runs on worker %d: select that worker's thread "
                               "and use bt" % (want, task.worker))
        if not task.host:
            raise gdb.GdbError("weft: task %d has not started: it has no stack yet" % want)
        arch = gdb.selected_frame().architecture().name()
        key = "x86-64" if "x86-64" in arch else "aarch64" if "aarch64" in arch else None
        if key is None:
            raise gdb.GdbError("weft: no context layout for %s" % arch)
        regs, pc_name, pc_off, sp_name, sp_after = SAVED[key]
        # An inline child runs on its host's stack: the host saved the context.
        sp = _u64(task.host + lay[L_T_CTX])
        values = {r: _u64(sp + off) for r, off in regs.items()}
        values[pc_name] = _u64(sp + pc_off)
        values[sp_name] = sp + sp_after
        gdb.write("task %d \"%s\" (%s)\n" % (task.id, task.name, _describe(lay, task)))
        gdb.execute("frame 0", to_string=True)
        frame = gdb.selected_frame()
        saved = {r: int(frame.read_register(r)) for r in values}
        try:
            for r, v in values.items():
                gdb.execute("set $%s = %d" % (r, v), to_string=True)
            gdb.execute("bt")
        finally:
            gdb.execute("frame 0", to_string=True)
            for r, v in saved.items():
                gdb.execute("set $%s = %d" % (r, v), to_string=True)


WeftPrefix()
WeftTasks()
WeftBt()
