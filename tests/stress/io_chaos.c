// SPDX-License-Identifier: MIT
/*
 * Readiness under perturbed schedules: I/O scenarios run again and again, each run with another
 * WEFT_CHAOS seed (random yields at spawn and suspension points, forced steals, late timers,
 * spurious resumes of parked tasks; lib/sched.c), which the runtime reads when it is created,
 * on 1 to 3 workers.
 *
 * The scenarios, each checking that no wake-up is lost (every exchange completes, the run ends):
 *   echo     connections over the loopback, a client task and a server task each, numbered
 *            round trips checked byte for byte (half the clients receive with plain recv()
 *            and weft_fd_mark / weft_fd_wait_since, as a library doing its own I/O would);
 *   stream   tiny writes into a pipe of one page against small reads, every byte in order;
 *   stuck    a task parked in weft_read while another holds its worker in a plain blocking
 *            read(): the byte written for the first must reach it through another worker
 *            (a long-lived runtime fed from outside; its idle mask says when all sleep);
 *   deadline readers that nothing ever wakes end by their scope's deadline, and only by it.
 *
 * A run that hangs is stopped by alarm(), which names the seed and the scenario.
 *
 *   io_chaos [--seeds N] [--first S]   (default 40 seeds from 1; 6 under TSan)
 * Seed s runs on 1 + s % 3 workers (the stuck scenario on at least 2).
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define STRESS_NAME "io_chaos"
#include "../support.h"
#include "runtime.h"
#include "weft.h"

#ifdef UNDER_TSAN
#define DEFAULT_SEEDS 6
#define ECHO_CONNS 8
#define ECHO_ROUNDS 20
#define STREAM_BYTES 20000
#else
#define DEFAULT_SEEDS 40
#define ECHO_CONNS 32
#define ECHO_ROUNDS 100
#define STREAM_BYTES 200000
#endif
#define MSG 48
#define RUN_ALARM_S 120

static volatile sig_atomic_t current_seed, current_scenario;
static const char *const scenario_names[] = {"echo", "stream", "stuck", "deadline"};

static void on_alarm(int sig)
{
    (void)sig;
    char line[160];
    int n = snprintf(line, sizeof(line),
                     "io_chaos: seed %d, scenario %s: no end after %d s (a lost wake-up?)\n",
                     (int)current_seed, scenario_names[current_scenario], RUN_ALARM_S);
    if (write(2, line, (size_t)n) < 0) {
    }
    _exit(1);
}

static int run_with(unsigned workers, weft_fn root, void *arg)
{
    weft_config cfg = {.workers = workers};
    alarm(RUN_ALARM_S);
    int rc = weft_run(&cfg, root, arg);
    alarm(0);
    return rc;
}

static unsigned char byte_at(unsigned id, size_t off)
{
    return (unsigned char)(id * 97 + off * 13 + (off >> 7));
}

/* ---- echo ---------------------------------------------------------------------------------- */

typedef struct echo {
    int listener;
    uint16_t port;
    atomic_int round_trips;
} echo;

static int echo_server_conn(void *arg)
{
    int fd = (int)(intptr_t)arg;
    unsigned char buf[MSG];
    for (;;) {
        size_t got = 0;
        while (got < MSG) {
            ssize_t n = weft_read(fd, buf + got, MSG - got);
            if (n == 0 && got == 0)
                goto out;
            if (n <= 0) {
                CHECK(0, "server read: %zd", n);
                goto out;
            }
            got += (size_t)n;
        }
        ssize_t w = weft_write_all(fd, buf, MSG, NULL);
        CHECK(w == MSG, "server write: %zd", w);
        if (w != MSG)
            break;
    }
out:
    weft_close(fd);
    return 0;
}

static int echo_acceptor(void *arg)
{
    echo *e = arg;
    weft_scope *s;
    if (weft_scope_open(&s, NULL) != 0)
        return -ENOMEM;
    for (int i = 0; i < ECHO_CONNS; i++) {
        int fd = weft_accept(e->listener, NULL, NULL);
        CHECK(fd >= 0, "accept: %d", fd);
        if (fd < 0)
            break;
        CHECK(weft_spawn(s, echo_server_conn, (void *)(intptr_t)fd) == 0, "spawn");
    }
    return weft_scope_close(s);
}

/* A receive as a library that does its own I/O would write it: mark, read, and on EAGAIN wait
 * for an edge after the mark (weft_fd_wait_since). */
