// SPDX-License-Identifier: MIT
/*
 * Where workers run. Unpinned (the default), a worker is moved to a CPU of its own when it
 * starts and left free to move: every worker's thread must end up with the process's whole
 * affinity mask, not the one CPU it was moved to. With pin_workers, each is held to one CPU.
 *
 * A task per worker reads its thread's mask (sched_getaffinity of the calling thread): tasks
 * yield until every worker has been seen.
 */
#define STRESS_NAME "worker_affinity"

#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "../support.h"

#define WORKERS 4

static cpu_set_t process_mask;
static atomic_int seen[WORKERS];
static atomic_int seen_count;
static atomic_int pinned_wrong, unpinned_wrong;
static int pinned;

static int look(void *p)
{
    (void)p;
    for (int round = 0; round < 100000 && atomic_load(&seen_count) < WORKERS; round++) {
        int w = weft_worker_index();
        if (w >= 0 && w < WORKERS && atomic_exchange(&seen[w], 1) == 0) {
            cpu_set_t mine;
            CPU_ZERO(&mine);
            if (sched_getaffinity(0, sizeof(mine), &mine) != 0)
                atomic_fetch_add(pinned ? &pinned_wrong : &unpinned_wrong, 1);
            else if (pinned ? CPU_COUNT(&mine) != 1 : !CPU_EQUAL(&mine, &process_mask))
                atomic_fetch_add(pinned ? &pinned_wrong : &unpinned_wrong, 1);
            atomic_fetch_add(&seen_count, 1);
        }
        weft_yield();
    }
    return 0;
}

static int root(void *p)
{
    (void)p;
    weft_scope *s;
    if (weft_scope_open(&s, NULL) != 0)
        return -1;
    for (int i = 0; i < 4 * WORKERS; i++)
        weft_spawn(s, look, NULL);
    return weft_scope_close(s);
}

static void run(int pin)
{
    pinned = pin;
    atomic_store(&seen_count, 0);
    for (int i = 0; i < WORKERS; i++)
        atomic_store(&seen[i], 0);
    weft_config cfg = {.workers = WORKERS, .pin_workers = pin};
    int rc = weft_run(&cfg, root, NULL);
    CHECK(rc == 0, "weft_run: %d", rc);
    CHECK(atomic_load(&seen_count) == WORKERS, "%s: %d of %d workers ran a task",
          pin ? "pinned" : "unpinned", atomic_load(&seen_count), WORKERS);
}

int main(void)
{
    if (sched_getaffinity(0, sizeof(process_mask), &process_mask) != 0) {
        perror("sched_getaffinity");
        return 1;
    }
    for (int round = 0; round < 20; round++) {
        run(0);
        run(1);
    }
    CHECK(atomic_load(&unpinned_wrong) == 0,
          "%d unpinned worker(s) left without the process's whole affinity mask",
          atomic_load(&unpinned_wrong));
    if (CPU_COUNT(&process_mask) > 1)
        CHECK(atomic_load(&pinned_wrong) == 0, "%d pinned worker(s) not held to one CPU",
              atomic_load(&pinned_wrong));
    if (atomic_load(&failures))
        return 1;
    printf("worker_affinity: 40 runtimes, every worker's mask as it should be\n");
    return 0;
}
