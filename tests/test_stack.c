// SPDX-License-Identifier: MIT
/*
 * Task stacks (lib/stack.h): what the pool hands out, its reuse, the guard strategies, the
 * overflow report that names the task, and the pages idle stacks give back.
 *
 * Guard strategies (stack.h): MADV_GUARD_INSTALL where the kernel has it (Linux 6.13+), else an
 * mprotect'ed page up to a budget, else a canary word checked when the task switches out. The
 * hooks weft__stack_disable_madvise_guard and weft__stack_set_mprotect_budget select the latter
 * two; both are process-wide, which is safe here because Criterion runs each test in a process
 * of its own, and each overflow test runs its runtime in a further child process.
 */
#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "stack.h"
#include "support.h"
#include "task.h"
#include "weft.h"

static size_t page_size(void)
{
    return (size_t)sysconf(_SC_PAGESIZE);
}

static int is_mapped(const void *addr)
{
    /* msync fails with ENOMEM on an address that is not mapped. */
    void *page = (void *)((uintptr_t)addr & ~(uintptr_t)(page_size() - 1));
    return msync(page, page_size(), MS_ASYNC) == 0;
}

/* ---- running something in a child process ---------------------------------------------------- */

typedef struct child_result {
    int status;      /* as waitpid reports it */
    char err[16384]; /* what the child wrote on stderr (truncated) */
} child_result;

/* Runs fn(arg) in a child process with stderr captured; the child exits 0 if fn returns. The
 * child never returns into Criterion (it leaves with _exit or by a signal). */
static void run_in_child(void (*fn)(void *), void *arg, child_result *r)
{
    int pfd[2];
    cr_assert_eq(pipe(pfd), 0);
    fflush(NULL);
    pid_t pid = fork();
    cr_assert_geq(pid, 0, "fork: %s", strerror(errno));
    if (pid == 0) {
        struct rlimit no_core = {0, 0};
        setrlimit(RLIMIT_CORE, &no_core); /* an expected abort should not write a core file */
        dup2(pfd[1], STDERR_FILENO);
        close(pfd[0]);
        close(pfd[1]);
        fn(arg);
        _exit(0);
    }
    close(pfd[1]);
    size_t n = 0;
    char discard[4096];
    for (;;) {
        ssize_t k = n < sizeof(r->err) - 1 ? read(pfd[0], r->err + n, sizeof(r->err) - 1 - n)
                                           : read(pfd[0], discard, sizeof(discard));
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            break;
        if (n < sizeof(r->err) - 1)
            n += (size_t)k;
    }
    r->err[n] = 0;
    close(pfd[0]);
    cr_assert_eq(waitpid(pid, &r->status, 0), pid);
}

static void expect_overflow_report(const child_result *r, const char *task)
{
    cr_assert(WIFSIGNALED(r->status) && WTERMSIG(r->status) == SIGABRT,
              "the child should die by SIGABRT; status %#x, stderr:\n%s", r->status, r->err);
    cr_assert_not_null(strstr(r->err, "overflowed"), "no overflow report; stderr:\n%s", r->err);
    char quoted[64];
    snprintf(quoted, sizeof(quoted), "'%s'", task);
    cr_assert_not_null(strstr(r->err, quoted), "the report does not name %s; stderr:\n%s", quoted,
                       r->err);
}

/* ---- the pool ------------------------------------------------------------------------------- */

#define MANY 300 /* more than one slab (256 stacks) */

static int by_address(const void *a, const void *b)
{
    const weft__stack *x = *(weft__stack *const *)a, *y = *(weft__stack *const *)b;
    return (uintptr_t)x->lo < (uintptr_t)y->lo ? -1 : (uintptr_t)x->lo > (uintptr_t)y->lo;
}

Test(stack, distinct_aligned_writable)
{
    size_t page = page_size();
    weft__stack_pool p;
    cr_assert_eq(weft__stack_pool_init(&p, 64 * 1024 + 100), 0);
    cr_assert_eq(p.size % page, 0, "the size is not rounded to pages");
    cr_assert_geq(p.size, 64 * 1024 + 100);
    weft__stack_cache c = {0};
    static weft__stack *s[MANY];
    for (int i = 0; i < MANY; i++) {
        s[i] = weft__stack_get(&p, &c, 0);
        cr_assert_not_null(s[i], "stack %d", i);
        cr_assert_eq((uintptr_t)s[i]->lo % page, 0, "stack %d is not page aligned", i);
        cr_assert_geq(s[i]->size, p.size, "stack %d holds less than its documented size", i);
        cr_assert(s[i]->guard == WEFT__GUARD_MADVISE || s[i]->guard == WEFT__GUARD_MPROTECT ||
                      s[i]->guard == WEFT__GUARD_CANARY,
                  "stack %d reports guard kind %d", i, s[i]->guard);
        memset(s[i]->lo, (unsigned char)i, s[i]->size); /* every byte writable */
    }
    /* No two overlap, and a guard page's room lies between neighbours. */
    static weft__stack *sorted[MANY];
    memcpy(sorted, s, sizeof(s));
    qsort(sorted, MANY, sizeof(sorted[0]), by_address);
    for (int i = 0; i + 1 < MANY; i++)
        cr_assert_leq((uintptr_t)sorted[i]->lo + sorted[i]->size + page,
                      (uintptr_t)sorted[i + 1]->lo, "stacks overlap or share a guard page");
    /* What each one holds is still its own: nothing else wrote into it. */
    for (int i = 0; i < MANY; i++) {
        const unsigned char *b = s[i]->lo;
        for (size_t k = 0; k < s[i]->size; k += 512)
            cr_assert_eq(b[k], (unsigned char)i, "stack %d byte %zu", i, k);
        cr_assert_eq(b[s[i]->size - 1], (unsigned char)i);
    }
    for (int i = 0; i < MANY; i++)
        weft__stack_put(&p, &c, s[i]);
    weft__stack_cache_flush(&p, &c);
    cr_assert_eq(c.count, 0);
    weft__stack_pool_destroy(&p);
}

