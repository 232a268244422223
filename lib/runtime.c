// SPDX-License-Identifier: MIT
/*
 * Runtimes seen from outside: weft_run, long-lived runtimes, and submission from foreign threads.
 *
 * Each submission gets a scope of its own (an "external" scope: no task owns it), a child of the
 * runtime's root scope. The handle waits for that scope to empty; cancelling the handle cancels
 * the scope; shutting the runtime down cancels the root, so every submission below it.
 */
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#include "errno_keep.h"
#include "runtime.h"

#include "alloc.h"
#include "barrier.h"
#include "blocking.h"
#include "cancel.h"
#include "dump.h"
#include "futex.h"
#include "inject.h"
#include "records.h"
#include "sched.h"
#include "scope.h"
#include "trace.h"
#include "tsan.h"
#include "watchdog.h"

/* ---- creation and shutdown --------------------------------------------------------------------
 */

/* 64 KiB: deep enough for ordinary C (printf, getaddrinfo and a parser fit with room to spare),
 * and stacks spaced 64 KiB apart share page-table pages about 30 to a page: with 256 KiB, a million
 * parked tasks needed a page-table page for every 8 of them, as many fresh pages again as the
 * stacks themselves. Tasks that need more ask for it (weft_spawn_opts.stack_size). */
#define DEFAULT_STACK (64 * 1024)

/* One worker per CPU this process may run on: its affinity mask, which taskset, cgroups' cpusets
 * and container runtimes narrow, not every CPU online (more workers than CPUs only take turns);
 * the online count where the mask cannot be read (more than CPU_SETSIZE CPUs). At most the
 * runtime's limit: a default must not be a configuration that start refuses, nor outgrow the
 * arrays sized by that limit. */
static unsigned default_workers(void)
{
    cpu_set_t set;
    long n = sched_getaffinity(0, sizeof(set), &set) == 0 ? CPU_COUNT(&set)
                                                          : sysconf(_SC_NPROCESSORS_ONLN);
    if (n < 1)
        return 1;
    return n > WEFT__MAX_WORKERS ? WEFT__MAX_WORKERS : (unsigned)n;
}

/* A signal the C library keeps for its own threads' use (glibc: those from 32 below SIGRTMIN),
 * whose handler sigaction(2) would refuse to change. */
static int reserved_signal(int s)
{
    return s >= 32 && s < SIGRTMIN;
}

/* A signal the kernel sends for a fault of the thread itself: a handler that returns runs the
 * faulting instruction again, so a dump on it turned a crash into an endless loop of dumps (and
 * took the place of the stack-overflow report, stack.c). */
static int fault_signal(int s)
{
    return s == SIGSEGV || s == SIGBUS || s == SIGFPE || s == SIGILL || s == SIGTRAP || s == SIGSYS;
}

/* WEFT_CHAOS=<seed> turns chaos mode on (see sched.c): a number, or any string hashed. */
static uint64_t chaos_seed_from_env(void)
{
    const char *v = getenv("WEFT_CHAOS");
    if (!v || !*v)
        return 0;
    char *end;
    unsigned long long seed = strtoull(v, &end, 0);
    if (*end) { /* not a number: any string is a seed */
        seed = 1469598103934665603ull;
        for (const char *c = v; *c; c++)
            seed = (seed ^ (unsigned char)*c) * 1099511628211ull;
    }
    return seed ? seed : 1;
}

/* The trace of `rt` (trace.h), if its configuration or WEFT_TRACE names a file: 0, or the code
 * of a configured file that cannot be opened (an unusable WEFT_TRACE is only said). */
static int open_trace(weft_runtime *rt)
{
    const char *path = rt->cfg.trace_path;
    int configured = path != NULL;
    if (!path)
        path = getenv("WEFT_TRACE");
    if (!path || !*path)
        return 0;
    int rc = weft__trace_open(&rt->trace, path, rt->nworkers);
    if (rc == 0) {
        rt->detours |= WEFT__DETOUR_TRACE;
        for (unsigned i = 0; i < rt->nworkers; i++)
            rt->workers[i].trace = weft__trace_buf_of(rt->trace, i);
        return 0;
    }
    if (configured)
        return rc;
    fprintf(stderr, "weft: WEFT_TRACE=%s: cannot write the trace there (%s); running untraced\n",
            path, strerror(-rc));
    return 0;
}

/* ---- the workers
 * ---------------------------------------------------------------------------------- */

