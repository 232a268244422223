// SPDX-License-Identifier: MIT
/*
 * The blocking pool.
 *
 * weft_blocking hands a function to a pool of plain OS threads and parks the calling task, so
 * that a blocking system call or a long computation never holds a worker. The pool grows on
 * demand up to its maximum, queues work beyond it, and a thread idle for cfg.blocking_idle_ns
 * exits (2 s by default: long enough that a steady trickle of calls reuses threads, short enough
 * that a burst does not leave 64 idle threads behind for long). The caller always waits for the
 * function to return, even when cancelled, because its arguments may live on the caller's
 * stack; the function may poll weft_blocking_cancelled() to stop early.
 *
 * Threads are joined, not detached: a thread that leaves the pool still runs a few steps of the
 * library's code (and the C library's exit of a thread, with the destructors of its
 * thread-local data) after its count is down, so a runtime that ended on the count alone could
 * return with one of them still running, and a program that then unloaded the library crashed
 * in it. A leaving thread puts its record on the pool's list of those gone. The pool's end
 * joins them, waiting; a submit joins those that have ended already and leaves the others for
 * later: it runs on a worker, which must not wait for a thread whose thread-local destructors
 * (the program's code) may take any time, or wait for that very worker.
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "blocking.h"
#include "errno_keep.h"

#include "alloc.h"
#include "cancel.h"
#include "futex.h"
#include "sched.h"
#include "scope.h"
#include "wait.h"

/* A pool thread that finished a job watches the queue this many rounds (tens of microseconds;
 * README.md, Performance) before it sleeps on the condition variable: calls that come in a stream
 * then find it awake, and the round trip costs no futex wake-up, which is most of its cost. */
#define POOL_SPIN 2000
/* Within that watch, the CPU is given up now and then: on a machine with no CPU to spare, the
 * worker this thread just woke may be waiting for this very CPU to run the caller on. */
#define POOL_YIELD_EVERY 256

/* One thread of the pool: its argument, and its record on the list of those gone. */
typedef struct pool_thread_rec {
    struct weft__blocking_pool *pool;
    pthread_t thread;
    struct pool_thread_rec *next;
} pool_thread_rec;

typedef struct blocking_job {
    weft_fn fn;
    void *arg;
    int result;
    weft__task *task;
    weft_scope *cancel_scope;
    struct blocking_job *next;
} blocking_job;

struct weft__blocking_pool {
    pthread_mutex_t mu;
    pthread_cond_t work; /* jobs queued, or stopping */
    pthread_cond_t gone; /* a thread exited */
    blocking_job *head, *tail;
    pool_thread_rec *left;   /* threads that left the pool, not joined yet */
    _Atomic unsigned queued; /* jobs in the queue, readable without the mutex */
    /* Jobs submitted whose caller has not been woken yet: an idle worker spins for their
     * wake-ups rather than sleep (steal.c). */
    _Atomic unsigned in_flight;
    /* Threads between two jobs that watch the queue before sleeping: counted from before they
     * wake their caller (whose next call must not start a new thread for nothing) until they
     * take a job or sleep (then they count in `idle`). */
    _Atomic unsigned spinning;
    unsigned threads, idle, max;
    _Atomic unsigned started; /* threads ever started: the next one's number, for its name */
    weft_time idle_exit;
    int stopping;
};

static _Thread_local blocking_job *running_job;

int weft__blocking_init(weft_runtime *rt)
{
    weft__blocking_pool *p = weft__alloc_calloc(1, sizeof(*p));
    if (!p)
        return -ENOMEM;
    pthread_mutex_init(&p->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&p->work, &ca);
    pthread_cond_init(&p->gone, &ca);
    pthread_condattr_destroy(&ca);
    p->max = rt->cfg.blocking_threads;
    p->idle_exit = rt->cfg.blocking_idle_ns;
    rt->blocking = p;
    return 0;
}

/* Joins the threads of `left` (a list taken from the pool) and frees their records. */
static void join_left(pool_thread_rec *left)
{
    while (left) {
        pool_thread_rec *r = left;
        left = r->next;
        pthread_join(r->thread, NULL);
        free(r);
    }
}

/* Joins the threads of `left` that have ended (without waiting for any) and frees their
 * records; returns the others, still a list. */
static pool_thread_rec *join_ended(pool_thread_rec *left)
{
    pool_thread_rec *running = NULL;
    while (left) {
        pool_thread_rec *r = left;
        left = r->next;
        if (pthread_tryjoin_np(r->thread, NULL) == 0) {
            free(r);
        } else {
            r->next = running;
            running = r;
        }
    }
    return running;
}