Test(stack, reused_from_cache_then_pool)
{
    weft__stack_pool p;
    cr_assert_eq(weft__stack_pool_init(&p, 32 * 1024), 0);
    weft__stack_cache c = {0};
    static weft__stack *s[MANY];
    for (int i = 0; i < MANY; i++)
        cr_assert_not_null(s[i] = weft__stack_get(&p, &c, 0));
    for (int i = 0; i < MANY; i++) {
        weft__stack_put(&p, &c, s[i]);
        cr_assert_leq(c.count, WEFT__STACK_CACHE_MAX, "the cache keeps at most its maximum");
    }
    /* A full cache gives its older half to the pool at once: at least that half stays. */
    cr_assert_geq(c.count, WEFT__STACK_CACHE_MAX / 2);
    /* The cache is LIFO: the stacks put back last are the ones it kept, newest on top. */
    unsigned cached = c.count;
    for (unsigned k = 0; k < cached; k++)
        cr_assert_eq(weft__stack_get(&p, &c, 0), s[MANY - 1 - k], "cached stack %u not reused",
                     MANY - 1 - k);
    cr_assert_eq(c.count, 0);
    /* The rest come from the pool's free list: all of them stacks seen before, each once. */
    static int seen[MANY];
    for (unsigned i = cached; i < MANY; i++) {
        weft__stack *x = weft__stack_get(&p, &c, 0);
        int known = -1;
        for (int k = 0; k < MANY - (int)cached && known < 0; k++)
            if (x == s[k])
                known = k;
        cr_assert_geq(known, 0, "get %u mapped a new stack although %d were free", i, MANY);
        cr_assert_eq(seen[known]++, 0, "stack %d handed out twice", known);
    }
    weft__stack_pool_destroy(&p);
}

Test(stack, own_size_stack_is_mapped_and_unmapped)
{
    size_t page = page_size();
    weft__stack_pool p;
    cr_assert_eq(weft__stack_pool_init(&p, 64 * 1024), 0);
    weft__stack_cache c = {0};
    weft__stack *s = weft__stack_get(&p, &c, 100 * 1024 + 1);
    cr_assert_not_null(s);
    cr_assert_geq(s->size, 100 * 1024 + 1);
    cr_assert_eq(s->size % page, 0);
    cr_assert_eq((uintptr_t)s->lo % page, 0);
    cr_assert(s->own_mapping);
    cr_assert_neq(s->guard, 0);
    memset(s->lo, 0x77, s->size);
    void *lo = s->lo;
    weft__stack_put(&p, &c, s);
    cr_assert_eq(c.count, 0, "a stack of its own size must not go to the cache");
    cr_assert(!is_mapped(lo), "the stack of its own size was not unmapped");
    weft__stack_pool_destroy(&p);
}

Test(stack, guard_kind_follows_strategy)
{
    /* Default strategy: MADV_GUARD_INSTALL where the kernel has it, else mprotect. */
    weft__stack_pool p;
    weft__stack_cache nc = {0};
    cr_assert_eq(weft__stack_pool_init(&p, 64 * 1024), 0);
    weft__stack *d = weft__stack_get(&p, &nc, 0);
    cr_assert_not_null(d);
    cr_assert(d->guard == WEFT__GUARD_MADVISE || d->guard == WEFT__GUARD_MPROTECT,
              "default guard kind %d", d->guard);
    cr_log_info("default guard on this kernel: %s",
                d->guard == WEFT__GUARD_MADVISE ? "MADV_GUARD_INSTALL" : "mprotect");
    weft__stack_put(&p, &nc, d);
    weft__stack_cache_flush(&p, &nc);
    weft__stack_pool_destroy(&p);

    /* Without madvise guards: mprotect up to the budget, canaries beyond it. */
    weft__stack_disable_madvise_guard(1);
    weft__stack_set_mprotect_budget(2);
    cr_assert_eq(weft__stack_pool_init(&p, 64 * 1024), 0);
    weft__stack *a = weft__stack_get(&p, &nc, 0);
    weft__stack *b = weft__stack_get(&p, &nc, 0);
    weft__stack *k = weft__stack_get(&p, &nc, 0);
    cr_assert(a && b && k);
    cr_assert_eq(a->guard, WEFT__GUARD_MPROTECT);
    cr_assert_eq(b->guard, WEFT__GUARD_MPROTECT);
    cr_assert_eq(k->guard, WEFT__GUARD_CANARY, "past the budget a canary takes over");
    weft__stack_check_canary(k); /* intact: returns */
    weft__stack_put(&p, &nc, a);
    weft__stack_put(&p, &nc, b);
    weft__stack_put(&p, &nc, k);
    weft__stack_cache_flush(&p, &nc);
    weft__stack_pool_destroy(&p);
    weft__stack_set_mprotect_budget(16000);
    weft__stack_disable_madvise_guard(0);
}

