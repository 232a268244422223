// SPDX-License-Identifier: MIT
/*
 * Task stacks: reserved in slabs, committed lazily by the kernel, cached per worker.
 *
 * A stack is [guard gap][usable pages]; the task starts at the top and grows down. Slabs are
 * mapped MAP_NORESERVE, so a parked task costs the pages it touched (one, for a task that parks
 * right away) and no commit charge. The gap is as large as the stack's documented size, at least
 * 64 KiB and at most 1 MiB (WEFT__STACK_GAP_MIN/MAX): a frame that does not probe its pages (code
 * built without -fstack-clash-protection) jumps a single guard page, and with a page, a task's
 * 16 KiB local array past the end of its stack was the top of the next stack down, a parked
 * task's locals. A frame no larger than the gap, starting anywhere in the stack, ends inside it.
 * The gap costs address space only: whatever its size, the guard over it is one madvise range or
 * one PROT_NONE VMA, never a page or a VMA more. Guards, in order of preference:
 *   - MADV_GUARD_INSTALL (Linux 6.13+): a guard without a VMA of its own, so a million stacks
 *     stay far below vm.max_map_count (65530 by default);
 *   - mprotect(PROT_NONE), which splits the mapping (two VMAs per stack), up to a budget;
 *   - beyond the budget, a canary word at the low end, checked whenever the task switches out;
 *     the gap is then plain memory no task uses, so a frame that jumps the canary still writes
 *     into no other task's stack.
 * A fault inside a guard gap is reported with the task's name by the SIGSEGV handler
 * (weft__stack_fault_install), which runs on a per-thread sigaltstack.
 *
 * A stack no task uses keeps its pages only while it is among the few a worker caches or the pool
 * keeps warm (WEFT__STACK_POOL_WARM, more where bursts recur); the others give them back to the
 * kernel, so that the resident size falls back once a burst of parked tasks has ended (stack.c
 * says how).
 */
#ifndef WEFT_STACK_H
#define WEFT_STACK_H

#include <stddef.h>
#include <stdint.h>

#include "lock.h"

enum weft__guard { WEFT__GUARD_MADVISE = 1, WEFT__GUARD_MPROTECT = 2, WEFT__GUARD_CANARY = 3 };

/* A child that a join runs inline, on its joiner's stack (join_inline.h), gets its whole
 * documented stack there, as every task does: the join runs it inline only while the stack has
 * that much left below the join, and this margin more for the join's own frames down to the
 * child's first one. Past that (a deep chain of joins that each run a child inline nests on one
 * stack, or a joiner deep in frames of its own) the child starts on a stack of its own. */
#define WEFT__INLINE_MARGIN 512
/* So that joins can run children inline at all, a default stack is mapped larger than its
 * documented size by this much, a quarter of the size and at least 16 KiB: a fork-join such as
 * fib(30) nests 30 joins that each run their child inline, a few hundred bytes each. Committed
 * only where touched, like the rest. */
#define WEFT__INLINE_RESERVE_MIN (16 * 1024)

/* Bounds of the guard gap below a stack, which is the stack's documented size between them.
 * 64 KiB is the most glibc puts on a stack with alloca before it turns to malloc
 * (__MAX_ALLOCA_CUTOFF), and the default stack's size; 1 MiB keeps the guard of a huge stack to
 * one page-table page of MADV_GUARD_INSTALL markers. */
#define WEFT__STACK_GAP_MIN ((size_t)64 * 1024)
#define WEFT__STACK_GAP_MAX ((size_t)1024 * 1024)

typedef struct weft__stack {
    void *lo;                 /* lowest usable byte */
    size_t size;              /* usable bytes */
    char *inline_floor;       /* a join runs a child inline while its stack pointer is above */
    struct weft__stack *next; /* cache and free-list link */
    int guard;
    unsigned valgrind_id;
    int own_mapping; /* a stack of a non-default size: mapped and unmapped on its own */
    size_t gap;      /* bytes of guard right below lo */
} __attribute__((aligned(64))) weft__stack; /* a line each: a worker links a stack it frees,
                                             * and stacks in use on other workers must not
                                             * share that line */

/** Sets the usable bytes of `s`: `size` from `lo`; the children a join on it may run inline are
 *  documented to get `child` bytes of stack. */
static inline void weft__stack_set_bounds(weft__stack *s, void *lo, size_t size, size_t child)
{
    s->lo = lo;
    s->size = size;
    /* Above the top on a stack too small to hold a child: nothing runs inline there. */
    s->inline_floor = (char *)lo + child + WEFT__INLINE_MARGIN;
}

typedef struct weft__stack_slab weft__stack_slab;

typedef struct weft__stack_pool {
    weft__lock lock;
    size_t size;   /* bytes a task with a default stack is documented to get */
    size_t usable; /* usable bytes of a default stack: size and the inline reserve */
    size_t page;
    size_t gap;         /* guard gap below each default stack */
    weft__stack *free;  /* stacks given back beyond the per-worker caches, warm */
    weft__stack *dirty; /* beyond warm_max, their pages not yet given back (trim) */
    weft__stack *cold;  /* and those whose pages went back to the kernel */
    unsigned warm;      /* stacks on `free`, at most warm_max */
    unsigned warm_max;  /* WEFT__STACK_POOL_WARM, raised by demand up to ..._WARM_MAX */
    weft__stack_slab *_Atomic slabs;
    unsigned slab_stacks; /* stacks per new slab */
} weft__stack_pool;

