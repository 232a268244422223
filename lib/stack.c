// SPDX-License-Identifier: MIT
/* Stack slabs, caches, guards and the overflow report; see stack.h. */
#include "stack.h"
#include "alloc.h"
#include "weft.h"

#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "tsan.h"

#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#define WEFT_HAVE_VALGRIND 1
#endif
#endif

#ifdef WEFT_ASAN
#include <sanitizer/asan_interface.h>
/* Frames of tasks that never returned leave poison in ASan's shadow of a stack; a later mapping
 * at the same address would inherit it. */
#define UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION(p, n)
#else
#define UNPOISON(p, n) ((void)(p), (void)(n))
#endif

#ifndef MADV_GUARD_INSTALL
#define MADV_GUARD_INSTALL 102
#endif

#define CANARY 0x5745465443414e59ull /* "WEFTCANY" */

struct weft__stack_slab {
    weft__stack_slab *next;
    char *base; /* the mapping */
    size_t bytes;
    size_t stride; /* guard gap + usable */
    unsigned count;
    /* stacks[0, used) are initialised; the rest were never handed out */
    _Atomic unsigned used;
    weft__stack stacks[];
};

/* Process-wide on purpose: vm.max_map_count is a limit of the process, shared by every runtime.
 * 16,000 mprotect-guarded stacks use 32,000 of the default 65,530 mappings and leave the rest
 * to the program. */
static _Atomic long mprotect_budget = 16000;
static _Atomic int madvise_guard_off;

void weft__stack_set_mprotect_budget(long budget)
{
    atomic_store(&mprotect_budget, budget);
}

void weft__stack_disable_madvise_guard(int disable)
{
    atomic_store(&madvise_guard_off, disable);
}

/* The guard gap below a stack documented to hold `size` bytes (stack.h). */
static size_t gap_for(const weft__stack_pool *p, size_t size)
{
    size_t gap = size < WEFT__STACK_GAP_MIN   ? WEFT__STACK_GAP_MIN
                 : size > WEFT__STACK_GAP_MAX ? WEFT__STACK_GAP_MAX
                                              : size;
    return (gap + p->page - 1) & ~(p->page - 1);
}

int weft__stack_pool_init(weft__stack_pool *p, size_t size)
{
    memset(p, 0, sizeof(*p));
    weft__lock_init(&p->lock);
    p->page = (size_t)sysconf(_SC_PAGESIZE);
    p->size = (size + p->page - 1) & ~(p->page - 1);
    size_t reserve =
        p->size / 4 > WEFT__INLINE_RESERVE_MIN ? p->size / 4 : WEFT__INLINE_RESERVE_MIN;
    p->usable = p->size + ((reserve + p->page - 1) & ~(p->page - 1));
    p->gap = gap_for(p, p->size);
    p->warm_max = WEFT__STACK_POOL_WARM;
    /* 455 stacks of 64 KiB with their inline reserves and gaps reserve 64 MiB of address space
     * per slab: few mappings for a million stacks, and little unused reservation for small
     * programs. */
    p->slab_stacks = (unsigned)((64u << 20) / (p->gap + p->usable));
    if (p->slab_stacks < 16)
        p->slab_stacks = 16;
    return 0;
}

/* Guards the gap below `s` (s->gap bytes). The kernel may refuse either call (an old kernel, no
 * mapping left to split): the stack then falls back to the next kind of guard. The allocation
 * hook's failures count as refusals here, so that the failure sweeps reach these paths too. */
static void guard_stack(weft__stack *s)
{
    char *guard = (char *)s->lo - s->gap;
    if (!atomic_load_explicit(&madvise_guard_off, memory_order_relaxed) &&
        !weft__alloc_should_fail() && madvise(guard, s->gap, MADV_GUARD_INSTALL) == 0) {
        s->guard = WEFT__GUARD_MADVISE;
        return;
    }
    if (atomic_fetch_sub(&mprotect_budget, 1) > 0 && !weft__alloc_should_fail() &&
        mprotect(guard, s->gap, PROT_NONE) == 0) {
        s->guard = WEFT__GUARD_MPROTECT;
        return;
    }
    s->guard = WEFT__GUARD_CANARY;
    *(uint64_t *)s->lo = CANARY;
}