/* ---- the guard page itself, and the report ------------------------------------------------- */

typedef struct guard_case {
    int strategy; /* WEFT__GUARD_* to force */
} guard_case;

static void force_strategy(int strategy)
{
    if (strategy == WEFT__GUARD_MPROTECT) {
        weft__stack_disable_madvise_guard(1);
    } else if (strategy == WEFT__GUARD_CANARY) {
        weft__stack_disable_madvise_guard(1);
        weft__stack_set_mprotect_budget(0);
    }
}

/* The report names whoever the thread's describer says runs: here, the name passed as ctx. */
static void describe_unit(void *ctx, const char **name, uint64_t *id, const weft__stack **stack)
{
    *name = ctx;
    *id = 0;
    *stack = NULL;
}

static void touch_guard_page(void *arg)
{
    guard_case *g = arg;
    force_strategy(g->strategy);
    static weft__stack_pool p;
    static weft__stack_cache nc;
    weft__stack_pool_init(&p, 64 * 1024);
    weft__stack *s = weft__stack_get(&p, &nc, 0);
    if (!s)
        _exit(10);
    if (g->strategy && s->guard != g->strategy)
        _exit(11);
    weft__stack_fault_thread_init(&p, describe_unit, "unit-guard");
    /* The byte just below the usable range: inside the guard page. */
    *((volatile char *)s->lo - 1) = 1;
    _exit(12); /* the write went through: no guard */
}

/* Strategy: MADV_GUARD_INSTALL where available (else mprotect): a fault in the guard page is
 * reported with the name of the stack's owner. */
Test(stack, guard_page_fault_is_reported_default)
{
    guard_case g = {0};
    child_result r;
    run_in_child(touch_guard_page, &g, &r);
    expect_overflow_report(&r, "unit-guard");
}

/* Strategy: mprotect. */
Test(stack, guard_page_fault_is_reported_mprotect)
{
    guard_case g = {WEFT__GUARD_MPROTECT};
    child_result r;
    run_in_child(touch_guard_page, &g, &r);
    expect_overflow_report(&r, "unit-guard");
}

static void smash_canary(void *arg)
{
    (void)arg;
    force_strategy(WEFT__GUARD_CANARY);
    static weft__stack_pool p;
    static weft__stack_cache nc;
    weft__stack_pool_init(&p, 64 * 1024);
    weft__stack *s = weft__stack_get(&p, &nc, 0);
    if (!s || s->guard != WEFT__GUARD_CANARY)
        _exit(11);
    weft__stack_fault_thread_init(&p, describe_unit, "unit-canary");
    weft__stack_check_canary(s); /* intact */
    memset(s->lo, 0, 64);        /* what a deep frame does to the lowest bytes */
    weft__stack_check_canary(s);
    _exit(12); /* not noticed */
}

/* Strategy: canary (checked by weft__stack_check_canary, as every switch does). */
Test(stack, smashed_canary_is_reported)
{
    child_result r;
    run_in_child(smash_canary, NULL, &r);
    expect_overflow_report(&r, "unit-canary");
}

/* ---- overflow of a real task, through weft_run ---------------------------------------------- */

/* Zero: recurse until the stack runs out. Volatile so that the compiler sees no infinite
 * recursion to warn about or to turn into a loop. */
static volatile unsigned long depth_limit;

static __attribute__((noinline)) int recurse(volatile char *prev, unsigned long depth)
{
    volatile char frame[512];
    frame[0] = (char)(prev[0] + 1);
    frame[511] = frame[0];
    if (depth_limit && depth >= depth_limit)
        return frame[511];
    return recurse(frame, depth + 1) + frame[511]; /* not a tail call */
}

typedef struct overflow_case {
    int strategy;
    weft_fn fn;
    const char *name;
    size_t stack_size; /* of the task that overflows; 0: the runtime's */
} overflow_case;

/* The stack the calling task runs on has the guard the case asks for. */
static int on_expected_guard(const overflow_case *oc)
{
    int guard = weft__task_self()->host->stack->guard;
    if (oc->strategy)
        return guard == oc->strategy;
    return guard == WEFT__GUARD_MADVISE || guard == WEFT__GUARD_MPROTECT;
}

static int deep_task(void *arg)
{
    if (!on_expected_guard(arg))
        return weft_fail(-EINVAL, "wrong guard kind");
    volatile char start = 0;
    return recurse(&start, 0);
}

