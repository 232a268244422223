#!/bin/sh
# SPDX-License-Identifier: MIT
# with_servers stops its servers by PID whatever the command did, passes the command's status
# on, and fails with the reason when a server does not start.
# Usage: launcher_test.sh WITH_SERVERS EXAMPLE_SERVER
set -u
launcher=$1
server=$2
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
fail=0

# Runs the launcher with a command; checks its status and that every server it started is gone.
check() {
    want=$1
    what=$2
    shift 2
    "$launcher" --server EXAMPLE_SERVER_PORT="$server" --server OTHER_PORT="$server" -- \
        sh -c "echo \"\$WITH_SERVERS_PIDS\" > '$tmp/pids'; $*"
    got=$?
    if [ "$got" -ne "$want" ]; then
        echo "FAIL: $what: status $got, expected $want"
        fail=1
    fi
    pids=$(cat "$tmp/pids")
    if [ -z "$pids" ]; then
        echo "FAIL: $what: no server PIDs"
        fail=1
    fi
    for pid in $pids; do
        if kill -0 "$pid" 2>/dev/null; then
            echo "FAIL: $what: server $pid still runs"
            fail=1
        fi
    done
    echo "$what: status $got, servers $pids stopped"
}

check 0 "a command that succeeds" 'test -n "$EXAMPLE_SERVER_PORT" && test -n "$OTHER_PORT"'
check 3 "a command that fails" 'exit 3'
check 137 "a command killed by a signal" 'kill -KILL $$'

# A server that exits before it listens: the launcher fails and says why; the command never runs.
out=$("$launcher" --server X_PORT=/bin/false -- sh -c "touch '$tmp/ran'" 2>&1)
got=$?
if [ "$got" -ne 1 ] || [ -e "$tmp/ran" ]; then
    echo "FAIL: a server that does not start: status $got"
    fail=1
fi
case $out in
*"exited before it listened"*) echo "a server that does not start: $out" ;;
*)
    echo "FAIL: no reason given: '$out'"
    fail=1
    ;;
esac
exit $fail