static ssize_t marked_recv(int fd, void *buf, size_t len)
{
    for (;;) {
        weft_fd_edges e;
        int rc = weft_fd_mark(fd, &e);
        if (rc < 0)
            return rc;
        ssize_t n = recv(fd, buf, len, MSG_DONTWAIT);
        if (n >= 0 || (errno != EAGAIN && errno != EWOULDBLOCK))
            return n < 0 ? -errno : n;
        rc = weft_fd_wait_since(fd, WEFT_READABLE, &e, WEFT_NEVER);
        if (rc < 0)
            return rc;
    }
}

static int echo_client(void *arg)
{
    echo *e = arg;
    static atomic_uint ids;
    unsigned id = atomic_fetch_add(&ids, 1);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
                            .sin_port = htons(e->port)};
    /* The message goes in two pieces: without this, Nagle holds the second for the delayed
     * acknowledgement of the first (40 ms). */
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    int rc = weft_connect(fd, (struct sockaddr *)&a, sizeof(a));
    CHECK(rc == 0, "connect: %d", rc);
    if (rc != 0) {
        weft_close(fd);
        return 0;
    }
    unsigned char out[MSG], in[MSG];
    for (int r = 0; r < ECHO_ROUNDS; r++) {
        for (int j = 0; j < MSG; j++)
            out[j] = byte_at(id, (size_t)(r * MSG + j));
        /* In two pieces, a yield between: the server sees partial messages too. */
        ssize_t w = weft_send_all(fd, out, MSG / 3, 0, NULL);
        weft_yield();
        if (w == MSG / 3)
            w += weft_send_all(fd, out + MSG / 3, MSG - MSG / 3, 0, NULL);
        CHECK(w == MSG, "client send: %zd", w);
        size_t got = 0;
        while (got < MSG) {
            ssize_t n = (id & 1) ? marked_recv(fd, in + got, MSG - got)
                                 : weft_recv(fd, in + got, MSG - got, 0);
            if (n <= 0) {
                CHECK(0, "client recv: %zd in round %d", n, r);
                goto out;
            }
            got += (size_t)n;
        }
        CHECK(memcmp(in, out, MSG) == 0, "client %u round %d: echo differs", id, r);
        atomic_fetch_add(&e->round_trips, 1);
    }
out:
    weft_close(fd);
    return 0;
}

static int echo_root(void *arg)
{
    echo *e = arg;
    weft_scope *s;
    if (weft_scope_open(&s, NULL) != 0)
        return -ENOMEM;
    weft_spawn(s, echo_acceptor, e);
    for (int i = 0; i < ECHO_CONNS; i++)
        weft_spawn(s, echo_client, e);
    return weft_scope_close(s);
}

static void run_echo(unsigned workers)
{
    echo e = {0};
    e.listener = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    if (e.listener < 0 || bind(e.listener, (struct sockaddr *)&a, sizeof(a)) != 0 ||
        listen(e.listener, ECHO_CONNS) != 0 ||
        getsockname(e.listener, (struct sockaddr *)&a, &len) != 0) {
        CHECK(0, "listener: %s", strerror(errno));
        return;
    }
    e.port = ntohs(a.sin_port);
    int rc = run_with(workers, echo_root, &e);
    CHECK(rc == 0, "echo: run %d", rc);
    CHECK(atomic_load(&e.round_trips) == ECHO_CONNS * ECHO_ROUNDS, "echo: %d of %d round trips",
          atomic_load(&e.round_trips), ECHO_CONNS * ECHO_ROUNDS);
    weft_close(e.listener);
}

/* ---- stream -------------------------------------------------------------------------------- */

typedef struct stream {
    int p[2];
    size_t got;
    long bad_at;
} stream;

static int stream_reader(void *arg)
{
    stream *st = arg;
    unsigned char buf[5];
    uint64_t rng = 11;
    st->bad_at = -1;
    while (st->got < STREAM_BYTES) {
        ssize_t n = weft_read(st->p[0], buf, 1 + below(&rng, sizeof(buf)));
        if (n <= 0) {
            CHECK(0, "stream read: %zd at %zu", n, st->got);
            return 0;
        }
        for (ssize_t i = 0; i < n; i++)
            if (buf[i] != byte_at(7, st->got + (size_t)i) && st->bad_at < 0)
                st->bad_at = (long)(st->got + (size_t)i);
        st->got += (size_t)n;
    }
    return 0;
}

