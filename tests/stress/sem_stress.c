// SPDX-License-Identifier: MIT
/*
 * Semaphore stress: many tasks acquire, try, hold across suspension points and release tokens
 * while their scopes are cancelled by other tasks at random moments or time out, and a foreign
 * thread takes and returns tokens with try_acquire/release. Waiters are woken by a release and
 * by a cancel at the same instant again and again.
 *
 * Checked: the number of tasks (and the foreign thread) holding a token never exceeds the tokens
 * the semaphore was created with; every acquire that fails reports only -ECANCELED/-ETIMEDOUT;
 * no release overflows; when everything has ended all tokens are back (weft_sem_available == N)
 * and the semaphore can be destroyed; every spawned task ran exactly once.
 *
 * Usage: sem_stress [rounds [seed]]
 */
#define STRESS_NAME "sem_stress"
#define STRESS_SEEDED

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../support.h"
#include "weft.h"

/* Under TSan every task that gets a stack of its own costs a millisecond or more. */
#ifdef UNDER_TSAN
#define DEFAULT_ROUNDS 8
#else
#define DEFAULT_ROUNDS 120
#endif

#define GROUPS 4
#define PER_GROUP 25
#define CANCELLERS 2

/* One round's shared state. */
static struct {
    weft_sem *sem;
    int tokens;
    atomic_int held, max_held;
    atomic_int ready; /* groups whose scope is published */
    _Atomic(weft_scope *) group_scope[GROUPS];
    atomic_int cancellers_done;
    atomic_int ran[GROUPS * PER_GROUP];
} R;

/* The foreign thread, shared by all rounds: runs while `active` is set, acknowledges stops. */
static struct {
    atomic_int active;
    atomic_int generation, acked;
    atomic_int quit;
    atomic_long taken;
} F;

static struct {
    atomic_long acquired, tried, refused_by_cancel, would_block, tasks, cancels, rounds;
} stats;

static void note_held(void)
{
    int h = count_up_with_high(&R.held, &R.max_held);
    CHECK(h <= R.tokens, "%d holders of %d tokens", h, R.tokens);
}

static void give_back(void)
{
    atomic_fetch_sub(&R.held, 1);
    int rc = weft_sem_release(R.sem);
    CHECK(rc == 0, "release returned %d", rc);
}

/* Holds a token across a random suspension point; cancelled or not, the token goes back. */
static void hold(uint64_t *rng)
{
    note_held();
    switch (below(rng, 3)) {
    case 0:
        (void)weft_yield();
        break;
    case 1:
        (void)weft_sleep_for((weft_time)below(rng, 100) * WEFT_USEC);
        break;
    default:
        break;
    }
    give_back();
}

typedef struct worker_arg {
    int index;
    uint64_t seed;
} worker_arg;

static worker_arg wargs[GROUPS * PER_GROUP];

static int worker(void *p)
{
    worker_arg *a = p;
    int r = atomic_fetch_add(&R.ran[a->index], 1);
    CHECK(r == 0, "worker %d ran %d times", a->index, r + 1);
    atomic_fetch_add(&stats.tasks, 1);
    uint64_t rng = a->seed;
    int steps = 1 + (int)below(&rng, 6);
    for (int i = 0; i < steps; i++) {
        int rc;
        switch (below(&rng, 5)) {
        case 0:
        case 1:
        case 2:
            rc = weft_sem_acquire(R.sem);
            if (rc == 0) {
                atomic_fetch_add(&stats.acquired, 1);
                hold(&rng);
                break;
            }
            CHECK(rc == -ECANCELED || rc == -ETIMEDOUT, "acquire returned %d", rc);
            atomic_fetch_add(&stats.refused_by_cancel, 1);
            /* Level-triggered: it keeps answering so, and takes no token. */
            CHECK(weft_sem_acquire(R.sem) == rc, "second acquire differs");
            return rc;
        case 3:
            atomic_fetch_add(&stats.tried, 1);
            rc = weft_sem_try_acquire(R.sem);
            if (rc == 0)
                hold(&rng);
            else
                CHECK(rc == -EAGAIN, "try_acquire returned %d", rc);
            break;
        default:
            rc = weft_sleep_for((weft_time)below(&rng, 100) * WEFT_USEC);
            if (rc) {
                CHECK(rc == -ECANCELED || rc == -ETIMEDOUT, "sleep returned %d", rc);
                return rc;
            }
            break;
        }
    }
    return 0;
}

