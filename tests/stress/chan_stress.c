// SPDX-License-Identifier: MIT
/*
 * Channels and select under load, with invariants: producers send numbered items over several
 * channels (buffered and rendezvous), consumers take them with selects over all of them, plain
 * threads feed and drain with the try calls, and a canceller cancels groups of tasks at random
 * moments. At the end every channel is closed and drained.
 *
 * Checked: no item is received twice; every item whose send returned 0 is received exactly once
 * (by a task, a plain thread, or the final drain); no send that returned a cancel code delivered
 * its item; every select returned one valid clause. Plain program, so that it runs under
 * ThreadSanitizer too.
 *
 *   chan_stress [--rounds R] [--workers W] [--seed S]
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../support.h"
#include "weft.h"

#define NCHAN 3
#define PRODUCERS 4
#define CONSUMERS 4
#define PER_PRODUCER 2000

static int rounds = 20, workers = 2;
static unsigned seed = 1;

static weft_chan *chans[NCHAN];
static atomic_uchar *state; /* per item: 0 unsent, 1 sent, 2 received; 3+ is an error */
static atomic_long errors, sent, received, cancelled_sends, selects;

static void mark_received(int id)
{
    /* 1: sent (or being sent). 2: received twice. 0: its send failed, so it was not delivered. */
    unsigned char was = atomic_fetch_add(&state[id], 1);
    if (was != 1)
        atomic_fetch_add(&errors, 1);
    atomic_fetch_add(&received, 1);
}

typedef struct producer {
    int first, count;
    unsigned rng;
} producer;

static unsigned lcg(unsigned *s)
{
    *s = *s * 1103515245u + 12345u;
    return *s >> 8;
}

static int produce(void *p)
{
    producer *pr = p;
    for (int i = 0; i < pr->count; i++) {
        int id = pr->first + i;
        weft_chan *c = chans[lcg(&pr->rng) % NCHAN];
        /* Marked sent before the send: a receiver may take it before the send returns. */
        atomic_store(&state[id], 1);
        int rc = weft_chan_send(c, &id);
        if (rc == 0) {
            atomic_fetch_add(&sent, 1);
            continue;
        }
        /* Not delivered: nobody may have received it (state still 1), and nobody will. */
        unsigned char expect = 1;
        if (!atomic_compare_exchange_strong(&state[id], &expect, 0))
            atomic_fetch_add(&errors, 1);
        if (rc != -ECANCELED && rc != -EPIPE)
            atomic_fetch_add(&errors, 1);
        atomic_fetch_add(&cancelled_sends, 1);
        return 0;
    }
    return 0;
}

static int consume(void *p)
{
    (void)p;
    int items[NCHAN];
    weft_select_op ops[NCHAN];
    for (int i = 0; i < NCHAN; i++)
        ops[i] = (weft_select_op){.chan = chans[i], .kind = WEFT_SELECT_RECV, .item = &items[i]};
    for (;;) {
        int k = weft_select(ops, NCHAN, 0);
        atomic_fetch_add(&selects, 1);
        if (k < 0) {
            if (k != -ECANCELED)
                atomic_fetch_add(&errors, 1);
            return 0;
        }
        if (k >= NCHAN) {
            atomic_fetch_add(&errors, 1);
            return 0;
        }
        if (ops[k].result == 0)
            mark_received(items[k]);
    }
}

static atomic_int feeding;

/* A plain thread takes items with the try calls while the tasks run. */
static void *drainer(void *p)
{
    (void)p;
    while (atomic_load(&feeding)) {
        int v;
        for (int i = 0; i < NCHAN; i++)
            if (weft_chan_try_recv(chans[i], &v) == 0)
                mark_received(v);
        sched_yield();
    }
    return NULL;
}

static int round_root(void *p)
{
    int r = (int)(intptr_t)p;
    producer prs[PRODUCERS];
    weft_scope *s;
    if (weft_scope_open(&s, &(weft_scope_opts){.policy = WEFT_COLLECT}) != 0)
        return -ENOMEM;
    for (int i = 0; i < CONSUMERS; i++)
        weft_spawn(s, consume, NULL);
    for (int i = 0; i < PRODUCERS; i++) {
        prs[i] = (producer){.first = (r * PRODUCERS + i) * PER_PRODUCER,
                            .count = PER_PRODUCER,
                            .rng = seed * 31 + (unsigned)(r * PRODUCERS + i)};
        weft_spawn(s, produce, &prs[i]);
    }
    unsigned rng = seed + (unsigned)r;
    for (unsigned k = lcg(&rng) % 2000; k > 0; k--)
        weft_yield();
    weft_scope_cancel(s); /* mid-stream: producers and consumers stop where they are */
    weft_scope_join(s);
    weft_scope_release(s);
    return 0;
}

int main(int argc, char **argv)
{
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--rounds"))
            rounds = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--workers"))
            workers = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--seed"))
            seed = (unsigned)atoi(argv[i + 1]);
    }
#ifdef UNDER_TSAN
    if (rounds > 4)
        rounds = 4;
#endif
    size_t items = (size_t)rounds * PRODUCERS * PER_PRODUCER;
    state = calloc(items, 1);
    size_t caps[NCHAN] = {0, 1, 64};
    for (int i = 0; i < NCHAN; i++)
        if (weft_chan_create(&chans[i], sizeof(int), caps[i]) != 0)
            return 2;
    atomic_store(&feeding, 1);
    pthread_t th;
    pthread_create(&th, NULL, drainer, NULL);
    weft_runtime *rt;
    weft_config cfg = {.workers = (unsigned)workers};
    if (weft_runtime_start(&rt, &cfg) != 0)
        return 2;
    for (int r = 0; r < rounds; r++) {
        weft_handle *h;
        int status = 0;
        if (weft_submit(rt, round_root, (void *)(intptr_t)r, &h) != 0 ||
            weft_handle_wait(h, WEFT_NEVER, &status) != 0 || status != 0)
            atomic_fetch_add(&errors, 1);
        weft_handle_release(h);
    }
    atomic_store(&feeding, 0);
    pthread_join(th, NULL);
    weft_runtime_shutdown(rt);
    /* What is still buffered was sent and not yet received. */
    for (int i = 0; i < NCHAN; i++) {
        weft_chan_close(chans[i]);
        int v;
        while (weft_chan_try_recv(chans[i], &v) == 0)
            mark_received(v);
        if (weft_chan_try_recv(chans[i], &v) != -EPIPE)
            atomic_fetch_add(&errors, 1);
        weft_chan_destroy(chans[i]);
    }
    long lost = 0;
    for (size_t i = 0; i < items; i++)
        if (atomic_load(&state[i]) == 1) /* sent, never received */
            lost++;
    printf("chan_stress: rounds=%d workers=%d: %ld sent, %ld received, %ld sends cancelled, "
           "%ld selects, %ld lost, %ld errors\n",
           rounds, workers, atomic_load(&sent), atomic_load(&received),
           atomic_load(&cancelled_sends), atomic_load(&selects), lost, atomic_load(&errors));
    int ok = atomic_load(&errors) == 0 && lost == 0 && atomic_load(&sent) == atomic_load(&received);
    free(state);
    printf("%d passed, %d failed\n", ok, !ok);
    return ok ? 0 : 1;
}