static int stream_writer(void *arg)
{
    stream *st = arg;
    unsigned char buf[7];
    uint64_t rng = 13;
    size_t off = 0;
    while (off < STREAM_BYTES) {
        size_t n = 1 + below(&rng, sizeof(buf));
        if (n > STREAM_BYTES - off)
            n = STREAM_BYTES - off;
        for (size_t i = 0; i < n; i++)
            buf[i] = byte_at(7, off + i);
        ssize_t w = weft_write(st->p[1], buf, n);
        if (w <= 0) {
            CHECK(0, "stream write: %zd at %zu", w, off);
            return 0;
        }
        off += (size_t)w;
    }
    return 0;
}

static int stream_root(void *arg)
{
    weft_scope *s;
    if (weft_scope_open(&s, NULL) != 0)
        return -ENOMEM;
    weft_spawn(s, stream_reader, arg);
    weft_spawn(s, stream_writer, arg);
    return weft_scope_close(s);
}

static void run_stream(unsigned workers)
{
    stream st = {0};
    if (pipe2(st.p, O_NONBLOCK | O_CLOEXEC) != 0) {
        CHECK(0, "pipe: %s", strerror(errno));
        return;
    }
    fcntl(st.p[0], F_SETPIPE_SZ, 4096);
    int rc = run_with(workers, stream_root, &st);
    CHECK(rc == 0, "stream: run %d", rc);
    CHECK(st.got == STREAM_BYTES && st.bad_at < 0, "stream: %zu of %d bytes, first bad at %ld",
          st.got, STREAM_BYTES, st.bad_at);
    weft_close(st.p[0]);
    weft_close(st.p[1]);
}

/* ---- stuck ---------------------------------------------------------------------------------- */

/* A long-lived runtime, so that the tasks come from outside: the reader first; once it has
 * parked and every worker sleeps (one in the poller), the blocker, which the first sleeper takes,
 * perhaps the one in the poller. The runtime's idle mask and poller say when all sleep. */
typedef struct stuck {
    weft_runtime *rt;
    int io[2], block[2];
    atomic_int reader_in, blocker_in;
    ssize_t got;
} stuck;

static int stuck_reader(void *arg)
{
    stuck *k = arg;
    char c;
    atomic_store(&k->reader_in, 1);
    k->got = weft_read(k->io[0], &c, 1);
    return 0;
}

static int stuck_blocker(void *arg)
{
    stuck *k = arg;
    char c;
    atomic_store(&k->blocker_in, 1);
    return read(k->block[0], &c, 1) == 1 ? 0 : -EIO; /* holds its worker */
}

static int all_asleep(weft_runtime *rt, int in_poller)
{
    uint64_t all = (1ull << rt->nworkers) - 1;
    return atomic_load(&rt->idle_mask[0]) == all &&
           (!in_poller || atomic_load(&rt->poller.held) == 1);
}

/* Polls until `ok` or a bound only a broken runtime reaches; 1 if it held. */
#define WAIT_FOR(ok)                                                                               \
    ({                                                                                             \
        weft_time end_ = weft_now() + 10 * WEFT_SEC;                                               \
        while (!(ok) && weft_now() < end_)                                                         \
            sched_yield();                                                                         \
        (ok);                                                                                      \
    })

static void run_stuck(unsigned workers)
{
    if (workers < 2)
        workers = 2; /* one worker, held: nobody could serve the reader */
    stuck k = {0};
    if (pipe2(k.io, O_NONBLOCK | O_CLOEXEC) != 0 || pipe2(k.block, O_CLOEXEC) != 0) {
        CHECK(0, "pipe: %s", strerror(errno));
        return;
    }
    weft_config cfg = {.workers = workers, .watchdog_ns = -1};
    alarm(RUN_ALARM_S);
    if (weft_runtime_start(&k.rt, &cfg) != 0) {
        CHECK(0, "stuck: runtime start");
        return;
    }
    weft_handle *hr = NULL, *hb = NULL;
    CHECK(WAIT_FOR(all_asleep(k.rt, 0)), "stuck: the workers never slept");
    CHECK(weft_submit(k.rt, stuck_reader, &k, &hr) == 0, "submit");
    CHECK(WAIT_FOR(atomic_load(&k.reader_in) && all_asleep(k.rt, 1)), "stuck: no park");
    CHECK(weft_submit(k.rt, stuck_blocker, &k, &hb) == 0, "submit");
    CHECK(WAIT_FOR(atomic_load(&k.blocker_in)), "stuck: the blocker never ran");
    CHECK(write(k.io[1], "r", 1) == 1, "write: %s", strerror(errno));
    int st = -1;
    int served = weft_handle_wait(hr, weft_now() + 10 * WEFT_SEC, &st);
    CHECK(served == 0, "stuck: the reader waited for the stuck worker (%d)", served);
    CHECK(write(k.block[1], "b", 1) == 1, "write: %s", strerror(errno));
    CHECK(weft_handle_wait(hb, WEFT_NEVER, &st) == 0 && st == 0, "stuck: blocker %d", st);
    CHECK(weft_handle_wait(hr, WEFT_NEVER, &st) == 0 && k.got == 1, "stuck: read %zd", k.got);
    weft_handle_release(hr);
    weft_handle_release(hb);
    weft_runtime_shutdown(k.rt);
    alarm(0);
    for (int i = 0; i < 2; i++) {
        weft_close(k.io[i]);
        close(k.block[i]);
    }
}