/* For the canary strategy nothing faults: the task writes below the lowest usable byte of its
 * stack (over the canary) and then yields, and the switch out finds the canary changed. Where
 * that byte is comes from the task record (internal API) so that the task writes a little past
 * it, not into some other mapping. */
static __attribute__((noinline)) int smash_below(void)
{
    volatile char big[2048];
    for (size_t i = 0; i < sizeof(big); i++)
        big[i] = 0x5a;
    return big[0];
}

static __attribute__((noinline)) int recurse_to(uintptr_t stop, volatile char *prev)
{
    volatile char frame[512];
    frame[0] = (char)(prev[0] + 1);
    if ((uintptr_t)frame < stop)
        return smash_below() + frame[0];
    return recurse_to(stop, frame) + frame[0];
}

static int deep_then_yield_task(void *arg)
{
    if (!on_expected_guard(arg))
        return weft_fail(-EINVAL, "wrong guard kind");
    weft__task *self = weft__task_self();
    uintptr_t lo = (uintptr_t)self->host->stack->lo;
    volatile char start = 0;
    int v = recurse_to(lo + 1024, &start);
    weft_yield();                     /* the switch out checks the canary */
    return v == 0x1234 ? 0 : -EFAULT; /* not reached when the canary is checked */
}

static int overflow_root(void *arg)
{
    overflow_case *oc = arg;
    weft_scope *s;
    int rc = weft_scope_open(&s, NULL);
    if (rc)
        return rc;
    weft_spawn_opts o = {.name = oc->name, .stack_size = oc->stack_size};
    rc = weft_spawn_ex(s, oc->fn, oc, &o);
    if (rc)
        return rc;
    /* Let the child start on a stack of its own before joining: a join may run an unstarted
     * child inline on the joiner's stack, which is another case (see below). */
    weft_yield();
    return weft_scope_join(s);
}

static void run_overflow(void *arg)
{
    overflow_case *oc = arg;
    force_strategy(oc->strategy);
    weft_config cfg = {.workers = 1, .stack_size = 64 * 1024};
    int rc = weft_run(&cfg, overflow_root, oc);
    fprintf(stderr, "weft_run returned %d\n", rc);
    _exit(20);
}

/* Strategy: MADV_GUARD_INSTALL where available (Linux 6.13+), else mprotect. */
Test(stack, task_overflow_reported_default_guard)
{
    overflow_case oc = {0, deep_task, "deep-recursor", 0};
    child_result r;
    run_in_child(run_overflow, &oc, &r);
    expect_overflow_report(&r, "deep-recursor");
    /* The size it was given, not what the stack holds with the room joins use (stack.h). */
    cr_assert_not_null(strstr(r.err, "its stack of 64 KiB"), "stderr:\n%s", r.err);
}

/* Strategy: mprotect (madvise guards disabled). */
Test(stack, task_overflow_reported_mprotect_guard)
{
    overflow_case oc = {WEFT__GUARD_MPROTECT, deep_task, "deep-mprotect", 0};
    child_result r;
    run_in_child(run_overflow, &oc, &r);
    expect_overflow_report(&r, "deep-mprotect");
}

/* A task given a stack of its own size (the remedy the report itself names) is mapped apart from
 * the slabs; its overflow is reported all the same. */
Test(stack, own_size_stack_overflow_reported_default_guard)
{
    overflow_case oc = {0, deep_task, "deep-own-size", 128 * 1024};
    child_result r;
    run_in_child(run_overflow, &oc, &r);
    expect_overflow_report(&r, "deep-own-size");
    cr_assert_not_null(strstr(r.err, "its stack of 128 KiB"), "stderr:\n%s", r.err);
}

Test(stack, own_size_stack_overflow_reported_mprotect_guard)
{
    overflow_case oc = {WEFT__GUARD_MPROTECT, deep_task, "deep-own-mprotect", 128 * 1024};
    child_result r;
    run_in_child(run_overflow, &oc, &r);
    expect_overflow_report(&r, "deep-own-mprotect");
}

/* Strategy: canary (madvise guards disabled and an mprotect budget of 0). */
Test(stack, task_overflow_reported_canary)
{
    overflow_case oc = {WEFT__GUARD_CANARY, deep_then_yield_task, "deep-canary", 0};
    child_result r;
    run_in_child(run_overflow, &oc, &r);
    expect_overflow_report(&r, "deep-canary");
}

/* Strategy: default guard; the child is run inline by its joiner (no yield before the join, one
 * worker), so it overflows the joiner's stack. The report must still name the task that ran
 * out of stack, not the task whose stack it borrowed. */
static int overflow_root_inline(void *arg)
{
    overflow_case *oc = arg;
    weft_scope *s;
    int rc = weft_scope_open(&s, NULL);
    if (rc)
        return rc;
    weft_spawn_opts o = {.name = oc->name};
    rc = weft_spawn_ex(s, oc->fn, oc, &o);
    if (rc)
        return rc;
    return weft_scope_join(s);
}

static void run_overflow_inline(void *arg)
{
    weft_config cfg = {.workers = 1, .stack_size = 64 * 1024};
    int rc = weft_run(&cfg, overflow_root_inline, arg);
    fprintf(stderr, "weft_run returned %d\n", rc);
    _exit(20);
}

