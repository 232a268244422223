// SPDX-License-Identifier: MIT
/*
 * Ten thousand connections at once: a weft echo server with one task per connection, and a
 * client process that drives the clients from a plain epoll loop (so that weft's side is only
 * the server, the memory measured is the server's, and each process needs one descriptor per
 * connection, not two).
 *
 * The clients connect (a few hundred handshakes at a time, under the listener's backlog), make
 * PAUSE_ROUND round trips on every connection, then stop. The main thread waits until every
 * server task is inside weft_read and every worker asleep, with one in the poller: all of them
 * parked at once. It counts them, reads the resident set (/proc/self/statm) and compares it with
 * the one before the first connection: the bytes per idle connection (a server task, the part of
 * its stack it touched, its share of descriptor records) are reported, with a generous bound
 * that only a leak would pass. Then the clients make the remaining round trips; each server task
 * closes its connection after ROUNDS, and the clients see the end of every stream.
 *
 * Checked: every connection made, every echo byte for byte, every server task parked at the
 * pause, every stream ended by the server, the runtime's end.
 *
 * Each process needs a descriptor per connection. RLIMIT_NOFILE is raised (a privileged process
 * may raise the hard limit up to /proc/sys/fs/nr_open); where the limit cannot be raised far
 * enough the program says why and runs as many connections as fit. Fewer connections than asked
 * for, with a limit that could be raised, is a failure.
 *
 *   io_many [--conns N] [--workers W]   (default 10000 connections; 500 under sanitizers)
 */
#include <errno.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define STRESS_NAME "io_many"
#include "../support.h"
#include "runtime.h"
#include "weft.h"

#if defined(UNDER_TSAN) || defined(__SANITIZE_ADDRESS__)
#define DEFAULT_CONNS 500
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define DEFAULT_CONNS 500
#endif
#endif
#ifndef DEFAULT_CONNS
#define DEFAULT_CONNS 10000
#endif

#define MSG 64
#define ROUNDS 4
#define PAUSE_ROUND 2      /* round trips before the pause */
#define CONNECTING_MAX 256 /* handshakes under way at once */
#define SPARE_FDS 256      /* descriptors beyond one per connection */
/* Bytes per idle connection that only a leak reaches, in ASan's builds too. */
#define LEAK_BOUND (64 * 1024)
#define SAFETY (120 * WEFT_SEC)

static int nconns, workers = 2;
static int listener;
static uint16_t port;
static weft_runtime *rt;

static atomic_int accepted, in_read, server_done, server_errors;
static int paused_clients, clients_done; /* the client process's */
static int control;                      /* socket between the two processes */

static unsigned char byte_of(int conn, int round, int j)
{
    return (unsigned char)(conn * 131 + round * 31 + j * 7 + (conn >> 8));
}

/* ---- the server: weft tasks ------------------------------------------------------------------ */

static int serve(void *arg)
{
    int fd = (int)(intptr_t)arg;
    unsigned char buf[MSG];
    for (int r = 0; r < ROUNDS; r++) {
        size_t got = 0;
        while (got < MSG) {
            atomic_fetch_add(&in_read, 1);
            ssize_t n = weft_read(fd, buf + got, MSG - got);
            atomic_fetch_sub(&in_read, 1);
            if (n <= 0) {
                CHECK(0, "server read: %zd in round %d", n, r);
                atomic_fetch_add(&server_errors, 1);
                weft_close(fd);
                return 0;
            }
            got += (size_t)n;
        }
        ssize_t w = weft_write_all(fd, buf, MSG, NULL);
        if (w != MSG) {
            CHECK(0, "server write: %zd", w);
            atomic_fetch_add(&server_errors, 1);
            break;
        }
    }
    /* The server closes first: the clients count the end of every stream. */
    weft_close(fd);
    atomic_fetch_add(&server_done, 1);
    return 0;
}

static int server_root(void *arg)
{
    (void)arg;
    weft_scope *conns;
    if (weft_scope_open(&conns, NULL) != 0)
        return -ENOMEM;
    for (int i = 0; i < nconns; i++) {
        int fd = weft_accept(listener, NULL, NULL);
        if (fd < 0) {
            CHECK(0, "accept: %d after %d connections", fd, i);
            break;
        }
        atomic_fetch_add(&accepted, 1);
        int rc = weft_spawn(conns, serve, (void *)(intptr_t)fd);
        if (rc != 0) {
            CHECK(0, "spawn: %d", rc);
            weft_close(fd);
            break;
        }
    }
    return weft_scope_close(conns);
}

