// SPDX-License-Identifier: MIT
/*
 * weft_close on a plain thread while the runtime that registered the descriptors shuts down.
 *
 * weft_close may be called from any thread; weft_runtime_shutdown frees the runtime, its poller
 * with it. Each round: a long-lived runtime registers a few hundred socket pairs (a wait that
 * times out registers a descriptor), a few tasks stay parked in weft_read on some of them, and
 * then a plain thread closes them all with weft_close while the main thread shuts the runtime
 * down. A close must never touch the poller after the runtime has let it go.
 *
 * Checked: every weft_close returns 0; every parked reader ends with -EBADF (closed) or
 * -ECANCELED (the shutdown's cancel), nothing else; the sanitizers see no use of freed memory
 * and no race (a plain program, for ASan and TSan alike).
 *
 *   io_close_shutdown [rounds]   (default 1000; 20 under TSan)
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#define STRESS_NAME "io_close_shutdown"
#include "../support.h"
#include "weft.h"

#ifdef UNDER_TSAN
#define DEFAULT_ROUNDS 20
#else
#define DEFAULT_ROUNDS 1000
#endif
#define PAIRS 256
#define READERS 8

static int pairs[PAIRS][2];
static atomic_int go, readers_in;
static atomic_long closed_bad, reader_bad;

static int register_all(void *arg)
{
    (void)arg;
    for (int i = READERS; i < PAIRS; i++) {
        int rc = weft_fd_wait(pairs[i][0], WEFT_READABLE, weft_now());
        CHECK(rc == -ETIMEDOUT, "fd_wait: %d", rc);
    }
    return 0;
}

static int reader(void *arg)
{
    int fd = (int)(intptr_t)arg;
    char c;
    atomic_fetch_add(&readers_in, 1);
    ssize_t n = weft_read(fd, &c, 1);
    if (n != -EBADF && n != -ECANCELED) {
        CHECK(0, "reader: %zd", n);
        atomic_fetch_add(&reader_bad, 1);
    }
    return 0;
}

/* Until the readers have parked (each a wait that suspended, after its last read(2)), not
 * merely begun: a reader still inside read(2) when the closer closes its descriptor would race
 * the close, a bug of the program's, which ThreadSanitizer reports. */
static void wait_parked(weft_runtime *rt, uint64_t n)
{
    weft_metrics m;
    for (;;) {
        int rc = weft_runtime_metrics(rt, &m, sizeof m, NULL, 0);
        CHECK(rc == 0, "metrics: %d", rc);
        if (rc != 0 || m.total.parked >= n)
            return;
        sched_yield();
    }
}

static void *closer(void *arg)
{
    (void)arg;
    while (!atomic_load(&go))
        sched_yield();
    for (int i = 0; i < PAIRS; i++) {
        int rc = weft_close(pairs[i][0]);
        if (rc != 0) {
            CHECK(0, "weft_close: %d", rc);
            atomic_fetch_add(&closed_bad, 1);
        }
    }
    return NULL;
}

int main(int argc, char **argv)
{
    int rounds = argc > 1 ? atoi(argv[1]) : DEFAULT_ROUNDS;
    for (int r = 0; r < rounds; r++) {
        for (int i = 0; i < PAIRS; i++)
            if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, pairs[i]) != 0) {
                perror("io_close_shutdown: socketpair");
                return 2;
            }
        weft_runtime *rt;
        weft_config cfg = {.workers = 1 + (unsigned)(r % 2)};
        if (weft_runtime_start(&rt, &cfg) != 0) {
            fprintf(stderr, "io_close_shutdown: runtime start failed\n");
            return 2;
        }
        weft_handle *h, *readers[READERS];
        int st;
        atomic_store(&readers_in, 0);
        for (int i = 0; i < READERS; i++)
            CHECK(weft_submit(rt, reader, (void *)(intptr_t)pairs[i][0], &readers[i]) == 0,
                  "submit");
        CHECK(weft_submit(rt, register_all, NULL, &h) == 0, "submit");
        CHECK(weft_handle_wait(h, WEFT_NEVER, &st) == 0 && st == 0, "register: %d", st);
        weft_handle_release(h);
        spin_until(&readers_in, READERS);
        wait_parked(rt, READERS); /* register_all's waits time out without a park */
        atomic_store(&go, 0);
        pthread_t th;
        pthread_create(&th, NULL, closer, NULL);
        atomic_store(&go, 1);
        weft_runtime_shutdown(rt);
        pthread_join(th, NULL);
        for (int i = 0; i < READERS; i++)
            weft_handle_release(readers[i]);
        for (int i = 0; i < PAIRS; i++)
            close(pairs[i][1]);
    }
    int ok = atomic_load(&failures) == 0;
    printf("io_close_shutdown: %d rounds of %d descriptors closed during a shutdown: %ld bad "
           "closes, %ld bad reader ends\n",
           rounds, PAIRS, atomic_load(&closed_bad), atomic_load(&reader_bad));
    printf("%d passed, %d failed\n", ok, !ok);
    return ok ? 0 : 1;
}