/* Prepares the workers (rt->workers, rt->nworkers set): queues, timers, idle seams, generators.
 * 0 or -ENOMEM (then nothing is left to free). */
static int init_workers(weft_runtime *rt)
{
    memset(rt->workers, 0, sizeof(weft__worker) * rt->nworkers);
    rt->asymmetric = rt->nworkers > 1 && weft__barrier_supported();
    for (unsigned i = 0; i < rt->nworkers; i++) {
        weft__worker *w = &rt->workers[i];
        w->rt = rt;
        w->index = i;
        w->rng = 0x9E3779B97F4A7C15ull * (i + 1);
        w->chaos_rng = (rt->chaos ^ (0x9E3779B97F4A7C15ull * (i + 1))) | 1;
        weft__timer_heap_init(&w->timers);
        weft__idle_init(&w->idle, &rt->poller);
        if (weft__deque_init(&w->spawnq, 8) != 0 || weft__deque_init(&w->readyq, 8) != 0) {
            for (unsigned j = 0; j <= i; j++) {
                weft__deque_destroy(&rt->workers[j].spawnq);
                weft__deque_destroy(&rt->workers[j].readyq);
            }
            return -ENOMEM;
        }
        /* Only workers steal, and never from themselves (steal_round). */
        weft__deque_set_solo(&w->spawnq, rt->nworkers == 1);
        weft__deque_set_solo(&w->readyq, rt->nworkers == 1);
        /* A spawn queue's owner pops most of what it pushes (a join runs its children inline):
         * those pops go without the fence while nobody asks for the items (deque.h). A ready
         * queue's owner takes from the top, as thieves do: nothing to gain there. */
        if (rt->asymmetric)
            weft__deque_set_private(&w->spawnq);
    }
    return 0;
}

/* The `k`-th CPU of `allowed` (those this process may use, not empty), modulo their number, as
 * a set of one: worker k's CPU, where it is pinned or where it starts. */
static cpu_set_t kth_allowed_cpu(const cpu_set_t *allowed, unsigned k)
{
    k %= (unsigned)CPU_COUNT(allowed);
    cpu_set_t one;
    CPU_ZERO(&one);
    for (int cpu = 0; cpu < CPU_SETSIZE; cpu++)
        if (CPU_ISSET(cpu, allowed) && k-- == 0) {
            CPU_SET(cpu, &one);
            break;
        }
    return one;
}

/* Moves the calling worker's thread to the `k`-th CPU it may run on, modulo their number, and
 * leaves it free to move again: a first home, not a pin. A new thread starts on its creator's
 * CPU, and a worker asleep from its start is woken, by the worker that found work for it, onto
 * the CPU it last ran on when that one is idle, else, where the kernel sees no cache shared
 * between the CPUs (virtual machines that do not describe their caches), onto the waker's own:
 * two workers then shared one CPU until the kernel's balancing moved one, some milliseconds,
 * the whole of a short parallel section (fib(30) at two workers: 9-13 ms instead of 6-7 in such
 * runs, both workers found on one CPU in most samples). Having run on a CPU of its own, it is
 * woken there while that CPU is idle. Failures change nothing. */
static void settle_on_own_cpu(unsigned k)
{
    cpu_set_t allowed;
    if (sched_getaffinity(0, sizeof(allowed), &allowed) != 0 || CPU_COUNT(&allowed) < 2)
        return;
    cpu_set_t one = kth_allowed_cpu(&allowed, k);
    if (sched_setaffinity(0, sizeof(one), &one) == 0)
        sched_setaffinity(0, sizeof(allowed), &allowed);
}

/* The overflow report's "who": the task this worker runs (an inline child on its joiner's stack
 * is the running task too, and the one that overflowed). Called in the fault handler, on this
 * worker's thread. */
static void describe_running(void *ctx, const char **name, uint64_t *id, const weft__stack **stack)
{
    weft__task *t = weft__sched_current(ctx);
    *name = t ? t->name : NULL;
    *id = t ? t->id : 0;
    *stack = t && t->host ? t->host->stack : NULL;
}

