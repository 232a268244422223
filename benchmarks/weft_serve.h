// SPDX-License-Identifier: MIT
/*
 * The skeleton of weft's servers for the I/O workloads (weft_http, weft_echo): a listener
 * scope that holds one task per connection, the accept loop, and the shutdown on SIGINT or
 * SIGTERM. A server supplies the connection task.
 */
#ifndef WEFT_SERVE_H
#define WEFT_SERVE_H

#include "weft.h"

#include <stddef.h>
#include <sys/types.h>

/*
 * Parses --port, --threads and --idle-ms, listens on 127.0.0.1, prints port=P, and runs weft
 * with `conn(fd)` spawned for every accepted connection (the descriptor travels as
 * (void *)(intptr_t)fd; the task closes it with weft_close). Returns the process's exit
 * status: 0 after a signal stopped it and every connection task has ended, 1 when something
 * failed. `name` prefixes its messages.
 */
int weft_serve(int argc, char **argv, const char *name, weft_fn conn);

/*
 * weft_recv for a connection task. With --idle-ms, the task runs in a scope whose deadline is
 * the idle time, and each read that brings bytes moves it that far from now (the idle-timeout
 * pattern of weft_scope_set_deadline); the scope's deadline bounds every wait of the task, and a
 * cancel of the listener still reaches them. The bytes read, 0 at the end of the stream,
 * -ETIMEDOUT when the connection stayed idle, -ECANCELED on shutdown, or another negative errno
 * value.
 */
ssize_t weft_serve_read(int fd, void *buf, size_t len);

#endif