/* ---- the clients: a plain epoll loop ------------------------------------------------------- */

enum { C_CONNECTING, C_RUNNING, C_PAUSED, C_DRAINING, C_DONE };

typedef struct client {
    int fd, state, round;
    int sent, got;
    unsigned char in[MSG];
} client;

static client *clients;
static int ep;

static int start_round(client *c, int id)
{
    unsigned char out[MSG];
    for (int j = 0; j < MSG; j++)
        out[j] = byte_of(id, c->round, j);
    /* An empty socket takes 64 bytes whole. */
    ssize_t n = send(c->fd, out, MSG, MSG_NOSIGNAL);
    if (n != MSG) {
        CHECK(0, "client %d: send in round %d: %zd", id, c->round, n);
        return -1;
    }
    c->got = 0;
    return 0;
}

static int open_one(int id)
{
    client *c = &clients[id];
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        CHECK(0, "client %d: socket: %s", id, strerror(errno));
        return -1;
    }
    struct sockaddr_in a = {
        .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK), .sin_port = htons(port)};
    if (connect(c->fd, (struct sockaddr *)&a, sizeof(a)) != 0 && errno != EINPROGRESS) {
        CHECK(0, "client %d: connect: %s", id, strerror(errno));
        return -1;
    }
    c->state = C_CONNECTING;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.u32 = (uint32_t)id};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev) != 0) {
        CHECK(0, "client %d: epoll_ctl: %s", id, strerror(errno));
        return -1;
    }
    return 0;
}

/* One event of client `id`; returns -1 on a failure (counted). */
static int client_event(int id, uint32_t events, int *connecting)
{
    client *c = &clients[id];
    if (c->state == C_CONNECTING) {
        if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
            return 0;
        int err = 0;
        socklen_t len = sizeof(err);
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        (*connecting)--;
        if (err) {
            CHECK(0, "client %d: connect: %s", id, strerror(err));
            return -1;
        }
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)id};
        epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
        c->state = C_RUNNING;
        c->round = 0;
        return start_round(c, id);
    }
    if (!(events & (EPOLLIN | EPOLLERR | EPOLLHUP)))
        return 0;
    if (c->state == C_DRAINING) {
        char x;
        ssize_t n = recv(c->fd, &x, 1, 0);
        if (n == 0) {
            close(c->fd); /* leaves the epoll set with it */
            c->state = C_DONE;
            clients_done++;
        } else if (n > 0 || errno != EAGAIN) {
            CHECK(0, "client %d: expected the end of the stream, got %zd", id, n);
            return -1;
        }
        return 0;
    }
    if (c->state != C_RUNNING) {
        CHECK(0, "client %d: readiness while paused", id);
        return -1;
    }
    ssize_t n = recv(c->fd, c->in + c->got, (size_t)(MSG - c->got), 0);
    if (n < 0 && errno == EAGAIN)
        return 0;
    if (n <= 0) {
        CHECK(0, "client %d: recv in round %d: %zd", id, c->round, n);
        return -1;
    }
    c->got += (int)n;
    if (c->got < MSG)
        return 0;
    for (int j = 0; j < MSG; j++)
        if (c->in[j] != byte_of(id, c->round, j)) {
            CHECK(0, "client %d: round %d: byte %d differs", id, c->round, j);
            return -1;
        }
    c->round++;
    if (c->round == ROUNDS) {
        c->state = C_DRAINING;
        return 0;
    }
    if (c->round == PAUSE_ROUND) {
        c->state = C_PAUSED;
        paused_clients++;
        return 0;
    }
    return start_round(c, id);
}

