// SPDX-License-Identifier: MIT
/*
 * Submitters that stop only when they are told -ESHUTDOWN, racing a shutdown that nothing holds
 * open: plain threads submit to a long-lived runtime in a loop while the main thread shuts it
 * down, and each keeps calling until it has made a call that began after weft_runtime_shutdown
 * returned (it read the flag the main thread sets on return before calling). A submitter cannot
 * know whether its next call comes before or after another thread's shutdown returns; the
 * contract (weft.h, weft_runtime_shutdown) is that every such call is answered.
 *
 * Checked: weft_submit returns 0 or -ESHUTDOWN, and -ESHUTDOWN for good once refused (never 0
 * after a refusal, never 0 for a call begun after the return); a second weft_runtime_shutdown,
 * during the first or after it, returns -ESHUTDOWN; an accepted submission runs at most once and
 * its handle reports 0 (it ran) or -ECANCELED (the shutdown cancelled it before it started),
 * also when waited for after the runtime is gone; no task runs after shutdown returned. Under
 * ASan and TSan: no access to freed memory, no race.
 *
 * Usage: submit_shutdown [rounds [seed]]
 */
#define STRESS_NAME "submit_shutdown"
#define STRESS_SEEDED

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "../support.h"
#include "weft.h"

#ifdef UNDER_TSAN
#define DEFAULT_ROUNDS 60
#else
#define DEFAULT_ROUNDS 300
#endif

#define SUBMITTERS 4
#define KEEP 8 /* handles a submitter keeps to wait for after the round */

static struct {
    weft_runtime *rt;
    atomic_int accepted; /* submissions accepted this round */
    atomic_int ran;      /* tasks that ran this round */
    atomic_int returned; /* the round's weft_runtime_shutdown has returned */
} R;

static struct {
    atomic_long accepted, refused_during, refused_after, waited_after;
} stats;

typedef struct submitter {
    pthread_t th;
    uint64_t seed;
    weft_handle *kept[KEEP];
    int nkept;
} submitter;

static int job(void *arg)
{
    (void)arg;
    atomic_fetch_add(&R.ran, 1);
    return 0;
}

static void *submitter_main(void *arg)
{
    submitter *s = arg;
    int refused = 0;
    for (;;) {
        int after = atomic_load(&R.returned);
        weft_handle *h = NULL;
        int rc = weft_submit(R.rt, job, NULL, &h);
        if (rc == 0) {
            CHECK(!refused, "accepted after a refusal");
            CHECK(!after, "accepted by a call begun after the shutdown returned");
            atomic_fetch_add(&R.accepted, 1);
            atomic_fetch_add(&stats.accepted, 1);
            if (s->nkept < KEEP && below(&s->seed, 4) == 0) {
                s->kept[s->nkept++] = h;
            } else if (below(&s->seed, 2)) {
                int st = 1;
                CHECK(weft_handle_wait(h, WEFT_NEVER, &st) == 0 && (st == 0 || st == -ECANCELED),
                      "handle wait: status %d", st);
                weft_handle_release(h);
            } else {
                weft_handle_release(h);
            }
            continue;
        }
        CHECK(rc == -ESHUTDOWN, "weft_submit returned %d", rc);
        refused = 1;
        if (after) {
            atomic_fetch_add(&stats.refused_after, 1);
            break;
        }
        atomic_fetch_add(&stats.refused_during, 1);
        sched_yield(); /* leaves the cores to the shutdown */
    }
    /* A second shutdown, after the first returned. */
    int rc = weft_runtime_shutdown(R.rt);
    CHECK(rc == -ESHUTDOWN, "a late weft_runtime_shutdown returned %d", rc);
    return NULL;
}

static void *second_shutdown(void *arg)
{
    (void)arg;
    int rc = weft_runtime_shutdown(R.rt);
    /* 0 if it came first: then the main thread's call is the second. */
    return (void *)(intptr_t)rc;
}

static void one_round(uint64_t *rng)
{
    atomic_store(&R.accepted, 0);
    atomic_store(&R.ran, 0);
    atomic_store(&R.returned, 0);
    weft_config cfg = {.workers = 1 + below(rng, 3)};
    int rc = weft_runtime_start(&R.rt, &cfg);
    CHECK(rc == 0, "weft_runtime_start %d", rc);
    if (rc)
        return;
    static submitter subs[SUBMITTERS];
    int started = 0;
    for (int i = 0; i < SUBMITTERS; i++) {
        subs[i] = (submitter){.seed = next_rand(rng)};
        if (pthread_create(&subs[i].th, NULL, submitter_main, &subs[i]) == 0)
            started |= 1 << i;
        else
            CHECK(0, "pthread_create");
    }
    /* Shut down after a few accepted submissions, at a random point. */
    int target = (int)below(rng, 64);
    while (atomic_load(&R.accepted) < target && started)
        sched_yield();
    pthread_t racer;
    int racing = below(rng, 4) == 0 && pthread_create(&racer, NULL, second_shutdown, NULL) == 0;
    rc = weft_runtime_shutdown(R.rt);
    if (racing) {
        /* The call that came second returns at once, maybe before the first is done. */
        void *other;
        pthread_join(racer, &other);
        int orc = (int)(intptr_t)other;
        CHECK((rc == 0 && orc == -ESHUTDOWN) || (rc == -ESHUTDOWN && orc == 0),
              "two shutdowns returned %d and %d", rc, orc);
    } else {
        CHECK(rc == 0, "weft_runtime_shutdown %d", rc);
    }
    int ran_at_return = atomic_load(&R.ran);
    atomic_store(&R.returned, 1);
    for (int i = 0; i < SUBMITTERS; i++)
        if (started & (1 << i))
            pthread_join(subs[i].th, NULL);
    int ran = atomic_load(&R.ran), accepted = atomic_load(&R.accepted);
    CHECK(ran == ran_at_return, "%d tasks ran after the shutdown returned", ran - ran_at_return);
    CHECK(ran <= accepted, "%d tasks ran, %d were accepted", ran, accepted);
    /* Handles outlive their runtime. */
    for (int i = 0; i < SUBMITTERS; i++) {
        for (int k = 0; k < subs[i].nkept; k++) {
            int st = 1;
            CHECK(weft_handle_wait(subs[i].kept[k], WEFT_NEVER, &st) == 0 &&
                      (st == 0 || st == -ECANCELED),
                  "kept handle: status %d", st);
            weft_handle_release(subs[i].kept[k]);
            atomic_fetch_add(&stats.waited_after, 1);
        }
    }
}

int main(int argc, char **argv)
{
    int rounds = argc > 1 ? atoi(argv[1]) : DEFAULT_ROUNDS;
    run_seed = argc > 2 ? strtoull(argv[2], NULL, 0) : 20261206;
    uint64_t rng = run_seed;
    for (int i = 0; i < rounds && !atomic_load(&failures); i++)
        one_round(&rng);
    int f = atomic_load(&failures);
    printf(STRESS_NAME ": %d rounds, %ld accepted, %ld refused during the shutdown, %ld after it, "
                       "%ld handles waited for after it, %d failures\n",
           rounds, atomic_load(&stats.accepted), atomic_load(&stats.refused_during),
           atomic_load(&stats.refused_after), atomic_load(&stats.waited_after), f);
    return f ? 1 : 0;
}
