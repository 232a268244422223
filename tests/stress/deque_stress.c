// SPDX-License-Identifier: MIT
/*
 * Stress of the Chase-Lev deque (lib/deque.h): one owner pushes and pops at the bottom while
 * three thieves steal at the top; every item must be taken exactly once, and whoever takes it
 * must see what the owner wrote into it before the push (ThreadSanitizer checks that order).
 *
 * The items go through in rounds, each on a fresh deque that starts with 8 slots, so that the
 * ring grows while thieves are stealing from it, many times over. The owner mixes pushes and
 * pops at random and now and then pushes a long burst, which forces a growth.
 *
 * Every other round the deque keeps its items private (where the kernel allows: deque.h), as a
 * spawn queue does: thieves then get most items by asking for them, which the owner's next push
 * or pop answers. A thief also makes every 8th attempt a rescue steal, asked or not, so that the
 * owner's unfenced pops race real rescues (membarrier) all the time, not once in a while.
 *
 * Usage: deque_stress [items]   (default 1048576; at least 1,000,000 for the full check)
 * Prints one summary line; exits 0 when every item was taken exactly once, 1 otherwise.
 */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "barrier.h"
#include "deque.h"

#define THIEVES 3
#define ROUND_ITEMS 65536
#define GOLDEN 0x9e3779b97f4a7c15ull

typedef struct item {
    uint64_t value; /* written by the owner before the push, plain (not atomic) */
} item;

static item *items;
static atomic_uint *taken;
static long nitems;

static weft__deque deque;
static pthread_barrier_t round_start, round_end;
static atomic_int round_done;
static atomic_int all_done;
static atomic_long wrong_payload;
static atomic_long taken_by[THIEVES + 1];
static atomic_long rescued, asked;

static void take(void *x, int who)
{
    item *it = x;
    long i = it - items;
    if (i < 0 || i >= nitems) {
        atomic_fetch_add(&wrong_payload, 1);
        return;
    }
    if (it->value != (uint64_t)i * GOLDEN)
        atomic_fetch_add(&wrong_payload, 1);
    atomic_fetch_add_explicit(&taken[i], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&taken_by[who], 1, memory_order_relaxed);
}

static void *thief(void *arg)
{
    int who = (int)(intptr_t)arg;
    for (;;) {
        pthread_barrier_wait(&round_start);
        if (atomic_load(&all_done))
            return NULL;
        for (unsigned attempt = 1; !atomic_load_explicit(&round_done, memory_order_acquire);
             attempt++) {
            void *x;
            if (attempt % 8 == 0) {
                x = weft__deque_steal_rescue(&deque);
                if (x != WEFT__DEQUE_EMPTY && x != WEFT__DEQUE_ABORT)
                    atomic_fetch_add_explicit(&rescued, 1, memory_order_relaxed);
            } else if ((x = weft__deque_steal_any(&deque)) == WEFT__DEQUE_PRIVATE) {
                atomic_fetch_add_explicit(&asked, 1, memory_order_relaxed);
                sched_yield(); /* let the owner answer */
                continue;
            }
            if (x == WEFT__DEQUE_EMPTY)
                sched_yield(); /* 2 cores, 4 threads: let the owner push */
            else if (x != WEFT__DEQUE_ABORT)
                take(x, who);
        }
        pthread_barrier_wait(&round_end);
    }
}

