// SPDX-License-Identifier: MIT
/*
 * epoll_http [--port P] [--threads T] — the http workload of benchmarks/README.md served the
 * way a hand-written C server does it: T threads, each with its own listening socket on the
 * same port (SO_REUSEPORT, the kernel spreads connections over them) and one edge-triggered
 * epoll loop, every connection a state machine owned by one thread. It parses and answers with
 * the same code as weft_http (../io_common.h), so that the two differ only in how they wait.
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
    size_t out_off; /* first byte of b.out not yet written */
    struct conn *prev, *next;
    http_buf b;
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
    return http_run_ready(c->fd, &c->b, &c->out_off);
}

static void conn_start(conn *c)
{
    c->out_off = 0;
    c->b.closing = 0;
    c->b.in_len = c->b.out_len = 0;
}

#define EP_NAME "epoll_http"
#include "epoll_loop.h"
