# SPDX-License-Identifier: MIT
"""weft_http's --idle-ms (benchmarks/weft_serve.c): a connection that keeps sending stays open
past several idle times, and one that falls silent is closed once silent for the idle time, and
not much later. Starts the server on 127.0.0.1 and a free port and stops it by its PID whatever
happens.

usage: serve_idle.py WEFT_HTTP"""
import ctypes
import os
import select
import signal
import socket
import subprocess
import sys
import time

IDLE_S = 0.4
# The server moves a deadline only once it would come within the idle time, and then an eighth
# further (weft_serve.c): a silent connection ends between IDLE_S and IDLE_S * 9 / 8 after its
# last bytes; the rest is room for a loaded machine.
LATE_S = IDLE_S * 9 / 8 + 0.6
REQUEST = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"


def fail(why):
    print("serve_idle: " + why)
    sys.exit(1)


def read_port(proc):
    ready, _, _ = select.select([proc.stdout], [], [], 10)
    if not ready:
        fail("the server printed no port within 10 s")
    line = proc.stdout.readline().decode().strip()
    if not line.startswith("port="):
        fail(f"the server printed {line!r} instead of port=P")
    return int(line[5:])


def answer(sock):
    """Reads one whole response (the body is 13 bytes); None when the server closed first."""
    got = b""
    while b"\r\n\r\n" not in got or not got.endswith(b"Hello, World!"):
        part = sock.recv(4096)
        if not part:
            return None
        got += part
    return got


def wait_closed(sock, since):
    """Seconds from `since` until the server closes `sock` (recv returns b"")."""
    sock.settimeout(5)
    try:
        while sock.recv(4096):
            pass
    except socket.timeout:
        fail("a silent connection was still open 5 s after its last bytes")
    return time.monotonic() - since


PARENT = os.getpid()


def server_dies_with_us():
    """The server's preexec_fn: SIGKILL when this script dies (CTest's timeout kills it)."""
    ctypes.CDLL(None).prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    if os.getppid() != PARENT:
        os._exit(1)


def main():
    if len(sys.argv) != 2:
        fail(__doc__)
    # A SIGTERM or SIGHUP ends the test through the `finally` below, which stops the server.
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda signum, _: sys.exit(128 + signum))
    proc = subprocess.Popen([sys.argv[1], "--port", "0", "--threads", "1", "--idle-ms",
                             str(int(IDLE_S * 1000))], stdout=subprocess.PIPE,
                            preexec_fn=server_dies_with_us)
    try:
        port = read_port(proc)
        silent = socket.create_connection(("127.0.0.1", port))
        silent_since = time.monotonic()
        busy = socket.create_connection(("127.0.0.1", port))
        busy.settimeout(5)
        # Three idle times of requests a quarter of one apart: every one answered, while the
        # silent connection, looked at between them, is closed.
        end = time.monotonic() + 3 * IDLE_S
        sent = 0
        silent_took = None
        while time.monotonic() < end:
            busy.sendall(REQUEST)
            if answer(busy) is None:
                fail(f"an active connection was closed after {sent} requests")
            last = time.monotonic()
            sent += 1
            # A quarter of the idle time until the next request, spent watching both
            # connections: the silent one's close is recorded when it comes, and the busy one
            # must stay quiet (readable now would mean closed, or bytes nobody asked for).
            pause_end = last + IDLE_S / 4
            while (left := pause_end - time.monotonic()) > 0:
                watched = [busy] if silent_took is not None else [busy, silent]
                ready = select.select(watched, [], [], left)[0]
                if busy in ready:
                    fail(f"an active connection was closed or sent unasked bytes after "
                         f"{sent} requests")
                if silent in ready:
                    if silent.recv(4096):
                        fail("a connection that sent nothing got bytes")
                    silent_took = time.monotonic() - silent_since
        if silent_took is None:
            silent_took = wait_closed(silent, silent_since)
        if silent_took < IDLE_S - 0.05 or silent_took > LATE_S:
            fail(f"a connection that never sent was closed after {silent_took:.3f} s "
                 f"(idle {IDLE_S} s)")
        took = wait_closed(busy, last)
        # From the client's side the idle time runs from a little before `last`: the server
        # read the request before it answered.
        if took < IDLE_S - 0.05 or took > LATE_S:
            fail(f"a connection silent since its last answer was closed after {took:.3f} s "
                 f"(idle {IDLE_S} s)")
        proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            fail("the server did not stop within 15 s of SIGTERM")
        if rc != 0:
            fail(f"the server exited {rc} after SIGTERM")
        print(f"serve_idle: ok ({sent} requests kept a connection open)")
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()


if __name__ == "__main__":
    main()