/* A worker's thread: sets the thread up, then runs the worker loop until the runtime stops. */
static void *worker_thread(void *arg)
{
    weft__worker *w = arg;
    weft__alloc_tls_own_waits = &w->own_waits;
    w->counts.born = weft_now();
    atomic_store_explicit(&w->tid, (int)gettid(), memory_order_relaxed);
    /* top, gdb and the watchdog's reports name it: weft-w0, weft-w1, ... */
    char name[16];
    snprintf(name, sizeof(name), "weft-w%u", w->index);
    pthread_setname_np(pthread_self(), name);
    /* Sleeping workers wake for timers: ask the kernel for precise wake-ups. */
    prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
    /* A write to a closed pipe or socket returns EPIPE here, never kills the process (io.c
     * takes the pending signal). */
    sigset_t pipe_only;
    sigemptyset(&pipe_only);
    sigaddset(&pipe_only, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_only, NULL);
    pthread_attr_t attr;
    if (pthread_getattr_np(pthread_self(), &attr) == 0) {
        pthread_attr_getstack(&attr, &w->thread_stack_lo, &w->thread_stack_size);
        pthread_attr_destroy(&attr);
    }
#ifdef WEFT_TSAN
    w->tsan_fiber = __tsan_get_current_fiber();
#endif
    w->altstack = weft__stack_fault_thread_init(&w->rt->stacks, describe_running, w);
    weft__stack_fault_set_report(w->rt->cfg.report, w->rt->cfg.report_arg);
    if (!w->rt->cfg.pin_workers)
        settle_on_own_cpu(w->index);
    weft__sched_run_worker(w);
    weft__stack_fault_thread_exit(w->altstack);
    weft__alloc_tls_own_waits = NULL;
    return NULL;
}

/* Tells the first `n` workers to stop and waits for their threads. */
static void join_workers(weft_runtime *rt, unsigned n)
{
    atomic_store_explicit(&rt->stopping, 1, memory_order_seq_cst);
    for (unsigned i = 0; i < n; i++)
        weft__idle_wake(&rt->workers[i].idle);
    for (unsigned i = 0; i < n; i++)
        pthread_join(rt->workers[i].thread, NULL);
}

/* Starts the worker threads, pinned if the configuration says so. 0, or -EAGAIN when a thread
 * cannot be created: the workers started before it are stopped then, and rt->nworkers is 0. */
static int start_workers(weft_runtime *rt)
{
    cpu_set_t allowed;
    int pin = rt->cfg.pin_workers && sched_getaffinity(0, sizeof(allowed), &allowed) == 0 &&
              CPU_COUNT(&allowed) > 0;
    for (unsigned started = 0; started < rt->nworkers; started++) {
        weft__worker *w = &rt->workers[started];
        if (weft__alloc_thread_create(&w->thread, NULL, worker_thread, w) != 0) {
            /* The workers already running read nworkers as they look for work: it changes only
             * once they are gone. */
            join_workers(rt, started);
            rt->nworkers = 0;
            return -EAGAIN;
        }
        if (pin) {
            cpu_set_t one = kth_allowed_cpu(&allowed, started);
            pthread_setaffinity_np(w->thread, sizeof(one), &one);
        }
    }
    return 0;
}

/* Tells every worker to stop, waits for their threads and frees what init_workers made. All
 * work must be over. */
static void stop_workers(weft_runtime *rt)
{
    join_workers(rt, rt->nworkers);
    /* Every worker made, started or not (nworkers counts the threads to join). */
    for (unsigned i = 0; i < rt->cfg.workers; i++) {
        weft__worker *w = &rt->workers[i];
        weft__records_worker_drop(w);
        weft__stack_cache_flush(&rt->stacks, &w->stacks);
        weft__timer_heap_destroy(&w->timers);
        weft__deque_destroy(&w->spawnq);
        weft__deque_destroy(&w->readyq);
    }
}

/* The configuration with every default filled in, in *c; -EINVAL for a value out of range. */
static int resolve_config(weft_config *c, const weft_config *cfg)
{
    *c = (weft_config){0};
    if (cfg)
        *c = *cfg;
    if (c->workers > WEFT__MAX_WORKERS || (c->stack_size && c->stack_size < 16 * 1024) ||
        c->stack_size > ((size_t)1 << 32) || c->blocking_idle_ns < 0 || c->dump_signal < 0 ||
        c->dump_signal >= NSIG || c->dump_signal == SIGKILL || c->dump_signal == SIGSTOP ||
        reserved_signal(c->dump_signal) || fault_signal(c->dump_signal))
        return -EINVAL;
    if (!c->workers)
        c->workers = default_workers();
    if (!c->stack_size)
        c->stack_size = DEFAULT_STACK;
    if (!c->blocking_threads)
        c->blocking_threads = 64;
    if (!c->watchdog_ns)
        c->watchdog_ns = 100 * WEFT_MSEC;
    if (!c->blocking_idle_ns)
        c->blocking_idle_ns = 2 * WEFT_SEC;
    return 0;
}

