// SPDX-License-Identifier: MIT
/*
 * The runtime object, and the runtime seen from outside (runtime.c): creation from a
 * configuration, shutdown, weft_run, submission from foreign threads. The scheduler's design
 * essay is at the top of sched.c; lib/README.md maps the files.
 */
#ifndef WEFT_RUNTIME_H
#define WEFT_RUNTIME_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "huge.h"
#include "lock.h"
#include "poll.h"
#include "stack.h"
#include "weft.h"

typedef struct weft__worker weft__worker;
typedef struct weft__task weft__task;

typedef struct weft__blocking_pool weft__blocking_pool;
typedef struct weft__trace weft__trace;

enum {
    WEFT__DETOUR_CHAOS = 1, /* chaos mode perturbs them (sched.c) */
    WEFT__DETOUR_TRACE = 2, /* they are traced (trace.h) */
};

/* Grouped by who writes what, a cache line per group where workers meet: every spawn reads the
 * first group (chaos, the worker count) and the idle mask, spinners write their count, wakers
 * the injection queue. A line moving between cores costs hundreds of nanoseconds (README.md,
 * Performance), and a spawner that read a line a spinner keeps writing paid that on every spawn. */
struct weft_runtime {
    /* Set at start, read everywhere. */
    weft__worker *workers;
    unsigned nworkers;
    /* Several workers, and the asymmetric barrier is there (barrier.h): spawn queues keep their
     * tasks private (deque.h), and a join closes a scope nobody else spawned into without a
     * locked instruction (scope.c). */
    int asymmetric;
    _Atomic int stopping;
    _Atomic int shutting_down;
    uint64_t chaos; /* WEFT_CHAOS seed; 0: off */
    /* Nonzero when the common cases of spawn and join must take their general paths, so that
     * those test one word for every reason to (WEFT__DETOUR_*). */
    uint64_t detours;
    weft_scope *root_scope; /* parent of every submitted task's scope */
    weft__blocking_pool *blocking;
    weft_config cfg;
    /* Bumped by every cancel (see scope.h), read by cancel checks. */
    _Alignas(64) _Atomic uint64_t cancel_epoch;
    /* Written when a worker goes to sleep or is woken; read at every spawn
     * (weft__sched_notify_local). */
    _Alignas(64) _Atomic uint64_t idle_mask[4]; /* sleeping workers, one bit each */
    /* Written by workers looking for work. */
    _Alignas(64) _Atomic unsigned nspinning;
    /* Injection queue: work from outside the workers, and wake-ups a worker's ready queue has no
     * room for. An intrusive FIFO behind a ck spinlock: unbounded without allocating (a cancel
     * can wake 100,000 tasks at once). */
    _Alignas(64) weft__lock inject_lock;
    weft__task *inject_head, *inject_tail;
    _Atomic size_t inject_len;
    _Alignas(64) weft__stack_pool stacks;
    _Alignas(64) weft__lock chunk_lock;
    struct task_chunk *chunks; /* every task record's memory, freed with the runtime */
    weft__huge_range huge;     /* where the huge chunks among them are carved (huge.h) */
    weft__task *spare_tasks;   /* records freed off the workers, and batches taken there */
    weft__task
        *task_batches; /* records workers gave up, in batches (see weft__records_free_task_on) */
    char *carve, *carve_end; /* records for foreign threads not taken yet (chunk_lock) */
    void *free_blocks;       /* weft__records_alloc_block's, under chunk_lock */
    char *block_carve, *block_end;
    unsigned block_chunks;
    weft_scope *spare_scopes;         /* scope records released off the runtime's workers */
    _Alignas(64) weft__poller poller; /* descriptors tasks wait on (poll.h) */
    _Alignas(64) _Atomic uint32_t outstanding; /* submissions not yet ended (a futex word) */
    pthread_t watchdog;
    int watchdog_running;
    _Atomic uint32_t watchdog_wake;
    /* Dumps of the tree (dump.c): held by a dump for its length, and by the runtime's end
     * before it frees what a dump reads; `dump_closed` from then on. */
    pthread_mutex_t dump_lock;
    int dump_closed;
    weft_runtime *dump_next; /* the process's list of runtimes (dump.c) */
    weft__trace *trace;      /* NULL: untraced */
    /* For weft_metrics, from threads that are not its workers (the workers count their own). */
    _Atomic uint64_t submitted;
    _Atomic uint64_t foreign_wakes;
};

#define WEFT__MAX_WORKERS 256

/** Resolves `cfg` (NULL: defaults), creates the runtime and starts its workers, root scope,
 *  blocking pool and watchdog. 0, -EINVAL for a bad configuration, -ENOMEM, or -EAGAIN when a
 *  worker thread cannot be created. Not from a worker (the caller checks). */
int weft__runtime_create(weft_runtime **out, const weft_config *cfg);
/** Stops the workers (all work must be over) and frees everything. */
void weft__runtime_stop(weft_runtime *rt);

#endif