typedef struct group_arg {
    int index;
    uint64_t seed;
} group_arg;

static group_arg gargs[GROUPS];

static int group(void *p)
{
    group_arg *g = p;
    uint64_t rng = g->seed;
    weft_scope_opts o = {0};
    if (below(&rng, 2))
        o.timeout_ns = (weft_time)(300 + below(&rng, 3000)) * WEFT_USEC;
    weft_scope *s;
    int rc = weft_scope_open(&s, &o);
    CHECK(rc == 0, "group open %d", rc);
    if (rc) {
        atomic_fetch_add(&R.ready, 1); /* the cancellers skip a NULL scope */
        return rc;
    }
    atomic_store(&R.group_scope[g->index], s);
    atomic_fetch_add(&R.ready, 1);
    for (int i = 0; i < PER_GROUP; i++) {
        int k = g->index * PER_GROUP + i;
        wargs[k] = (worker_arg){.index = k, .seed = next_rand(&rng)};
        rc = weft_spawn(s, worker, &wargs[k]);
        if (rc) {
            CHECK(rc == -ECANCELED || rc == -ETIMEDOUT, "spawn %d", rc);
            atomic_fetch_add(&R.ran[k], 1); /* refused: counts as its single run */
        }
    }
    rc = weft_scope_join(s);
    CHECK(rc == 0 || rc == -ECANCELED || rc == -ETIMEDOUT, "group join %d", rc);
    CHECK(weft_scope_error_count(s) == 0, "a worker failed");
    /* The cancellers may still hold this scope's address: release it after they are done. */
    while (atomic_load(&R.cancellers_done) < CANCELLERS)
        CHECK(weft_yield() == 0, "group yield");
    CHECK(weft_scope_release(s) == 0, "group release");
    return 0;
}

static int canceller(void *p)
{
    uint64_t rng = (uint64_t)(uintptr_t)p;
    while (atomic_load(&R.ready) < GROUPS)
        if (weft_yield() != 0)
            break;
    int n = (int)below(&rng, 4);
    for (int i = 0; i < n; i++) {
        (void)weft_sleep_for((weft_time)below(&rng, 1500) * WEFT_USEC);
        weft_scope *s = atomic_load(&R.group_scope[below(&rng, GROUPS)]);
        if (!s)
            continue;
        CHECK(weft_scope_cancel(s) == 0, "cancel of a group scope");
        atomic_fetch_add(&stats.cancels, 1);
    }
    atomic_fetch_add(&R.cancellers_done, 1);
    return 0;
}

static void *foreign_main(void *p)
{
    (void)p;
    uint64_t rng = 12345;
    for (;;) {
        int g = atomic_load(&F.generation);
        if (atomic_load(&F.quit))
            return NULL;
        if (!atomic_load(&F.active)) {
            atomic_store(&F.acked, g);
            sched_yield();
            continue;
        }
        if (weft_sem_try_acquire(R.sem) == 0) {
            note_held();
            atomic_fetch_add(&F.taken, 1);
            for (unsigned k = below(&rng, 200); k; k--)
                __asm__ volatile("" ::: "memory");
            give_back();
        }
        sched_yield();
    }
}

/* Stops the foreign thread's use of the semaphore and waits until it has let go. */
static void foreign_stop(void)
{
    atomic_store(&F.active, 0);
    int g = atomic_fetch_add(&F.generation, 1) + 1;
    while (atomic_load(&F.acked) < g)
        CHECK(weft_yield() == 0, "root yield");
}