/* ---- deadline ------------------------------------------------------------------------------ */

#define SILENT_READERS 8

typedef struct silent {
    int pairs[SILENT_READERS][2];
    atomic_int timed_out, other;
} silent;

typedef struct silent_arg {
    silent *sl;
    int fd;
} silent_arg;

static int silent_one(void *arg)
{
    silent_arg *a = arg;
    char c;
    ssize_t n = weft_read(a->fd, &c, 1);
    atomic_fetch_add(n == -ETIMEDOUT ? &a->sl->timed_out : &a->sl->other, 1);
    return 0;
}

static int silent_root(void *arg)
{
    silent *sl = arg;
    silent_arg args[SILENT_READERS];
    weft_scope *s;
    if (weft_scope_open(&s, NULL) != 0)
        return -ENOMEM;
    int rc = 0;
    for (int i = 0; i < SILENT_READERS && rc == 0; i++) {
        args[i] = (silent_arg){.sl = sl, .fd = sl->pairs[i][0]};
        rc = weft_spawn(s, silent_one, &args[i]);
    }
    /* The deadline once every reader exists: a machine loaded enough (a sanitizer's build beside
     * busy processes) took longer than the deadline to spawn them all. */
    if (rc == 0)
        rc = weft_scope_set_deadline(s, weft_now() + 20 * WEFT_MSEC);
    CHECK(rc == 0, "deadline: spawn or set_deadline %d", rc);
    rc = weft_scope_close(s);
    return rc == -ETIMEDOUT ? 0 : rc;
}

static void run_deadline(unsigned workers)
{
    silent sl;
    memset(&sl, 0, sizeof(sl));
    for (int i = 0; i < SILENT_READERS; i++)
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sl.pairs[i]) != 0) {
            CHECK(0, "socketpair: %s", strerror(errno));
            return;
        }
    weft_time t0 = weft_now();
    int rc = run_with(workers, silent_root, &sl);
    weft_time took = weft_now() - t0;
    CHECK(rc == 0, "deadline: run %d", rc);
    CHECK(atomic_load(&sl.timed_out) == SILENT_READERS && atomic_load(&sl.other) == 0,
          "deadline: %d timed out, %d ended otherwise", atomic_load(&sl.timed_out),
          atomic_load(&sl.other));
    CHECK(took >= 20 * WEFT_MSEC, "deadline: ended after %lld ns", (long long)took);
    for (int i = 0; i < SILENT_READERS; i++) {
        weft_close(sl.pairs[i][0]);
        close(sl.pairs[i][1]);
    }
}

int main(int argc, char **argv)
{
    int seeds = DEFAULT_SEEDS, first = 1;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--seeds"))
            seeds = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--first"))
            first = atoi(argv[i + 1]);
    }
    signal(SIGALRM, on_alarm);
    void (*const scenarios[])(unsigned) = {run_echo, run_stream, run_stuck, run_deadline};
    for (int seed = first; seed < first + seeds; seed++) {
        char v[32];
        snprintf(v, sizeof(v), "%d", seed);
        setenv("WEFT_CHAOS", v, 1); /* read when the next runtime is created */
        unsigned workers = 1 + (unsigned)(seed % 3);
        current_seed = seed;
        for (int k = 0; k < 4; k++) {
            current_scenario = k;
            int before = atomic_load(&failures);
            scenarios[k](workers);
            if (atomic_load(&failures) != before)
                fprintf(stderr, "io_chaos: seed %d, workers %u, scenario %s failed\n", seed,
                        workers, scenario_names[k]);
        }
    }
    unsetenv("WEFT_CHAOS");
    int ok = atomic_load(&failures) == 0;
    printf("io_chaos: %d seeds from %d, workers 1 to 3: %s\n", seeds, first,
           ok ? "every exchange completed" : "FAILED");
    printf("%d passed, %d failed\n", ok, !ok);
    return ok ? 0 : 1;
}
