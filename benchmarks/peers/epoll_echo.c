// SPDX-License-Identifier: MIT
/*
 * epoll_echo [--port P] [--threads T] — the echo workload of benchmarks/README.md served by a
 * hand-written C server: T threads, each with its own listening socket on the same port
 * (SO_REUSEPORT) and one edge-triggered epoll loop; a connection sends back every byte it
 * reads, and stops reading while what it read is not yet written.
 *
 * Prints port=P once it listens. SIGINT or SIGTERM: every thread closes its connections and
 * returns, and the process exits 0.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "../io_common.h"

#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>

typedef struct conn {
    int fd;
    size_t off, len; /* bytes read and not yet written back: buf[off, len) */
    struct conn *prev, *next;
    char buf[16384];
} conn;

typedef struct worker {
    int lfd;
    int ep;
    conn head; /* the worker's connections, to close them at the end */
} worker;

static int stop_fd; /* an eventfd that becomes readable, and stays so, to stop every loop */

/* The connection as far as it goes without waiting (io_common.h). Returns -1 to close. */
static int conn_run(conn *c)
{
    return echo_run_ready(c->fd, c->buf, sizeof c->buf, &c->off, &c->len);
}

static void conn_start(conn *c)
{
    c->off = c->len = 0;
}

#define EP_NAME "epoll_echo"
#include "epoll_loop.h"