/* The runtime's memory, its workers prepared (not started), its root scope and blocking pool. */
static int init_runtime(weft_runtime **out, const weft_config *c)
{
    /* Aligned: its groups take cache lines of their own (see runtime.h). */
    weft_runtime *rt = weft__alloc_aligned(_Alignof(weft_runtime), sizeof(*rt));
    if (!rt)
        return -ENOMEM;
    memset(rt, 0, sizeof(*rt));
    rt->cfg = *c;
    rt->nworkers = c->workers;
    rt->chaos = chaos_seed_from_env();
    weft__dump_init(rt);
    if (rt->chaos)
        rt->detours |= WEFT__DETOUR_CHAOS;
    weft__lock_init(&rt->inject_lock);
    weft__lock_init(&rt->chunk_lock);
    weft__stack_pool_init(&rt->stacks, c->stack_size);
    weft__huge_init(&rt->huge);
    rt->workers = weft__alloc_aligned(64, sizeof(weft__worker) * c->workers);
    int rc = rt->workers ? weft__poll_init(&rt->poller) : -ENOMEM;
    if (rc == 0 && (rc = init_workers(rt)) != 0)
        weft__poll_destroy(&rt->poller);
    if (rc == 0 && (rc = open_trace(rt)) != 0) {
        rt->nworkers = 0; /* none started */
        stop_workers(rt);
        weft__poll_destroy(&rt->poller);
    }
    if (rc == 0) {
        rc = weft__scope_new_external(rt, NULL, &rt->root_scope);
        if (rc == 0 && (rc = weft__blocking_init(rt)) != 0)
            weft__scope_external_free(rt->root_scope);
        if (rc != 0) {
            rt->nworkers = 0; /* none started: nothing to join, and the rest to free */
            stop_workers(rt);
            weft__poll_destroy(&rt->poller);
        }
    }
    if (rc != 0) {
        if (rt->trace)
            weft__trace_close(rt->trace, rt->cfg.report, rt->cfg.report_arg);
        weft__stack_pool_destroy(&rt->stacks);
        weft__records_destroy(rt);
        free(rt->workers);
        free(rt);
        return rc;
    }
    *out = rt;
    return 0;
}

int weft__runtime_create(weft_runtime **out, const weft_config *cfg)
{
    weft_config c;
    weft_runtime *rt;
    int rc = resolve_config(&c, cfg);
    if (rc == 0)
        rc = init_runtime(&rt, &c);
    if (rc != 0)
        return rc;
    rc = start_workers(rt);
    if (rc == 0)
        rc = weft__dump_register(rt);
    if (rc != 0) {
        weft__runtime_stop(rt);
        return rc;
    }
    weft__watchdog_start(rt);
    *out = rt;
    return 0;
}

/* Stops the workers and frees everything the runtime holds but the weft_runtime itself. */
static void release_runtime(weft_runtime *rt)
{
    weft__dump_unregister(rt); /* before anything a dump reads is freed */
    weft__watchdog_stop(rt);
    stop_workers(rt);
    if (rt->trace) {
        /* The workers are gone: their buffers are still. */
        weft__trace_close(rt->trace, rt->cfg.report, rt->cfg.report_arg);
        rt->trace = NULL;
        rt->detours &= ~(uint64_t)WEFT__DETOUR_TRACE;
    }
    weft__poll_destroy(&rt->poller);
    weft__blocking_destroy(rt);
    if (rt->root_scope)
        weft__scope_external_free(rt->root_scope);
    weft__stack_pool_destroy(&rt->stacks);
    weft__records_destroy(rt);
    free(rt->workers);
}

void weft__runtime_stop(weft_runtime *rt)
{
    release_runtime(rt);
    free(rt);
}

/* Runtimes weft_runtime_shutdown ended: each weft_runtime stays, shutting_down set, for the life
 * of the process, since a thread still holding the pointer may call weft_submit or
 * weft_runtime_shutdown at any time and is answered -ESHUTDOWN from it (see
 * weft_runtime_shutdown in weft.h). Listed only so that leak checkers see them kept. */
static pthread_mutex_t retired_lock = PTHREAD_MUTEX_INITIALIZER;
static weft_runtime **retired;
static size_t nretired, retired_cap;