Test(stack, task_overflow_inline_names_the_child)
{
    overflow_case oc = {0, deep_task, "deep-inline", 0};
    child_result r;
    run_in_child(run_overflow_inline, &oc, &r);
    expect_overflow_report(&r, "deep-inline");
}

/* ---- children run inline by their joiner ---------------------------------------------------- */

/* Uses `bytes` of stack below `start` (measured by frame addresses, which are on the real stack
 * even where a sanitizer moves locals elsewhere), then calls then(arg) there. */
static __attribute__((noinline)) int use_stack_then(const char *start, size_t bytes,
                                                    int (*then)(void *), void *arg)
{
    volatile char frame[256];
    frame[0] = 1;
    frame[255] = 1;
    const char *here = __builtin_frame_address(0);
    int rc = (size_t)(start - here) >= bytes ? then(arg) : use_stack_then(start, bytes, then, arg);
    return rc + frame[0] + frame[255] - 2; /* not a tail call */
}

static int nothing(void *arg)
{
    (void)arg;
    return 0;
}

#define CHILD_USES (48 * 1024) /* of the 64 KiB every task is documented to get */

typedef struct deep_join {
    size_t joiner_uses;  /* bytes of its own stack the joiner uses before it joins */
    size_t joiner_stack; /* the joiner's stack size; 0: the runtime's */
    weft_fn child;
    const char *child_name;
    int child_ran_inline;
} deep_join;

static int child_uses_48k(void *arg)
{
    deep_join *dj = arg;
    weft__task *self = weft__task_self();
    dj->child_ran_inline = self->host != self;
    return use_stack_then(__builtin_frame_address(0), CHILD_USES, nothing, NULL);
}

/* Opens a scope, spawns the child (of the runtime's stack size) and joins it at once: with one
 * worker, the join finds the child unstarted and may run it inline, on the joiner's stack. */
static int spawn_and_join(void *arg)
{
    deep_join *dj = arg;
    weft_scope *s;
    int rc = weft_scope_open(&s, NULL);
    if (rc)
        return rc;
    weft_spawn_opts o = {.name = dj->child_name};
    rc = weft_spawn_ex(s, dj->child, dj, &o);
    if (rc)
        return rc;
    return weft_scope_close(s);
}

static int joiner(void *arg)
{
    deep_join *dj = arg;
    return use_stack_then(__builtin_frame_address(0), dj->joiner_uses, spawn_and_join, dj);
}

static int deep_join_root(void *arg)
{
    deep_join *dj = arg;
    if (!dj->joiner_stack)
        return joiner(dj);
    weft_scope *s;
    int rc = weft_scope_open(&s, NULL);
    if (rc)
        return rc;
    weft_spawn_opts o = {.name = "big-joiner", .stack_size = dj->joiner_stack};
    rc = weft_spawn_ex(s, joiner, dj, &o);
    if (rc)
        return rc;
    weft_yield(); /* the joiner starts on its own stack, not inline in this join */
    return weft_scope_close(s);
}

/* Exits 0 when the run succeeded and the child ran inline, 1 when it ran on a stack of its own,
 * 20 + |rc| when the run failed. */
static void run_deep_join(void *arg)
{
    deep_join *dj = arg;
    weft_config cfg = {.workers = 1, .stack_size = 64 * 1024};
    int rc = weft_run(&cfg, deep_join_root, dj);
    if (rc) {
        fprintf(stderr, "weft_run returned %d\n", rc);
        _exit(20 + (-rc & 63));
    }
    _exit(dj->child_ran_inline ? 0 : 1);
}

/* A join with its stack almost untouched still runs its child inline (what keeps a fork-join
 * program such as fib cheap), and the child has its 64 KiB there. */
Test(stack, inline_child_gets_its_stack_below_a_fresh_joiner)
{
    deep_join dj = {.joiner_uses = 0, .child = child_uses_48k, .child_name = "inline-48k"};
    child_result r;
    run_in_child(run_deep_join, &dj, &r);
    cr_assert(WIFEXITED(r.status) && WEXITSTATUS(r.status) == 0,
              "the child should run inline and fit; status %#x, stderr:\n%s", r.status, r.err);
}

/* A joiner that has used 40 KiB of its 64 KiB runs its child (which uses 48 KiB) on a stack of
 * the child's own, or inline only if its stack still has the child's 64 KiB left: either way the
 * child does not run out of stack. */
Test(stack, inline_child_gets_its_stack_below_a_deep_joiner)
{
    deep_join dj = {.joiner_uses = 40 * 1024, .child = child_uses_48k, .child_name = "deep-48k"};
    child_result r;
    run_in_child(run_deep_join, &dj, &r);
    cr_assert(WIFEXITED(r.status) && (WEXITSTATUS(r.status) == 0 || WEXITSTATUS(r.status) == 1),
              "the child should fit in its stack; status %#x, stderr:\n%s", r.status, r.err);
}