/* The client process: connects, pauses, and after the go, finishes. Returns 0 on success. */
static int client_main(void)
{
    struct epoll_event ev[256];
    int opened = 0, connecting = 0, resumed = 0;
    weft_time end = weft_now() + SAFETY;
    while (atomic_load(&clients_done) < nconns) {
        if (weft_now() > end) {
            CHECK(0, "clients: %d of %d done after %lld s", clients_done, nconns,
                  (long long)(SAFETY / WEFT_SEC));
            return -1;
        }
        while (opened < nconns && connecting < CONNECTING_MAX) {
            if (open_one(opened) != 0)
                return -1;
            opened++;
            connecting++;
        }
        if (!resumed && paused_clients == nconns) {
            /* Everyone paused: the server's process counts its parked tasks, then says go. */
            char c = 'P';
            if (write(control, &c, 1) != 1 || read(control, &c, 1) != 1 || c != 'G') {
                CHECK(0, "clients: no go from the server's process");
                return -1;
            }
            for (int i = 0; i < nconns; i++) {
                clients[i].state = C_RUNNING;
                if (start_round(&clients[i], i) != 0)
                    return -1;
            }
            resumed = 1;
        }
        int n = epoll_wait(ep, ev, 256, 1000);
        for (int i = 0; i < n; i++)
            if (client_event((int)ev[i].data.u32, ev[i].events, &connecting) != 0)
                return -1;
    }
    return 0;
}

/* The client process's life: waits for the start, runs, reports how many streams ended. */
static int client_process(void)
{
    alarm((unsigned)(2 * SAFETY / WEFT_SEC));
    clients = calloc((size_t)nconns, sizeof(client));
    ep = epoll_create1(EPOLL_CLOEXEC);
    char c;
    if (!clients || ep < 0 || read(control, &c, 1) != 1)
        return 2;
    int rc = client_main();
    int report[2] = {clients_done, atomic_load(&failures)};
    if (write(control, report, sizeof(report)) != (ssize_t)sizeof(report))
        return 2;
    return rc == 0 && atomic_load(&failures) == 0 ? 0 : 1;
}

/* ---- the main thread ----------------------------------------------------------------------- */

static long rss_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long size = 0, resident = 0;
    if (!f)
        return -1;
    if (fscanf(f, "%ld %ld", &size, &resident) != 2)
        resident = -1;
    fclose(f);
    return resident < 0 ? -1 : resident * sysconf(_SC_PAGESIZE);
}

/* Raises the descriptor limit for `want` connections; returns how many fit, and sets *why when
 * that is fewer because the limit cannot be raised. */
static int fit_descriptors(int want, char *why, size_t whylen)
{
    rlim_t need = (rlim_t)want + SPARE_FDS;
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) {
        snprintf(why, whylen, "getrlimit: %s", strerror(errno));
        return 0;
    }
    if (rl.rlim_cur >= need)
        return want;
    struct rlimit up = {.rlim_cur = need, .rlim_max = rl.rlim_max < need ? need : rl.rlim_max};
    if (setrlimit(RLIMIT_NOFILE, &up) == 0)
        return want;
    int e = errno;
    long nr_open = -1;
    FILE *f = fopen("/proc/sys/fs/nr_open", "r");
    if (f) {
        if (fscanf(f, "%ld", &nr_open) != 1)
            nr_open = -1;
        fclose(f);
    }
    snprintf(why, whylen,
             "RLIMIT_NOFILE is %llu (hard %llu); raising it to %llu failed: %s (nr_open %ld)",
             (unsigned long long)rl.rlim_cur, (unsigned long long)rl.rlim_max,
             (unsigned long long)need, strerror(e), nr_open);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    getrlimit(RLIMIT_NOFILE, &rl);
    long fit = (long)rl.rlim_cur - SPARE_FDS;
    return fit < 0 ? 0 : fit < want ? (int)fit : want;
}

static int all_server_tasks_parked(void)
{
    uint64_t all = rt->nworkers >= 64 ? ~0ull : (1ull << rt->nworkers) - 1;
    return atomic_load(&in_read) == nconns && atomic_load(&rt->idle_mask[0]) == all &&
           atomic_load(&rt->poller.held) == 1;
}