void weft__blocking_destroy(weft_runtime *rt)
{
    weft__blocking_pool *p = rt->blocking;
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    p->stopping = 1;
    pthread_cond_broadcast(&p->work);
    while (p->threads)
        pthread_cond_wait(&p->gone, &p->mu);
    pool_thread_rec *left = p->left;
    p->left = NULL;
    pthread_mutex_unlock(&p->mu);
    join_left(left); /* none of them runs on after the runtime's end */
    pthread_cond_destroy(&p->work);
    pthread_cond_destroy(&p->gone);
    pthread_mutex_destroy(&p->mu);
    free(p);
    rt->blocking = NULL;
}

/* A weft_now() instant as the pool's condition variables take it (CLOCK_MONOTONIC). */
static struct timespec cond_deadline(weft_time t)
{
    return (struct timespec){.tv_sec = t / WEFT_SEC, .tv_nsec = t % WEFT_SEC};
}

static void *pool_thread(void *arg)
{
    pool_thread_rec *self = arg;
    weft__blocking_pool *p = self->pool;
    int spinning = 0; /* counted in p->spinning */
    /* top and gdb name it: weft-b0, weft-b1, ... (threads come and go: numbers are not reused) */
    char name[16];
    snprintf(name, sizeof(name), "weft-b%u",
             atomic_fetch_add_explicit(&p->started, 1, memory_order_relaxed));
    pthread_setname_np(pthread_self(), name);
    /* As on the workers: a write to a closed pipe fails with EPIPE, it does not kill. */
    sigset_t pipe_only;
    sigemptyset(&pipe_only);
    sigaddset(&pipe_only, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_only, NULL);
    pthread_mutex_lock(&p->mu);
    for (;;) {
        if (!p->head && !p->stopping) {
            pthread_mutex_unlock(&p->mu);
            for (int i = 0; i < POOL_SPIN; i++) {
                if (atomic_load_explicit(&p->queued, memory_order_acquire))
                    break;
                if (i % POOL_YIELD_EVERY == POOL_YIELD_EVERY - 1)
                    sched_yield(); /* the worker it just woke may need this CPU */
                else
                    ck_pr_stall();
            }
            pthread_mutex_lock(&p->mu);
        }
        if (spinning) {
            atomic_fetch_sub_explicit(&p->spinning, 1, memory_order_relaxed);
            spinning = 0;
        }
        while (!p->head && !p->stopping) {
            p->idle++;
            weft_time now = weft_now();
            int rc;
            if (p->idle_exit > WEFT_NEVER - now) {
                /* WEFT_NEVER, or a span past the clock's range: the thread stays for good. */
                rc = pthread_cond_wait(&p->work, &p->mu);
            } else {
                struct timespec ts = cond_deadline(now + p->idle_exit);
                rc = pthread_cond_timedwait(&p->work, &p->mu, &ts);
            }
            p->idle--;
            if (rc == ETIMEDOUT && !p->head)
                goto leave;
        }
        if (!p->head)
            break; /* stopping */
        blocking_job *j = p->head;
        p->head = j->next;
        if (!p->head)
            p->tail = NULL;
        atomic_fetch_sub_explicit(&p->queued, 1, memory_order_relaxed);
        pthread_mutex_unlock(&p->mu);
        running_job = j;
        j->result = j->fn(j->arg);
        running_job = NULL;
        atomic_fetch_add_explicit(&p->spinning, 1, memory_order_relaxed);
        spinning = 1;
        weft__sched_wake(j->task, WEFT__WOKEN);
        /* After the wake: a worker that still sees the job in flight spins, and finds its task. */
        atomic_fetch_sub_explicit(&p->in_flight, 1, memory_order_relaxed);
        pthread_mutex_lock(&p->mu);
    }
leave:
    self->next = p->left;
    p->left = self;
    p->threads--;
    pthread_cond_broadcast(&p->gone);
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

/* Queues a job, starting a thread when the queued jobs outnumber the threads free to take them
 * and the maximum allows. 0, or -EAGAIN when no thread exists at all to run it. */
static int pool_submit(weft__blocking_pool *p, blocking_job *j)
{
    pthread_mutex_lock(&p->mu);
    j->next = NULL;
    if (p->tail)
        p->tail->next = j;
    else
        p->head = j;
    p->tail = j;
    unsigned queued = atomic_fetch_add_explicit(&p->queued, 1, memory_order_release) + 1;
    atomic_fetch_add_explicit(&p->in_flight, 1, memory_order_relaxed);
    unsigned spinning = atomic_load_explicit(&p->spinning, memory_order_relaxed);
    int rc = 0, started = 0;
    if (queued > p->idle + spinning && p->threads < p->max) {
        pool_thread_rec *r = weft__alloc_malloc(sizeof(*r));
        if (r) {
            r->pool = p;
            if (pthread_create(&r->thread, NULL, pool_thread, r) == 0) {
                p->threads++;
                started = 1;
            } else {
                free(r);
            }
        }
        if (!started && p->threads == 0) {
            /* Nobody could ever run it: take it back. */
            p->head = p->tail = NULL;
            atomic_fetch_sub_explicit(&p->queued, 1, memory_order_relaxed);
            atomic_fetch_sub_explicit(&p->in_flight, 1, memory_order_relaxed);
            rc = -EAGAIN;
        }
    }
    if (!started && !rc && p->idle && queued > spinning)
        pthread_cond_signal(&p->work);
    pool_thread_rec *left = p->left;
    p->left = NULL;
    pthread_mutex_unlock(&p->mu);
    if (left) {
        left = join_ended(left);
        if (left) { /* still in their exit: back on the list, for the next submit or the end */
            pool_thread_rec *last = left;
            while (last->next)
                last = last->next;
            pthread_mutex_lock(&p->mu);
            last->next = p->left;
            p->left = left;
            pthread_mutex_unlock(&p->mu);
        }
    }
    return rc;
}

static int blocking_body(weft_fn fn, void *arg, int *result)
{
    weft__task *t = weft__task_self();
    if (!t)
        return -EPERM;
    if (!fn)
        return -EINVAL;
    int code = weft__wait_enter(t, WEFT__ON_BLOCKING, (const void *)fn);
    if (code)
        return code;
    weft_scope *cs = t->cancel_scope;
    blocking_job j = {.fn = fn, .arg = arg, .task = t, .cancel_scope = cs};
    /* No cancel ends this wait: off the parked list before the park word is set (cancel.h). */
    weft__cancel_unlist(t);
    weft__wait_prepare(t);
    int rc = pool_submit(t->rt->blocking, &j);
    if (rc) {
        weft__sched_unprepare_park(t); /* nobody knows of the job: it cannot fail */
        return rc;
    }
    /* No cancel ends this wait: the function may use the caller's stack (see above). */
    weft__wait_park(t, NULL, WEFT_NEVER);
    if (result)
        *result = j.result;
    return weft__scope_cancel_code(cs);
}

int weft_blocking(weft_fn fn, void *arg, int *result)
{
    int kept = weft__errno_keep();
    int rc = blocking_body(fn, arg, result);
    weft__errno_put_back(kept);
    return rc;
}

void weft__blocking_counts(weft_runtime *rt, unsigned *threads, unsigned *idle, uint64_t *queued)
{
    weft__blocking_pool *p = rt->blocking;
    pthread_mutex_lock(&p->mu);
    *threads = p->threads;
    *idle = p->idle;
    pthread_mutex_unlock(&p->mu);
    *queued = atomic_load_explicit(&p->queued, memory_order_relaxed);
}

unsigned weft__blocking_in_flight(weft_runtime *rt)
{
    return atomic_load_explicit(&rt->blocking->in_flight, memory_order_relaxed);
}

unsigned weft__blocking_threads(weft_runtime *rt)
{
    weft__blocking_pool *p = rt->blocking;
    pthread_mutex_lock(&p->mu);
    unsigned n = p->threads;
    pthread_mutex_unlock(&p->mu);
    return n;
}

int weft__blocking_wait_threads(weft_runtime *rt, unsigned n, weft_time deadline)
{
    weft__blocking_pool *p = rt->blocking;
    struct timespec ts = cond_deadline(deadline);
    int rc = 0;
    pthread_mutex_lock(&p->mu);
    while (p->threads > n && rc != ETIMEDOUT)
        rc = pthread_cond_timedwait(&p->gone, &p->mu, &ts);
    int left = p->threads > n;
    pthread_mutex_unlock(&p->mu);
    return left ? -ETIMEDOUT : 0;
}

weft_runtime *weft__blocking_current_runtime(void)
{
    blocking_job *j = running_job;
    return j ? j->task->rt : NULL;
}

int weft_blocking_cancelled(void)
{
    blocking_job *j = running_job;
    return j && weft__scope_cancel_code(j->cancel_scope) != 0;
}