static int deep_inline_child(void *arg)
{
    deep_join *dj = arg;
    weft__task *self = weft__task_self();
    dj->child_ran_inline = self->host != self;
    if (!dj->child_ran_inline)
        _exit(2); /* not the case under test */
    volatile char start = 0;
    return recurse(&start, 0);
}

/* A child run inline on a joiner's stack of a size of its own (mapped apart from the slabs)
 * overflows that stack: the report names the child. */
Test(stack, inline_child_overflow_on_own_size_joiner_is_named)
{
    deep_join dj = {
        .joiner_stack = 256 * 1024, .child = deep_inline_child, .child_name = "deep-inline-own"};
    child_result r;
    run_in_child(run_deep_join, &dj, &r);
    expect_overflow_report(&r, "deep-inline-own");
}

/* ---- a frame larger than a page ------------------------------------------------------------- */

/* Victims park with a 16 KiB local filled with a pattern; then a task on the stack mapped right
 * above theirs recurses to within a little of its stack's end and calls a function whose 16 KiB
 * frame reaches past that end. Its writes to the low end of the frame land where the guard
 * gap is: without a gap as large as the frame, in the top of the victim's stack, among its
 * locals. */

#define VICTIMS 4
#define VICTIM_FRAME (16 * 1024)
#define JUMP_FRAME (16 * 1024)
#define JUMP_WRITE 384

typedef struct jump_case {
    atomic_int parked;
    atomic_int release;
    weft_scope *scope;
} jump_case;

static int victim(void *arg)
{
    jump_case *jc = arg;
    volatile unsigned char locals[VICTIM_FRAME];
    for (size_t i = 0; i < sizeof(locals); i++)
        locals[i] = (unsigned char)(0xa0 + (i % 7));
    atomic_fetch_add(&jc->parked, 1);
    int rc = yield_until(&jc->release, 1);
    if (rc)
        return rc;
    for (size_t i = 0; i < sizeof(locals); i++)
        if (locals[i] != (unsigned char)(0xa0 + (i % 7)))
            return weft_fail(-EFAULT, "a victim's locals changed at byte %zu", i);
    return 0;
}

static __attribute__((noinline)) int jump_frame(void)
{
    volatile char big[JUMP_FRAME];
    for (size_t i = 0; i < JUMP_WRITE; i++)
        big[i] = (char)0xee;
    return big[0];
}

static __attribute__((noinline)) int recurse_then_jump(uintptr_t stop, volatile char *prev)
{
    volatile char frame[256];
    frame[0] = (char)(prev[0] + 1);
    if ((uintptr_t)__builtin_frame_address(0) < stop)
        return jump_frame() + frame[0];
    return recurse_then_jump(stop, frame) + frame[0];
}

static int jumper(void *arg)
{
    jump_case *jc = arg;
    uintptr_t lo = (uintptr_t)weft__task_self()->host->stack->lo;
    volatile char start = 0;
    int v = recurse_then_jump(lo + 1024, &start);
    atomic_store(&jc->release, 1);
    return v == 0x1234 ? -EFAULT : 0;
}

static int jump_root(void *arg)
{
    jump_case *jc = arg;
    int rc = weft_scope_open(&jc->scope, NULL);
    if (rc)
        return rc;
    /* Started one after the other, each victim takes the next stack of the slab, and the jumper,
     * started last, the one above them all. */
    for (int i = 0; i < VICTIMS; i++) {
        rc = weft_spawn_ex(jc->scope, victim, jc, &(weft_spawn_opts){.name = "victim"});
        if (rc)
            return rc;
    }
    rc = yield_until(&jc->parked, VICTIMS);
    if (rc)
        return rc;
    rc = weft_spawn_ex(jc->scope, jumper, jc, &(weft_spawn_opts){.name = "frame-jumper"});
    if (rc)
        return rc;
    rc = yield_until(&jc->release, 1); /* the jumper starts on a stack of its own, not inline */
    if (rc)
        return rc;
    return weft_scope_close(jc->scope);
}

static void run_jump(void *arg)
{
    (void)arg;
    static jump_case jc;
    weft_config cfg = {.workers = 1, .stack_size = 64 * 1024};
    int rc = weft_run(&cfg, jump_root, &jc);
    fprintf(stderr, "weft_run returned %d\n", rc);
    _exit(20);
}

Test(stack, frame_past_the_guard_does_not_reach_another_stack)
{
    child_result r;
    run_in_child(run_jump, NULL, &r);
    expect_overflow_report(&r, "frame-jumper");
}

/* ---- idle stacks give their pages back ------------------------------------------------------ */

/* A program that once had many tasks parked keeps, after they end, only a bounded number of
 * stacks with their pages: those a worker keeps warm in its cache and a bounded number more in
 * the pool. The rest give their pages back to the kernel, so that the resident size falls back
 * instead of staying at its high-water mark until the runtime ends. */

#if defined(__SANITIZE_ADDRESS__)
#define STACK_TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define STACK_TEST_ASAN 1
#endif
#endif

#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#define STACK_TEST_VALGRIND 1
#endif
#endif