static uint64_t next_rand(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

static int owner_round(long first, long end, uint64_t *rng, int private_items)
{
    if (weft__deque_init(&deque, 3) != 0)
        return -1;
    if (private_items)
        weft__deque_set_private(&deque);
    atomic_store(&round_done, 0);
    pthread_barrier_wait(&round_start);
    long i = first;
    while (i < end) {
        uint64_t r = next_rand(rng);
        long burst = r % 64 == 0 ? 2000 : 1 + (long)(r >> 8) % 3;
        for (long k = 0; k < burst && i < end; k++, i++) {
            items[i].value = (uint64_t)i * GOLDEN;
            if (weft__deque_push_owner(&deque, &items[i]) != 0)
                return -1;
        }
        long pops = (long)(r >> 16) % 3;
        for (long k = 0; k < pops; k++) {
            void *x = weft__deque_pop_owner(&deque);
            if (!x)
                break;
            take(x, THIEVES);
        }
    }
    /* Drain: a NULL pop means the deque is empty (or a thief won the last item). */
    void *x;
    while ((x = weft__deque_pop_owner(&deque)))
        take(x, THIEVES);
    atomic_store_explicit(&round_done, 1, memory_order_release);
    pthread_barrier_wait(&round_end);
    weft__deque_destroy(&deque);
    return 0;
}

int main(int argc, char **argv)
{
    nitems = argc > 1 ? atol(argv[1]) : 1048576;
    if (nitems < 1) {
        fprintf(stderr, "usage: %s [items]\n", argv[0]);
        return 2;
    }
    items = calloc((size_t)nitems, sizeof(*items));
    taken = calloc((size_t)nitems, sizeof(*taken));
    if (!items || !taken) {
        fprintf(stderr, "deque_stress: out of memory\n");
        return 1;
    }
    pthread_barrier_init(&round_start, NULL, THIEVES + 1);
    pthread_barrier_init(&round_end, NULL, THIEVES + 1);
    pthread_t th[THIEVES];
    for (int t = 0; t < THIEVES; t++)
        if (pthread_create(&th[t], NULL, thief, (void *)(intptr_t)t) != 0) {
            fprintf(stderr, "deque_stress: pthread_create failed\n");
            return 1;
        }

    uint64_t rng = 0x853c49e6748fea9bull;
    long rounds = 0;
    int failed = 0;
    int private_ok = weft__barrier_supported();
    for (long first = 0; first < nitems && !failed; first += ROUND_ITEMS, rounds++) {
        long end = first + ROUND_ITEMS < nitems ? first + ROUND_ITEMS : nitems;
        if (owner_round(first, end, &rng, private_ok && rounds % 2 == 1) != 0) {
            fprintf(stderr, "deque_stress: out of memory in round %ld\n", rounds);
            failed = 1;
        }
    }
    atomic_store(&all_done, 1);
    if (!failed)
        pthread_barrier_wait(&round_start);
    else
        return 1; /* the thieves wait at a barrier; leave them */
    for (int t = 0; t < THIEVES; t++)
        pthread_join(th[t], NULL);

    long missing = 0, duplicated = 0, first_bad = -1;
    for (long i = 0; i < nitems; i++) {
        unsigned n = atomic_load(&taken[i]);
        if (n != 1 && first_bad < 0)
            first_bad = i;
        missing += n == 0;
        duplicated += n > 1;
    }
    long by_thieves = 0, total = atomic_load(&taken_by[THIEVES]);
    for (int t = 0; t < THIEVES; t++) {
        by_thieves += atomic_load(&taken_by[t]);
        total += atomic_load(&taken_by[t]);
    }
    int ok = missing == 0 && duplicated == 0 && total == nitems && atomic_load(&wrong_payload) == 0;
    printf("deque_stress: %s: %ld items in %ld rounds, owner took %ld, %d thieves took %ld "
           "(%ld/%ld/%ld); missing %ld, taken twice %ld, bad payloads %ld%s\n",
           ok ? "OK" : "FAILED", nitems, rounds, atomic_load(&taken_by[THIEVES]), THIEVES,
           by_thieves, atomic_load(&taken_by[0]), atomic_load(&taken_by[1]),
           atomic_load(&taken_by[2]), missing, duplicated, atomic_load(&wrong_payload),
           first_bad >= 0 ? " (see the first bad item below)" : "");
    if (first_bad >= 0)
        printf("deque_stress: item %ld taken %u times\n", first_bad,
               atomic_load(&taken[first_bad]));
    if (private_ok)
        printf("deque_stress: rounds with private items: %ld; thieves asked %ld times, took %ld "
               "items by rescue\n",
               rounds / 2, atomic_load(&asked), atomic_load(&rescued));
    else
        printf("deque_stress: no rounds with private items: membarrier(2) is not available here "
               "(or this is a ThreadSanitizer build)\n");
    pthread_barrier_destroy(&round_start);
    pthread_barrier_destroy(&round_end);
    free(items);
    free(taken);
    return ok ? 0 : 1;
}