typedef struct weft__stack_cache {
    weft__stack *top;
    unsigned count;
} weft__stack_cache;

/** Most stacks a worker keeps for reuse; beyond it they go to the pool's shared list. 64 covers
 *  the stacks a worker needs in a deep fork-join (one per level of spawn depth in flight) while
 *  bounding what an idle worker holds. */
#define WEFT__STACK_CACHE_MAX 64
/** Most stacks the pool keeps with their pages (warm) at first; beyond it, a stack that enters
 *  the pool gives its pages back to the kernel (MADV_DONTNEED) and goes to the cold list. A stack
 *  a task parked on holds the pages the task touched, so without a bound a program that once had
 *  a million tasks parked kept their pages, gigabytes, until the runtime ended. The warm ones
 *  serve the stacks that flow from the worker where tasks end to the one where they are spawned,
 *  which would otherwise pay a madvise and page faults per stack; a few times a worker's cache is
 *  enough for that, and bounds what an idle program holds in the pool.
 *  Each cold stack the pool hands out raises the bound by one, up to WEFT__STACK_POOL_WARM_MAX:
 *  it was given back and then needed again, so a program whose bursts of parked tasks recur (a
 *  server's load, a scope of a few thousand tasks run over and over) soon keeps the stacks of a
 *  burst warm instead of giving back and faulting in the same pages at every burst, while a
 *  single burst, whose stacks all came fresh from the slabs, gives back all but the first bound. */
#define WEFT__STACK_POOL_WARM (4 * WEFT__STACK_CACHE_MAX)
#define WEFT__STACK_POOL_WARM_MAX (16 * WEFT__STACK_POOL_WARM)

int weft__stack_pool_init(weft__stack_pool *p, size_t size);
void weft__stack_pool_destroy(weft__stack_pool *p);

/** A stack of the pool's size (size == 0) or of `size` bytes; NULL when memory is exhausted. */
weft__stack *weft__stack_get(weft__stack_pool *p, weft__stack_cache *c, size_t size);
/** Gives back the pages of the stacks that entered the pool beyond its warm bound since the last
 *  call (they wait on the dirty list until then). A worker calls it when it has nothing to do,
 *  before it sleeps: the pages go back off the path of whatever freed the stacks. Any thread. */
void weft__stack_trim(weft__stack_pool *p);

void weft__stack_put(weft__stack_pool *p, weft__stack_cache *c, weft__stack *s);
int weft__stack_reserve_slow(weft__stack_pool *p, weft__stack_cache *c);

/** 0 when the worker's cache `c` holds a default stack, after moving one there from the pool
 *  (mapping a slab if need be); -ENOMEM when even that fails, so that a spawn can refuse instead
 *  of queueing a task that could never start. Inline: it is on every spawn. */
static inline int weft__stack_reserve(weft__stack_pool *p, weft__stack_cache *c)
{
    return c->top ? 0 : weft__stack_reserve_slow(p, c);
}
void weft__stack_cache_flush(weft__stack_pool *p, weft__stack_cache *c);

/** For WEFT__GUARD_CANARY stacks: aborts with a report if the canary was overwritten. */
void weft__stack_check_canary(const weft__stack *s);

/** Who the overflow report names: the task running on the calling thread at the moment of the
 *  fault (or of the canary check), found by the thread's describer, so that nothing has to be
 *  recorded on the stack at every switch. `*name` may be NULL or empty: then "task-<id>".
 *  `*stack`: the stack that task runs on (NULL if none), so that a fault in the guard of a stack
 *  mapped on its own, which no slab holds, is known for an overflow too. */
typedef void (*weft__stack_describe_fn)(void *ctx, const char **name, uint64_t *id,
                                        const weft__stack **stack);

/** Installs the overflow reporter for the calling worker thread, whose tasks take their stacks
 *  from `p` (sigaltstack) and whose running task `describe(ctx, ...)` tells, and, once per
 *  process, the SIGSEGV/SIGBUS handler. Returns the alternate stack to free with
 *  weft__stack_fault_thread_exit. */
void *weft__stack_fault_thread_init(weft__stack_pool *p, weft__stack_describe_fn describe,
                                    void *ctx);
void weft__stack_fault_thread_exit(void *altstack);
/** Where the calling thread's overflow reports go (weft_config.report; NULL: stderr). The
 *  callback runs in the fault handler: its contract (async-signal-safe only) is in weft.h. */
void weft__stack_fault_set_report(void (*report)(void *arg, int kind, const char *line), void *arg);

/** Test hook: the number of stacks that got an mprotect guard before canaries take over. */
void weft__stack_set_mprotect_budget(long budget);
/** Test hook: disable MADV_GUARD_INSTALL to exercise the other guard strategies. */
void weft__stack_disable_madvise_guard(int disable);

#endif