static void register_stack(weft__stack *s)
{
#ifdef WEFT_HAVE_VALGRIND
    s->valgrind_id = VALGRIND_STACK_REGISTER(s->lo, (char *)s->lo + s->size);
#else
    (void)s;
#endif
}

static void deregister_stack(weft__stack *s)
{
#ifdef WEFT_HAVE_VALGRIND
    VALGRIND_STACK_DEREGISTER(s->valgrind_id);
#else
    (void)s;
#endif
}

static char *map_region(size_t bytes)
{
    weft__alloc_own_wait_mark();
    void *m = weft__alloc_should_fail() ? MAP_FAILED
                                        : mmap(NULL, bytes, PROT_READ | PROT_WRITE,
                                               MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    /* A transparent huge page would commit 2 MiB behind the first touch of a stack. */
    if (m != MAP_FAILED)
        madvise(m, bytes, MADV_NOHUGEPAGE);
    weft__alloc_own_wait_mark();
    return m == MAP_FAILED ? NULL : m;
}

/* Maps a slab; its stacks are handed out in order by take_fresh, so that the records (and pages)
 * of stacks never used are never touched. Called with the pool locked. */
static int add_slab(weft__stack_pool *p)
{
    size_t stride = p->gap + p->usable;
    unsigned n = p->slab_stacks;
    weft__stack_slab *slab = weft__alloc_aligned(64, sizeof(*slab) + n * sizeof(weft__stack));
    if (!slab)
        return -ENOMEM;
    slab->bytes = stride * n;
    slab->base = map_region(slab->bytes);
    if (!slab->base) {
        free(slab);
        return -ENOMEM;
    }
    slab->stride = stride;
    slab->count = n;
    atomic_init(&slab->used, 0);
    slab->next = atomic_load_explicit(&p->slabs, memory_order_relaxed);
    atomic_store_explicit(&p->slabs, slab, memory_order_release);
    return 0;
}

/* Stacks of the newest slab never handed out (only the newest can have any: a slab is added when
 * the free list and the newest slab are both empty). Readable without the lock. */
static unsigned fresh_left(weft__stack_pool *p)
{
    weft__stack_slab *slab = atomic_load_explicit(&p->slabs, memory_order_acquire);
    return slab ? slab->count - atomic_load_explicit(&slab->used, memory_order_relaxed) : 0;
}

/* The next never-used stack of the newest slab. Called with the pool locked, fresh_left() > 0. */
static weft__stack *take_fresh(weft__stack_pool *p)
{
    weft__stack_slab *slab = atomic_load_explicit(&p->slabs, memory_order_relaxed);
    unsigned i = atomic_load_explicit(&slab->used, memory_order_relaxed);
    weft__stack *s = &slab->stacks[i];
    memset(s, 0, sizeof(*s));
    weft__stack_set_bounds(s, slab->base + (size_t)i * slab->stride + p->gap, p->usable, p->size);
    s->gap = p->gap;
    atomic_store_explicit(&slab->used, i + 1, memory_order_release);
    return s;
}

/* Guards are installed when a stack is first handed out, not when its slab is mapped: a program
 * that needs ten stacks pays for ten guards, not for a slab's worth. */
static void first_use(weft__stack *s)
{
    if (!s->guard) {
        /* The calls wait for the address space's lock: one of the library's own waits
         * (alloc.h), which a worker may make between two tasks, the first still its own. */
        weft__alloc_own_wait_mark();
        guard_stack(s);
        weft__alloc_own_wait_mark();
        register_stack(s);
    }
}

static weft__stack *get_own_mapping(weft__stack_pool *p, size_t size)
{
    size = (size + p->page - 1) & ~(p->page - 1);
    weft__stack *s = weft__alloc_aligned(64, sizeof(*s));
    if (!s)
        return NULL;
    memset(s, 0, sizeof(*s));
    size_t gap = gap_for(p, size);
    char *m = map_region(gap + size);
    if (!m) {
        free(s);
        return NULL;
    }
    weft__stack_set_bounds(s, m + gap, size, p->size);
    s->gap = gap;
    s->own_mapping = 1;
    weft__alloc_own_wait_mark();
    guard_stack(s);
    weft__alloc_own_wait_mark();
    register_stack(s);
    return s;
}

/* ---- giving pages back ---------------------------------------------------------------------
 *
 * Which stacks keep their pages: the ones in the workers' caches (at most WEFT__STACK_CACHE_MAX
 * each, the most recently used) and warm_max more in the pool (WEFT__STACK_POOL_WARM, raised by
 * each cold stack handed out: stack.h). A stack that enters the pool beyond that bound gives its
 * usable pages back with MADV_DONTNEED and goes to the cold list, which the pool hands out only
 * when no warm stack is left. Stacks enter the pool a batch at a time, when a worker's cache
 * overflows, so the madvise is on that path, which a spawn-join program whose stacks stay in its
 * workers' caches never takes; the pages go back on the worker that ended the tasks, outside the
 * pool's lock, and at the moment they are known to be idle: a program that checks its resident
 * size after a join sees them gone, with no thread or timer to wait for.
 *
 * A bound fixed at the first one made a program that parks and cancels a few thousand tasks
 * over and over give back and fault in the same pages at every round (a madvise and a page fault
 * per stack, several times what the task itself cost), hence the bound that grows with the cold
 * stacks asked for again. It never shrinks: the pool has no clock to tell that a burst will not
 * come back, and WEFT__STACK_POOL_WARM_MAX bounds what it keeps.
 *
 * MADV_DONTNEED, not MADV_FREE: MADV_FREE leaves the pages counted as resident until the kernel
 * is short of memory, and its pages keep their contents or come back as zeros as the kernel
 * pleases, where a canary must be one or the other. After MADV_DONTNEED the usable range reads as
 * zeros, so a canary stack gets its canary again when it leaves the cold list (take_cold), before
 * any task runs on it and any switch checks it. Under ASan the range is unpoisoned first: the
 * frames of the tasks that ended there left poison in the shadow, which the zeroed pages must not
 * keep.
 *
 * The stacks of a batch are sorted by address and neighbours in a slab are given back with one
 * madvise over them and the gaps between them: each call costs a TLB flush on every CPU that runs
 * a thread of the process, which on the virtual machines we measure on costs more than freeing the
 * few pages a stack holds, and a mass cancel ends stacks mostly in the order they were handed
 * out. The gaps hold no task's data (guard markers of
 * MADV_GUARD_INSTALL and PROT_NONE protections survive MADV_DONTNEED; a canary stack's gap is
 * memory no task uses). */

/* Gives back the pages of stacks[0, n), sorted here by address. */
static void give_back_sorted(weft__stack **stacks, unsigned n)
{
    for (unsigned i = 1; i < n; i++) {
        weft__stack *s = stacks[i];
        unsigned k = i;
        for (; k > 0 && (uintptr_t)stacks[k - 1]->lo > (uintptr_t)s->lo; k--)
            stacks[k] = stacks[k - 1];
        stacks[k] = s;
    }
    for (unsigned i = 0; i < n;) {
        char *lo = stacks[i]->lo, *hi = lo + stacks[i]->size;
        UNPOISON(stacks[i]->lo, stacks[i]->size);
        /* The next stack of the slab starts right above this one's end, past its own gap. */
        while (++i < n && (char *)stacks[i]->lo - stacks[i]->gap == hi) {
            UNPOISON(stacks[i]->lo, stacks[i]->size);
            hi = (char *)stacks[i]->lo + stacks[i]->size;
        }
        madvise(lo, (size_t)(hi - lo), MADV_DONTNEED);
    }
}

/* Gives back the pages of the stacks of the list `first` (linked through `next`). */
static void give_back_pages(weft__stack *first)
{
    weft__stack *batch[WEFT__STACK_CACHE_MAX];
    unsigned n = 0;
    for (weft__stack *s = first; s; s = s->next) {
        batch[n++] = s;
        if (n == WEFT__STACK_CACHE_MAX) {
            give_back_sorted(batch, n);
            n = 0;
        }
    }
    give_back_sorted(batch, n);
}

/* A stack of the cold list, whose pages read as zeros, ready for a task. Called without the lock:
 * the stack is the caller's. */
static weft__stack *take_cold(weft__stack *s)
{
    if (s->guard == WEFT__GUARD_CANARY)
        *(uint64_t *)s->lo = CANARY;
    return s;
}

weft__stack *weft__stack_get(weft__stack_pool *p, weft__stack_cache *c, size_t size)
{
    if (size && size != p->size)
        return get_own_mapping(p, size);
    weft__stack *s = c->top;
    if (s) {
        c->top = s->next;
        c->count--;
        return s;
    }
    weft__lock_acquire(&p->lock);
    if (p->free) {
        s = p->free;
        __atomic_store_n(&p->free, s->next, __ATOMIC_RELAXED);
        p->warm--;
    } else if (p->dirty) { /* its pages still there: as good as warm */
        s = p->dirty;
        __atomic_store_n(&p->dirty, s->next, __ATOMIC_RELAXED);
    } else if (p->cold) {
        s = p->cold;
        p->cold = s->next;
        if (p->warm_max < WEFT__STACK_POOL_WARM_MAX)
            p->warm_max++;
        weft__lock_release(&p->lock);
        return take_cold(s);
    } else if (fresh_left(p) || add_slab(p) == 0) {
        s = take_fresh(p);
    } else {
        weft__lock_release(&p->lock);
        return NULL;
    }
    weft__lock_release(&p->lock);
    first_use(s);
    return s;
}

int weft__stack_reserve_slow(weft__stack_pool *p, weft__stack_cache *c)
{
    /* Into the cache with it: every later check is then the inline one, until a task takes it. */
    weft__stack *s = weft__stack_get(p, c, 0);
    if (!s)
        return -ENOMEM;
    s->next = c->top;
    c->top = s;
    c->count++;
    return 0;
}

/* Hands the list first..last of `n` stacks (linked through `next`) to the pool's shared list,
 * under one lock: to the warm ones while they stay within warm_max, else, with their pages given
 * back, to the cold ones. */
static void pool_give(weft__stack_pool *p, weft__stack *first, weft__stack *last, unsigned n)
{
    weft__lock_acquire(&p->lock);
    if (p->warm + n <= p->warm_max) {
        p->warm += n;
        last->next = p->free;
        __atomic_store_n(&p->free, first, __ATOMIC_RELAXED);
        weft__lock_release(&p->lock);
        return;
    }
    /* Beyond the bound: their pages go back later, when a worker has nothing to do
     * (weft__stack_trim), not on the path of the ends that freed them (a mass cancel ends
     * 100,000 tasks, and giving their pages back as they end doubled the time to its join). */
    last->next = p->dirty;
    __atomic_store_n(&p->dirty, first, __ATOMIC_RELAXED);
    weft__lock_release(&p->lock);
}

void weft__stack_trim(weft__stack_pool *p)
{
    if (!__atomic_load_n(&p->dirty, __ATOMIC_RELAXED))
        return;
    weft__lock_acquire(&p->lock);
    weft__stack *first = p->dirty;
    __atomic_store_n(&p->dirty, NULL, __ATOMIC_RELAXED);
    weft__lock_release(&p->lock);
    if (!first)
        return;
    give_back_pages(first);
    weft__stack *last = first;
    while (last->next)
        last = last->next;
    weft__lock_acquire(&p->lock);
    last->next = p->cold;
    p->cold = first;
    weft__lock_release(&p->lock);
}

void weft__stack_put(weft__stack_pool *p, weft__stack_cache *c, weft__stack *s)
{
    if (s->own_mapping) {
        deregister_stack(s);
        if (s->guard == WEFT__GUARD_MPROTECT)
            atomic_fetch_add(&mprotect_budget, 1);
        UNPOISON(s->lo, s->size);
        weft__alloc_unmap((char *)s->lo - s->gap, s->gap + s->size);
        free(s);
        return;
    }
    if (!c) {
        pool_give(p, s, s, 1);
        return;
    }
    if (c->count == WEFT__STACK_CACHE_MAX) {
        /* Full: the older half goes to the pool under one lock, not one lock per stack. A mass
         * cancel ends 100,000 tasks, and one lock per stack freed made the pool's lock bounce
         * between the workers at every one. The newer half, the warmer, stays. */
        weft__stack *keep = c->top;
        for (unsigned i = 1; i < WEFT__STACK_CACHE_MAX / 2; i++)
            keep = keep->next;
        weft__stack *first = keep->next, *last = first;
        while (last->next)
            last = last->next;
        keep->next = NULL;
        c->count = WEFT__STACK_CACHE_MAX / 2;
        pool_give(p, first, last, WEFT__STACK_CACHE_MAX / 2);
    }
    s->next = c->top;
    c->top = s;
    c->count++;
}

void weft__stack_cache_flush(weft__stack_pool *p, weft__stack_cache *c)
{
    /* A cache holds stacks of the pool's size only (weft__stack_put unmaps the others). */
    if (!c->top)
        return;
    weft__stack *last = c->top;
    while (last->next)
        last = last->next;
    pool_give(p, c->top, last, c->count);
    c->top = NULL;
    c->count = 0;
}

void weft__stack_pool_destroy(weft__stack_pool *p)
{
    weft__stack_slab *slab = atomic_load_explicit(&p->slabs, memory_order_acquire);
    while (slab) {
        weft__stack_slab *next = slab->next;
        unsigned used = atomic_load_explicit(&slab->used, memory_order_relaxed);
        for (unsigned i = 0; i < used; i++) {
            weft__stack *s = &slab->stacks[i];
            if (s->guard) {
                deregister_stack(s);
                if (s->guard == WEFT__GUARD_MPROTECT)
                    atomic_fetch_add(&mprotect_budget, 1);
            }
        }
        for (unsigned i = 0; i < used; i++)
            UNPOISON(slab->stacks[i].lo, slab->stacks[i].size);
        munmap(slab->base, slab->bytes);
        free(slab);
        slab = next;
    }
    p->slabs = NULL;
    p->free = NULL;
    p->dirty = NULL;
    p->cold = NULL;
    p->warm = 0;
}

/* ---- overflow reports ------------------------------------------------------------------- */

static _Thread_local weft__stack_pool *fault_pool;
static _Thread_local weft__stack_describe_fn fault_describe;
static _Thread_local void *fault_describe_ctx;
static _Thread_local void (*fault_report)(void *arg, int kind, const char *line);
static _Thread_local void *fault_report_arg;
static struct sigaction previous_segv, previous_bus;
static atomic_flag handler_installed = ATOMIC_FLAG_INIT;

/* The report is built in a buffer on the signal stack: no allocation, no stdio, only what a
 * signal handler may call. */
typedef struct report_line {
    char text[256];
    size_t len;
} report_line;

static void put_str(report_line *l, const char *s)
{
    while (*s && l->len < sizeof(l->text) - 2)
        l->text[l->len++] = *s++;
    l->text[l->len] = 0;
}

static void put_num(report_line *l, size_t v)
{
    char buf[32];
    int i = (int)sizeof(buf);
    buf[--i] = 0;
    do {
        buf[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v && i > 0);
    put_str(l, &buf[i]);
}

static void report_overflow(const weft__stack *s)
{
    const char *name = NULL;
    uint64_t id = 0;
    const weft__stack *running = NULL;
    if (fault_describe)
        fault_describe(fault_describe_ctx, &name, &id, &running);
    report_line l = {.len = 0};
    put_str(&l, "weft: task '");
    if (name && name[0]) {
        put_str(&l, name);
    } else {
        put_str(&l, "task-");
        put_num(&l, id);
    }
    put_str(&l, "' overflowed its stack of ");
    /* The size the task asked for (or the runtime's), not what the stack holds with the room
     * that joins use to run children inline. */
    weft__stack_pool *p = fault_pool;
    put_num(&l, (s->own_mapping || !p ? s->size : p->size) / 1024);
    put_str(&l, " KiB; give it a larger one with weft_spawn_opts.stack_size or "
                "weft_config.stack_size");
    if (fault_report) {
        fault_report(fault_report_arg, WEFT_REPORT_OVERFLOW, l.text);
        return;
    }
    l.text[l.len++] = '\n';
    ssize_t r = write(STDERR_FILENO, l.text, l.len);
    (void)r;
}

void weft__stack_fault_set_report(void (*report)(void *arg, int kind, const char *line), void *arg)
{
    fault_report = report;
    fault_report_arg = arg;
}

void weft__stack_check_canary(const weft__stack *s)
{
    if (*(const uint64_t *)s->lo != CANARY) {
        report_overflow(s);
        abort();
    }
}

static const weft__stack *find_guard_hit(weft__stack_pool *p, uintptr_t addr)
{
    for (weft__stack_slab *slab = atomic_load_explicit(&p->slabs, memory_order_acquire); slab;
         slab = slab->next) {
        uintptr_t base = (uintptr_t)slab->base;
        if (addr < base || addr >= base + slab->bytes)
            continue;
        size_t i = (addr - base) / slab->stride;
        if (i >= atomic_load_explicit(&slab->used, memory_order_acquire))
            return NULL; /* never handed out: no task ran there */
        const weft__stack *s = &slab->stacks[i];
        /* Below the usable bytes of stack i, in its slot: its guard gap. */
        if (addr < (uintptr_t)s->lo)
            return s;
        return NULL;
    }
    return NULL;
}

/* The stack the running task is on, if `addr` is in its guard. The only way to find a stack
 * mapped on its own (a task's own stack size): no slab holds it, and a task overflows the stack
 * it runs on. */
static const weft__stack *running_guard_hit(uintptr_t addr)
{
    const char *name = NULL;
    uint64_t id = 0;
    const weft__stack *s = NULL;
    if (fault_describe)
        fault_describe(fault_describe_ctx, &name, &id, &s);
    if (s && addr < (uintptr_t)s->lo && addr >= (uintptr_t)s->lo - s->gap)
        return s;
    return NULL;
}

static void on_fault(int sig, siginfo_t *info, void *uctx)
{
    weft__stack_pool *p = fault_pool;
    if (p) {
        const weft__stack *s = running_guard_hit((uintptr_t)info->si_addr);
        if (!s)
            s = find_guard_hit(p, (uintptr_t)info->si_addr);
        if (s) {
            report_overflow(s);
            signal(SIGABRT, SIG_DFL);
            abort();
        }
    }
    /* Not ours: hand the fault to whoever handled it before, or crash as usual. */
    struct sigaction *prev = sig == SIGSEGV ? &previous_segv : &previous_bus;
    if ((prev->sa_flags & SA_SIGINFO) && prev->sa_sigaction) {
        prev->sa_sigaction(sig, info, uctx);
        return;
    }
    if (prev->sa_handler != SIG_DFL && prev->sa_handler != SIG_IGN && prev->sa_handler) {
        prev->sa_handler(sig);
        return;
    }
    signal(sig, SIG_DFL);
    raise(sig);
}

void *weft__stack_fault_thread_init(weft__stack_pool *p, weft__stack_describe_fn describe,
                                    void *ctx)
{
    fault_pool = p;
    fault_describe = describe;
    fault_describe_ctx = ctx;
    if (!atomic_flag_test_and_set(&handler_installed)) {
        struct sigaction sa;
        memset(&sa, 0, sizeof(sa));
        sa.sa_sigaction = on_fault;
        sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
        sigemptyset(&sa.sa_mask);
        sigaction(SIGSEGV, &sa, &previous_segv);
        sigaction(SIGBUS, &sa, &previous_bus);
    }
    size_t size = 64 * 1024;
    void *alt = weft__alloc_malloc(size);
    if (!alt)
        return NULL;
    stack_t ss = {.ss_sp = alt, .ss_size = size, .ss_flags = 0};
    if (sigaltstack(&ss, NULL) != 0) {
        free(alt);
        return NULL;
    }
    return alt;
}

void weft__stack_fault_thread_exit(void *altstack)
{
    fault_pool = NULL;
    fault_describe = NULL;
    fault_report = NULL;
    if (!altstack)
        return;
    stack_t ss = {.ss_sp = NULL, .ss_size = 0, .ss_flags = SS_DISABLE};
    sigaltstack(&ss, NULL);
    free(altstack);
}
