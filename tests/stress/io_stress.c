// SPDX-License-Identifier: MIT
/*
 * The reactor under load, with invariants: many connections on the loopback, each a client task
 * and a server task exchanging numbered messages, on several workers, while a canceller cancels
 * some connections' scopes at random moments (closing under a waiting task: test_io.c).
 *
 * Checked: every message that a client got back is the one it sent (no byte lost, duplicated or
 * reordered within a connection); every connection's tasks end (the run finishes); a wait ended
 * by a cancel returned -ECANCELED, and nothing else came back but the codes of a peer gone. Plain
 * program (no Criterion), so that it runs under ThreadSanitizer too.
 *
 *   io_stress [--conns N] [--rounds R] [--workers W] [--seed S]
 */
#include <errno.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../support.h"
#include "weft.h"

static int conns = 200, rounds = 200, workers = 2;
static unsigned seed = 1;

static atomic_long round_trips, bad_data, bad_codes, cancelled_waits, closed_waits, finished;
static int listener;
static uint16_t port;

typedef struct conn {
    int client_fd, server_fd;
    weft_scope *scope; /* the connection's: both its tasks */
    atomic_int ready;
    unsigned rng;
} conn;

static unsigned lcg_next(unsigned *s)
{
    *s = *s * 1103515245u + 12345u;
    return *s >> 8;
}

/* A code a wait may end with here: a cancel, a close by the canceller, the peer's side gone. */
static void check_code(long rc)
{
    if (rc == -ECANCELED)
        atomic_fetch_add(&cancelled_waits, 1);
    else if (rc == -EBADF)
        atomic_fetch_add(&closed_waits, 1);
    else if (rc != -ECONNRESET && rc != -EPIPE && rc != 0)
        atomic_fetch_add(&bad_codes, 1);
}

/* A message is 16 words. Each read asks for room for a second one that never comes before the
 * answer, so that reads come back short and the next read parks on what the short one noted
 * (fd.h): a read that parked wrongly would hang the run, and its time limit fail it. More than one
 * message's bytes is a byte doubled. */
#define MSG_BYTES (16 * sizeof(uint32_t))

static int server_task(void *p)
{
    conn *c = p;
    uint32_t msg[32];
    for (;;) {
        size_t got = 0;
        while (got < MSG_BYTES) {
            ssize_t n = weft_read(c->server_fd, (char *)msg + got, sizeof(msg) - got);
            if (n <= 0) {
                check_code(n);
                return 0;
            }
            got += (size_t)n;
        }
        if (got != MSG_BYTES)
            atomic_fetch_add(&bad_data, 1);
        ssize_t w = weft_write_all(c->server_fd, msg, MSG_BYTES, NULL);
        if (w < 0) {
            check_code(w);
            return 0;
        }
    }
}

/* The exchange; the caller then shuts the client's sending side, so that the server task
 * serving this socket (accepted by whichever connection task) sees the end of the stream and
 * ends, whatever happened here. */
static int client_rounds(conn *c)
{
    uint32_t out[16], in[32];
    for (int r = 0; r < rounds; r++) {
        for (int i = 0; i < 16; i++)
            out[i] = (uint32_t)(r * 16 + i) ^ (uint32_t)(uintptr_t)c;
        ssize_t w = weft_send_all(c->client_fd, out, sizeof(out), 0, NULL);
        if (w < 0) {
            check_code(w);
            return 0;
        }
        size_t got = 0;
        while (got < MSG_BYTES) {
            ssize_t n = weft_recv(c->client_fd, (char *)in + got, sizeof(in) - got, 0);
            if (n <= 0) {
                check_code(n);
                return 0;
            }
            got += (size_t)n;
        }
        if (got != MSG_BYTES || memcmp(in, out, MSG_BYTES) != 0)
            atomic_fetch_add(&bad_data, 1);
        atomic_fetch_add(&round_trips, 1);
    }
    return 0;
}

static int client_task(void *p)
{
    conn *c = p;
    client_rounds(c);
    shutdown(c->client_fd, SHUT_WR);
    return 0;
}