/* Why the resident size cannot be judged in this build or under this tool, or NULL if it can. */
static const char *rss_unreliable(void)
{
#ifdef STACK_TEST_ASAN
    return "ASan keeps shadow memory for every stack page ever touched";
#endif
#ifdef STACK_TEST_VALGRIND
    if (RUNNING_ON_VALGRIND)
        return "Valgrind does not give pages back as the kernel does";
#endif
    return NULL;
}

/* Resident pages of this process (/proc/self/statm), or -1. */
static long resident_pages(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long size, resident = -1;
    if (f) {
        if (fscanf(f, "%ld %ld", &size, &resident) != 2)
            resident = -1;
        fclose(f);
    }
    return resident;
}

/* Whether any page of [lo, lo + bytes) is resident. */
static int any_resident(const void *lo, size_t bytes)
{
    size_t page = page_size();
    unsigned char vec[64];
    size_t pages = (bytes + page - 1) / page;
    cr_assert_leq(pages, sizeof(vec));
    cr_assert_eq(mincore((void *)lo, bytes, vec), 0, "mincore: %s", strerror(errno));
    for (size_t i = 0; i < pages; i++)
        if (vec[i] & 1)
            return 1;
    return 0;
}

#define IDLE_STACKS 2000
#define IDLE_TOUCH (16 * 1024)

/* Stacks put back through a worker's cache, many more than it keeps: most of them no longer hold
 * their pages, and each one handed out again is whole (its canary too, where it has one). */
static void idle_stacks_case(int strategy)
{
    force_strategy(strategy);
    weft__stack_pool p;
    cr_assert_eq(weft__stack_pool_init(&p, 64 * 1024), 0);
    weft__stack_cache c = {0};
    static weft__stack *s[IDLE_STACKS];
    for (int i = 0; i < IDLE_STACKS; i++) {
        cr_assert_not_null(s[i] = weft__stack_get(&p, &c, 0));
        if (strategy)
            cr_assert_eq(s[i]->guard, strategy);
        /* The top, where a task starts, as a task that parks with 16 KiB of locals. */
        memset((char *)s[i]->lo + s[i]->size - IDLE_TOUCH, 0x3c, IDLE_TOUCH);
        cr_assert(any_resident((char *)s[i]->lo + s[i]->size - IDLE_TOUCH, IDLE_TOUCH));
    }
    for (int i = 0; i < IDLE_STACKS; i++)
        weft__stack_put(&p, &c, s[i]);
    weft__stack_trim(&p); /* what an idle worker does before it sleeps */
    int holding = 0;
    for (int i = 0; i < IDLE_STACKS; i++)
        holding += any_resident((char *)s[i]->lo + s[i]->size - IDLE_TOUCH, IDLE_TOUCH);
    cr_log_info("%d of %d idle stacks hold pages", holding, IDLE_STACKS);
    cr_assert_leq(holding, IDLE_STACKS / 4, "%d of %d idle stacks still hold their pages", holding,
                  IDLE_STACKS);
    /* Every one of them comes back usable, with its canary in place where it has one. */
    for (int i = 0; i < IDLE_STACKS; i++) {
        weft__stack *x = weft__stack_get(&p, &c, 0);
        cr_assert_not_null(x);
        if (x->guard == WEFT__GUARD_CANARY)
            cr_assert_eq(*(const uint64_t *)x->lo, 0x5745465443414e59ull,
                         "a stack handed out again lost its canary");
        memset((char *)x->lo + x->size - IDLE_TOUCH, 0x5a, IDLE_TOUCH);
        s[i] = x;
    }
    for (int i = 0; i < IDLE_STACKS; i++)
        weft__stack_put(&p, &c, s[i]);
    weft__stack_cache_flush(&p, &c);
    weft__stack_pool_destroy(&p);
}

Test(stack, idle_stacks_give_back_their_pages)
{
    idle_stacks_case(0);
}

Test(stack, idle_canary_stacks_give_back_their_pages)
{
    idle_stacks_case(WEFT__GUARD_CANARY);
}

/* A burst that comes back finds its stacks again with their pages, instead of having them given
 * back and faulted in again at every round: the stacks of the second round, which were asked for
 * again after the first gave them back, stay warm after it. */
Test(stack, recurring_bursts_keep_their_stacks_warm)
{
    weft__stack_pool p;
    cr_assert_eq(weft__stack_pool_init(&p, 64 * 1024), 0);
    weft__stack_cache c = {0};
    static weft__stack *s[IDLE_STACKS];
    int holding = 0;
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < IDLE_STACKS; i++) {
            cr_assert_not_null(s[i] = weft__stack_get(&p, &c, 0));
            memset((char *)s[i]->lo + s[i]->size - IDLE_TOUCH, 0x3c, IDLE_TOUCH);
        }
        for (int i = 0; i < IDLE_STACKS; i++)
            weft__stack_put(&p, &c, s[i]);
        weft__stack_trim(&p);
        holding = 0;
        for (int i = 0; i < IDLE_STACKS; i++)
            holding += any_resident((char *)s[i]->lo + s[i]->size - IDLE_TOUCH, IDLE_TOUCH);
        cr_log_info("round %d: %d of %d idle stacks hold pages", round, holding, IDLE_STACKS);
        if (round == 0)
            cr_assert_leq(holding, IDLE_STACKS / 4, "a first burst keeps %d stacks", holding);
    }
    cr_assert_geq(holding, IDLE_STACKS * 3 / 4,
                  "a burst that came back twice keeps only %d of its %d stacks warm", holding,
                  IDLE_STACKS);
    weft__stack_cache_flush(&p, &c);
    weft__stack_pool_destroy(&p);
}