static int one_round(uint64_t *rng)
{
    memset(&R, 0, sizeof(R));
    R.tokens = 1 + (int)below(rng, 8);
    int rc = weft_sem_create(&R.sem, (unsigned)R.tokens);
    CHECK(rc == 0, "sem_create %d", rc);
    if (rc)
        return rc;
    atomic_store(&F.active, 1);

    weft_scope *cs, *gs;
    CHECK(weft_scope_open(&cs, NULL) == 0, "open");
    CHECK(weft_scope_open(&gs, NULL) == 0, "open"); /* nested in cs: never cancelled */
    for (int i = 0; i < GROUPS; i++) {
        gargs[i] = (group_arg){.index = i, .seed = next_rand(rng)};
        CHECK(weft_spawn(gs, group, &gargs[i]) == 0, "spawn group");
    }
    for (int i = 0; i < CANCELLERS; i++)
        CHECK(weft_spawn(cs, canceller, (void *)(uintptr_t)next_rand(rng)) == 0, "spawn");
    CHECK(weft_scope_join(gs) == 0, "groups join");
    CHECK(weft_scope_join(cs) == 0, "cancellers join");
    CHECK(weft_scope_release(gs) == 0, "release");
    CHECK(weft_scope_release(cs) == 0, "release");
    foreign_stop();

    for (int i = 0; i < GROUPS * PER_GROUP; i++)
        CHECK(atomic_load(&R.ran[i]) == 1, "worker %d ran %d times", i, atomic_load(&R.ran[i]));
    CHECK(atomic_load(&R.held) == 0, "%d tokens still counted as held", atomic_load(&R.held));
    unsigned avail = weft_sem_available(R.sem);
    CHECK(avail == (unsigned)R.tokens, "%u of %d tokens came back", avail, R.tokens);
    CHECK(weft_sem_release(R.sem) == -EOVERFLOW, "a token too many was accepted");
    rc = weft_sem_destroy(R.sem);
    CHECK(rc == 0, "destroy %d: a waiter is still queued", rc);
    atomic_fetch_add(&stats.rounds, 1);
    return 0;
}

typedef struct run_arg {
    uint64_t seed;
    int rounds;
} run_arg;

static int root(void *p)
{
    run_arg *a = p;
    uint64_t rng = a->seed;
    for (int r = 0; r < a->rounds && atomic_load(&failures) == 0; r++)
        one_round(&rng);
    return 0;
}

int main(int argc, char **argv)
{
    int rounds = argc > 1 ? atoi(argv[1]) : DEFAULT_ROUNDS;
    uint64_t seed = argc > 2 ? strtoull(argv[2], NULL, 0) : (uint64_t)weft_now();
    run_seed = (unsigned long long)seed;
    /* First, so that a run a sanitizer aborts can still be repeated with the same seed. */
    printf("sem_stress: seed %llu\n", run_seed);
    fflush(stdout);
    pthread_t th;
    if (pthread_create(&th, NULL, foreign_main, NULL) != 0) {
        fprintf(stderr, "sem_stress: pthread_create failed\n");
        return 1;
    }
    const int runs = 2;
    for (int r = 0; r < runs && atomic_load(&failures) == 0; r++) {
        run_arg a = {.seed = next_rand(&seed), .rounds = rounds / runs + (r < rounds % runs)};
        weft_config cfg = {.workers = 4, .watchdog_ns = -1};
        int rc = weft_run(&cfg, root, &a);
        CHECK(rc == 0, "weft_run returned %d", rc);
    }
    atomic_store(&F.quit, 1);
    pthread_join(th, NULL);
    int bad = atomic_load(&failures);
    printf("sem_stress: %s: %ld rounds, %ld tasks, %ld acquired, %ld acquires ended by cancel or "
           "deadline, %ld tries, %ld taken by a foreign thread, %ld cancels, %d failed checks, "
           "seed %llu\n",
           bad ? "FAIL" : "ok", atomic_load(&stats.rounds), atomic_load(&stats.tasks),
           atomic_load(&stats.acquired), atomic_load(&stats.refused_by_cancel),
           atomic_load(&stats.tried), atomic_load(&F.taken), atomic_load(&stats.cancels), bad,
           run_seed);
    return bad ? 1 : 0;
}