int main(int argc, char **argv)
{
    int want = DEFAULT_CONNS;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--conns"))
            want = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--workers"))
            workers = atoi(argv[i + 1]);
    }
    char why[256] = "";
    nconns = fit_descriptors(want, why, sizeof(why));
    if (nconns < want) {
        printf("io_many: %s\n", why);
        if (nconns < 1) {
            printf("0 passed, 1 failed\n");
            return 1;
        }
        printf("io_many: the limit cannot be raised: running %d connections instead of %d\n",
               nconns, want);
    }

    listener = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    if (listener < 0 || bind(listener, (struct sockaddr *)&a, sizeof(a)) != 0 ||
        listen(listener, 4096) != 0 || getsockname(listener, (struct sockaddr *)&a, &len) != 0) {
        perror("io_many: listener");
        return 2;
    }
    port = ntohs(a.sin_port);
    int ctl[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, ctl) != 0) {
        perror("io_many: socketpair");
        return 2;
    }
    /* The clients' process first, before any thread of this one. */
    pid_t child = fork();
    if (child < 0) {
        perror("io_many: fork");
        return 2;
    }
    if (child == 0) {
        close(ctl[0]);
        close(listener);
        control = ctl[1];
        _exit(client_process());
    }
    close(ctl[1]);
    control = ctl[0];

    weft_config cfg = {.workers = (unsigned)workers};
    if (weft_runtime_start(&rt, &cfg) != 0) {
        fprintf(stderr, "io_many: runtime start failed\n");
        kill(child, SIGKILL);
        return 2;
    }
    weft_handle *h;
    if (weft_submit(rt, server_root, NULL, &h) != 0) {
        fprintf(stderr, "io_many: submit failed\n");
        kill(child, SIGKILL);
        return 2;
    }
    long rss_before = rss_bytes(); /* the server waits in accept; no connection yet */
    char c = 'S';
    CHECK(write(control, &c, 1) == 1, "start: %s", strerror(errno));
    /* The clients pause (or fail, and close the control socket). */
    int paused = read(control, &c, 1) == 1 && c == 'P';
    CHECK(paused, "the clients never paused");
    weft_time end = weft_now() + SAFETY;
    int parked = 0;
    while (paused && !(parked = all_server_tasks_parked()) && weft_now() < end)
        sched_yield();
    int parked_count = atomic_load(&in_read);
    long rss_parked = rss_bytes();
    CHECK(parked, "the pause: %d server tasks of %d in weft_read", parked_count, nconns);
    c = 'G';
    if (paused)
        CHECK(write(control, &c, 1) == 1, "go: %s", strerror(errno));
    int report[2] = {0, 0};
    CHECK(read(control, report, sizeof(report)) == (ssize_t)sizeof(report),
          "no report from the clients");
    int wstatus = 0;
    waitpid(child, &wstatus, 0);
    CHECK(WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 0,
          "the client process ended with status %d (signal %d), %d failed checks",
          WIFEXITED(wstatus) ? WEXITSTATUS(wstatus) : -1,
          WIFSIGNALED(wstatus) ? WTERMSIG(wstatus) : 0, report[1]);
    /* The clients are gone, their connections with them: every server task ends. */
    int status = -1;
    int rc = weft_handle_wait(h, weft_now() + SAFETY, &status);
    CHECK(rc == 0 && status == 0, "server: wait %d, status %d", rc, status);
    weft_handle_release(h);
    weft_runtime_shutdown(rt); /* after a failure, cancels a server still waiting to accept */
    close(control);
    close(listener);
    clients_done = report[0];

    long per_conn = parked ? (rss_parked - rss_before) / nconns : -1;
    CHECK(atomic_load(&accepted) == nconns, "accepted %d of %d", atomic_load(&accepted), nconns);
    CHECK(atomic_load(&server_done) == nconns && atomic_load(&server_errors) == 0,
          "server tasks: %d finished, %d failed", atomic_load(&server_done),
          atomic_load(&server_errors));
    CHECK(clients_done == nconns, "clients: %d of %d saw the end of the stream", clients_done,
          nconns);
#ifndef UNDER_TSAN
    CHECK(per_conn < LEAK_BOUND, "%ld bytes per idle connection: a leak?", per_conn);
#else
    printf(
        "io_many: (ThreadSanitizer gives every task a fiber and shadows its memory: no bound)\n");
#endif
    printf("io_many: %d connections (%d round trips each), %d server tasks parked at once, "
           "workers=%d\n",
           nconns, ROUNDS, parked_count, workers);
    printf("io_many: bytes per idle connection: %ld (resident set %ld -> %ld KiB: a server task "
           "parked in weft_read, its stack, its descriptor record; the clients are another "
           "process)\n",
           per_conn, rss_before / 1024, rss_parked / 1024);
    int ok = atomic_load(&failures) == 0;
    printf("%d passed, %d failed\n", ok, !ok);
    return ok ? 0 : 1;
}