#ifdef STACK_TEST_ASAN
#define PARKERS 10000
#else
#define PARKERS 100000
#endif
#define PARKER_TOUCH (16 * 1024)

typedef struct parkers {
    int n;
    atomic_int parked;
    atomic_int cancelled;
    long rss_before, rss_peak, rss_after;
} parkers;

static int parker(void *arg)
{
    parkers *k = arg;
    volatile char locals[PARKER_TOUCH];
    for (size_t i = 0; i < sizeof(locals); i += 1024)
        locals[i] = 1;
    atomic_fetch_add(&k->parked, 1);
    int rc = weft_sleep_for(HOUR);
    if (rc == -ECANCELED)
        atomic_fetch_add(&k->cancelled, 1);
    return locals[0] == 1 ? 0 : -EFAULT;
}

/* Parks k->n tasks that each touch 16 KiB of their stacks, then cancels and joins them. With
 * `rss`, notes the resident size at the peak and after the join. */
static int park_and_cancel(parkers *k, int rss)
{
    int parked = atomic_load(&k->parked);
    weft_scope *s;
    int rc = weft_scope_open(&s, NULL);
    if (rc)
        return rc;
    for (int i = 0; i < k->n && !rc; i++)
        rc = weft_spawn(s, parker, k);
    if (!rc)
        rc = yield_until(&k->parked, parked + k->n);
    if (rss)
        k->rss_peak = resident_pages();
    weft_scope_cancel(s);
    int jrc = weft_scope_join(s);
    weft_scope_release(s);
    /* The pages go back when a worker has nothing to do, before it sleeps: this task's sleep
     * leaves its worker so, and with one worker the sleep's timer fires only after that. */
    weft_sleep_for(WEFT_MSEC);
    if (rss)
        k->rss_after = resident_pages();
    return rc ? rc : jrc == -ECANCELED ? 0 : jrc;
}

/* Two rounds: the second one's tasks start on the stacks the first one's left, most of which gave
 * their pages back, and each parking is a switch out, which checks a canary stack's canary. */
static int park_cancel_root(void *arg)
{
    parkers *k = arg;
    k->rss_before = resident_pages();
    int rc = park_and_cancel(k, 1);
    return rc ? rc : park_and_cancel(k, 0);
}

Test(stack, cancelled_parked_tasks_give_back_their_memory, .timeout = 240)
{
    static parkers k;
    k.n = PARKERS;
    weft_config cfg = {.workers = 1, .stack_size = 64 * 1024};
    cr_assert_eq(weft_run(&cfg, park_cancel_root, &k), 0);
    cr_assert_eq(atomic_load(&k.cancelled), 2 * PARKERS);
    long page = sysconf(_SC_PAGESIZE);
    long grown = (k.rss_peak - k.rss_before) * page, kept = (k.rss_after - k.rss_before) * page;
    cr_log_info("%d parked tasks: resident size grew by %ld KiB, %ld KiB stayed after the join",
                PARKERS, grown / 1024, kept / 1024);
    const char *why = rss_unreliable();
    if (why) {
        printf("cancelled_parked_tasks_give_back_their_memory: resident size not checked: %s\n",
               why);
        return;
    }
    cr_assert(k.rss_before > 0 && k.rss_peak > 0 && k.rss_after > 0, "/proc/self/statm unreadable");
    cr_assert_geq(grown, (long)PARKERS * PARKER_TOUCH,
                  "the parked tasks did not touch their stacks");
    cr_assert_lt(kept, grown / 4,
                 "%ld of the %ld bytes %d parked tasks took stayed resident after they ended", kept,
                 grown, PARKERS);
}

/* The same on stacks guarded by canaries: a stack whose pages were given back gets its canary
 * again before a task runs on it, or the task's first switch out would report an overflow. */
static void run_park_cancel_canary(void *arg)
{
    (void)arg;
    force_strategy(WEFT__GUARD_CANARY);
    static parkers k;
    k.n = 3000;
    weft_config cfg = {.workers = 2, .stack_size = 64 * 1024};
    int rc = weft_run(&cfg, park_cancel_root, &k);
    if (rc) {
        fprintf(stderr, "weft_run returned %d\n", rc);
        _exit(20 + (-rc & 63));
    }
    _exit(atomic_load(&k.cancelled) == 2 * k.n ? 0 : 3);
}

Test(stack, canary_stacks_reused_after_cancel_keep_their_canary)
{
    child_result r;
    run_in_child(run_park_cancel_canary, NULL, &r);
    cr_assert(WIFEXITED(r.status) && WEXITSTATUS(r.status) == 0, "status %#x, stderr:\n%s",
              r.status, r.err);
}