static void retire(weft_runtime *rt)
{
    pthread_mutex_lock(&retired_lock);
    if (nretired == retired_cap) {
        /* Not through the allocation hook: its failure changes nothing a caller could see (the
         * runtime is kept all the same, only unlisted). */
        size_t cap = retired_cap ? 2 * retired_cap : 16;
        weft_runtime **grown = realloc(retired, cap * sizeof(*grown));
        if (grown) {
            retired = grown;
            retired_cap = cap;
        }
    }
    if (nretired < retired_cap)
        retired[nretired++] = rt;
    pthread_mutex_unlock(&retired_lock);
}

unsigned weft_workers(void)
{
    weft__worker *w = weft__sched_worker();
    return w ? w->rt->nworkers : 0;
}

int weft_worker_index(void)
{
    weft__worker *w = weft__sched_worker();
    return w ? (int)w->index : -1;
}

/* ---- submissions and handles --------------------------------------------------------------------
 */

struct weft_handle {
    weft__lock lock;
    weft_scope *scope; /* NULL once the task has ended */
    _Atomic uint32_t done;
    int status;
    _Atomic int refs; /* the caller's and the running task's */
    weft_runtime *rt;
};

static void handle_unref(weft_handle *h)
{
    if (atomic_fetch_sub_explicit(&h->refs, 1, memory_order_acq_rel) == 1)
        free(h);
}

/* The submitted task (and everything below it) ended: runs on the thread of the last to end. */
static void submission_done(weft_scope *s, int status)
{
    weft_handle *h = s->on_done_arg;
    weft_runtime *rt = h->rt;
    weft__lock_acquire(&h->lock);
    h->scope = NULL;
    h->status = status;
    weft__lock_release(&h->lock);
    weft__scope_external_free(s);
    atomic_store_explicit(&h->done, 1, memory_order_release);
    weft__futex_wake(&h->done);
    handle_unref(h);
    if (atomic_fetch_sub_explicit(&rt->outstanding, 1, memory_order_acq_rel) == 1)
        weft__futex_wake(&rt->outstanding);
}

static int runtime_start_body(weft_runtime **out, const weft_config *cfg)
{
    if (!out)
        return -EINVAL;
    if (weft__sched_worker())
        return -EDEADLK;
    return weft__runtime_create(out, cfg);
}

int weft_runtime_start(weft_runtime **out, const weft_config *cfg)
{
    int kept = weft__errno_keep();
    int rc = runtime_start_body(out, cfg);
    weft__errno_put_back(kept);
    return rc;
}

static int submit(weft_runtime *rt, weft_fn fn, void *arg, const char *name, weft_handle **out)
{
    if (!rt || !fn || !out)
        return -EINVAL;
    /* After the shutdown began, refused at once: read-only (the runtime may be retired), and
     * no count for the shutdown to wait on. Racing calls are settled by the check below. */
    if (atomic_load_explicit(&rt->shutting_down, memory_order_relaxed))
        return -ESHUTDOWN;
    /* Counted before the check, each side with a seq_cst RMW or store before its load: either
     * shutdown waits for this submission, or this submission sees the shutdown. */
    atomic_fetch_add_explicit(&rt->outstanding, 1, memory_order_seq_cst);
    int rc = -ESHUTDOWN;
    if (atomic_load_explicit(&rt->shutting_down, memory_order_seq_cst))
        goto refuse;
    rc = -ENOMEM;
    weft_handle *h = weft__alloc_calloc(1, sizeof(*h));
    if (!h)
        goto refuse;
    weft__lock_init(&h->lock);
    atomic_init(&h->refs, 2);
    h->rt = rt;
    weft_scope *s;
    rc = weft__scope_new_external(rt, rt->root_scope, &s);
    if (rc) {
        free(h);
        goto refuse;
    }
    weft__task *t = weft__records_alloc_task(rt);
    /* Its stack now: refused here, or sure to start (weft.h, weft_submit). */
    if (!t || weft__sched_hold_stack(NULL, rt, t) != 0) {
        if (t)
            weft__records_free_task(t);
        weft__scope_external_free(s);
        free(h);
        rc = -ENOMEM;
        goto refuse;
    }
    if (weft__scope_admit(s, NULL) < 0) {
        /* Born cancelled: the runtime began shutting down after the check above. */
        weft__sched_drop_stack(NULL, rt, t);
        weft__records_free_task(t);
        weft__scope_external_free(s);
        free(h);
        rc = -ESHUTDOWN;
        goto refuse;
    }
    h->scope = s;
    s->on_done = submission_done;
    s->on_done_arg = h;
    weft__task_init_child(t, s, fn, arg, name);
    t->flags |= WEFT__TASK_SUBMITTED;
    atomic_fetch_add_explicit(&rt->submitted, 1, memory_order_relaxed);
    weft__inject_task(rt, t);
    *out = h;
    weft__scope_external_seal(s);
    return 0;
refuse:
    if (atomic_fetch_sub_explicit(&rt->outstanding, 1, memory_order_acq_rel) == 1)
        weft__futex_wake(&rt->outstanding);
    return rc;
}