/* One connection: connect, accept its other end, run both tasks in a scope of their own. */
static int conn_task(void *p)
{
    conn *c = p;
    c->client_fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {
        .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK), .sin_port = htons(port)};
    if (c->client_fd < 0 || weft_connect(c->client_fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
        atomic_fetch_add(&bad_codes, 1);
        return -EIO;
    }
    /* The listener is shared: accept takes whichever connection is next, which is fine, since
     * every accepted descriptor is some connection's server side; pair it with this one by
     * exchanging the client's address would be exact, but the data check does not need it. */
    c->server_fd = weft_accept(listener, NULL, NULL);
    if (c->server_fd < 0) {
        atomic_fetch_add(&bad_codes, 1);
        weft_close(c->client_fd);
        return -EIO;
    }
    weft_scope *s;
    if (weft_scope_open(&s, NULL) != 0)
        return -ENOMEM;
    c->scope = s;
    atomic_store(&c->ready, 1);
    weft_spawn(s, server_task, c);
    weft_spawn(s, client_task, c);
    weft_scope_join(s);
    atomic_store(&c->ready, 0);
    weft_scope_release(s);
    weft_close(c->client_fd);
    weft_close(c->server_fd);
    atomic_fetch_add(&finished, 1);
    return 0;
}

typedef struct run {
    conn *cs;
    atomic_int done;
} run;

/* Cancels a tenth of the connections at random moments; connections are served by other tasks
 * meanwhile, so the cancels land in reads, writes and between them. */
static int canceller(void *p)
{
    run *r = p;
    unsigned s = seed;
    for (int i = 0; i < conns / 10; i++) {
        conn *c = &r->cs[lcg_next(&s) % (unsigned)conns];
        for (int k = (int)(lcg_next(&s) % 50); k > 0; k--)
            weft_yield();
        if (atomic_load(&c->ready))
            weft_scope_cancel(c->scope); /* the scope lives until ready drops (conn_task) */
    }
    return 0;
}

static int root(void *p)
{
    run *r = p;
    weft_scope *s;
    if (weft_scope_open(&s, &(weft_scope_opts){.policy = WEFT_COLLECT}) != 0)
        return -ENOMEM;
    for (int i = 0; i < conns; i++)
        weft_spawn(s, conn_task, &r->cs[i]);
    weft_spawn(s, canceller, r);
    int rc = weft_scope_join(s);
    weft_scope_release(s);
    return rc;
}

int main(int argc, char **argv)
{
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--conns"))
            conns = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--rounds"))
            rounds = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--workers"))
            workers = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--seed"))
            seed = (unsigned)atoi(argv[i + 1]);
    }
#ifdef UNDER_TSAN
    if (conns > 50)
        conns = 50;
    if (rounds > 50)
        rounds = 50;
#endif
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t)(4 * conns + 64)) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    listener = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    if (listener < 0 || bind(listener, (struct sockaddr *)&a, sizeof(a)) != 0 ||
        listen(listener, 4096) != 0 || getsockname(listener, (struct sockaddr *)&a, &len) != 0) {
        perror("io_stress: listener");
        return 2;
    }
    port = ntohs(a.sin_port);
    run r = {.cs = calloc((size_t)conns, sizeof(conn))};
    weft_config cfg = {.workers = (unsigned)workers};
    int rc = weft_run(&cfg, root, &r);
    weft_close(listener);
    printf("io_stress: conns=%d rounds=%d workers=%d: %ld round trips, %ld finished, %ld cancelled "
           "waits, %ld closed waits, %ld bad codes, %ld bad data\n",
           conns, rounds, workers, atomic_load(&round_trips), atomic_load(&finished),
           atomic_load(&cancelled_waits), atomic_load(&closed_waits), atomic_load(&bad_codes),
           atomic_load(&bad_data));
    int ok = rc == 0 && atomic_load(&bad_codes) == 0 && atomic_load(&bad_data) == 0 &&
             atomic_load(&finished) == conns && atomic_load(&round_trips) > 0;
    free(r.cs);
    printf("%d passed, %d failed\n", ok, !ok);
    return ok ? 0 : 1;
}