static int submit_body(weft_runtime *rt, weft_fn fn, void *arg, weft_handle **out)
{
    return submit(rt, fn, arg, NULL, out);
}

int weft_submit(weft_runtime *rt, weft_fn fn, void *arg, weft_handle **out)
{
    int kept = weft__errno_keep();
    int rc = submit_body(rt, fn, arg, out);
    weft__errno_put_back(kept);
    return rc;
}

static int handle_wait_body(weft_handle *h, weft_time deadline, int *status)
{
    if (!h)
        return -EINVAL;
    if (weft__sched_worker())
        return -EDEADLK;
    while (!atomic_load_explicit(&h->done, memory_order_acquire)) {
        if (deadline != WEFT_NEVER && weft_now() >= deadline)
            return -ETIMEDOUT;
        weft__futex_wait(&h->done, 0, deadline);
    }
    if (status)
        *status = h->status;
    return 0;
}

int weft_handle_wait(weft_handle *h, weft_time deadline, int *status)
{
    int kept = weft__errno_keep();
    int rc = handle_wait_body(h, deadline, status);
    weft__errno_put_back(kept);
    return rc;
}

int weft_handle_cancel(weft_handle *h)
{
    if (!h)
        return -EINVAL;
    weft__lock_acquire(&h->lock);
    if (h->scope)
        weft__cancel_scope(h->scope, WEFT_CANCEL_EXPLICIT, -ECANCELED);
    weft__lock_release(&h->lock);
    return 0;
}

int weft_handle_release(weft_handle *h)
{
    if (!h)
        return -EINVAL;
    handle_unref(h);
    return 0;
}

/* Refuses submissions from now on, cancels every one under the root and waits until each has
 * ended and every weft_submit call that got past its check has left (see submit). 0, or
 * -ESHUTDOWN when another call began the shutdown. */
static int drain(weft_runtime *rt)
{
    if (atomic_exchange_explicit(&rt->shutting_down, 1, memory_order_seq_cst))
        return -ESHUTDOWN;
    weft__cancel_scope(rt->root_scope, WEFT_CANCEL_SHUTDOWN, -ECANCELED);
    uint32_t n;
    while ((n = atomic_load_explicit(&rt->outstanding, memory_order_seq_cst)) != 0)
        weft__futex_wait(&rt->outstanding, n, WEFT_NEVER);
    return 0;
}

static int runtime_shutdown_body(weft_runtime *rt)
{
    if (!rt)
        return -EINVAL;
    /* From a task, shutdown would block a worker's thread, not park a task: of rt, it would
     * wait for the caller itself; of another runtime, for tasks that may wait for work queued
     * behind the caller. From rt's blocking pool it would wait for the caller's own task. */
    if (weft__sched_worker() || weft__blocking_current_runtime() == rt ||
        weft__watchdog_runtime() == rt)
        return -EDEADLK;
    int rc = drain(rt);
    if (rc == 0) {
        release_runtime(rt);
        retire(rt);
    }
    return rc;
}

int weft_runtime_shutdown(weft_runtime *rt)
{
    int kept = weft__errno_keep();
    int rc = runtime_shutdown_body(rt);
    weft__errno_put_back(kept);
    return rc;
}

static int run_body(const weft_config *cfg, weft_fn root, void *arg)
{
    if (weft__sched_worker())
        return -EDEADLK;
    if (!root)
        return -EINVAL;
    weft_runtime *rt;
    int rc = weft_runtime_start(&rt, cfg);
    if (rc)
        return rc;
    weft_handle *h;
    rc = submit(rt, root, arg, "root", &h);
    if (rc == 0) {
        weft_handle_wait(h, WEFT_NEVER, &rc);
        weft_handle_release(h);
    }
    /* No other thread holds rt: the weft_runtime itself goes too. */
    drain(rt);
    weft__runtime_stop(rt);
    return rc;
}

int weft_run(const weft_config *cfg, weft_fn root, void *arg)
{
    int kept = weft__errno_keep();
    int rc = run_body(cfg, root, arg);
    weft__errno_put_back(kept);
    return rc;
}
