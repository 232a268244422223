/*
 * The blocking pool and the watchdog.
 *
 * weft_blocking hands a function to a pool of plain OS threads and parks the calling task, so
 * that a blocking system call or a long computation never holds a worker. The pool grows on
 * demand up to its maximum, queues work beyond it, and a thread idle for cfg.blocking_idle_ns
 * exits (2 s by default: long enough that a steady trickle of calls reuses threads, short enough
 * that a burst does not leave 64 idle threads behind for long). The caller always waits for the
 * function to return, even when cancelled, because its arguments may live on the caller's
 * stack; the function may poll weft_blocking_cancelled() to stop early.
 *
 * The watchdog samples each worker's progress counter; a worker inside a task whose counter has
 * not moved for longer than the threshold runs a task that does not reach suspension points.
 * It is reported once, with the task's name. The runtime's own waits on the task's behalf (for
 * malloc's lock, the address space's, a spinlock) are not the task's time (alloc.h).
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

#include "alloc.h"
#include "futex.h"
#include "sched.h"
#include "scope.h"
#include "wait.h"

/* A pool thread that finished a job watches the queue this many rounds (tens of microseconds;
 * README.md, Performance) before it sleeps on the condition variable: calls that come in a stream then find it awake,
 * and the round trip costs no futex wake-up, which is most of its cost. */
#define POOL_SPIN 2000
/* Within that watch, the CPU is given up now and then: on a machine with no CPU to spare, the
 * worker this thread just woke may be waiting for this very CPU to run the caller on. */
#define POOL_YIELD_EVERY 256

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
    pthread_cond_t work;    /* jobs queued, or stopping */
    pthread_cond_t gone;    /* a thread exited */
    blocking_job *head, *tail;
    _Atomic unsigned queued; /* jobs in the queue, readable without the mutex */
    /* Threads between two jobs that watch the queue before sleeping: counted from before they
     * wake their caller (whose next call must not start a new thread for nothing) until they
     * take a job or sleep (then they count in `idle`). */
    _Atomic unsigned spinning;
    unsigned threads, idle, max;
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
    pthread_mutex_unlock(&p->mu);
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
    weft__blocking_pool *p = arg;
    int spinning = 0; /* counted in p->spinning */
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
        pthread_mutex_lock(&p->mu);
    }
leave:
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
    unsigned spinning = atomic_load_explicit(&p->spinning, memory_order_relaxed);
    int rc = 0, started = 0;
    if (queued > p->idle + spinning && p->threads < p->max) {
        pthread_t th;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        if (pthread_create(&th, &attr, pool_thread, p) == 0) {
            p->threads++;
            started = 1;
        } else if (p->threads == 0) {
            /* Nobody could ever run it: take it back. */
            p->head = p->tail = NULL;
            atomic_fetch_sub_explicit(&p->queued, 1, memory_order_relaxed);
            rc = -EAGAIN;
        }
        pthread_attr_destroy(&attr);
    }
    if (!started && !rc && p->idle && queued > spinning)
        pthread_cond_signal(&p->work);
    pthread_mutex_unlock(&p->mu);
    return rc;
}

int weft_blocking(weft_fn fn, void *arg, int *result)
{
    weft__task *t = weft__task_self();
    if (!t)
        return -EPERM;
    if (!fn)
        return -EINVAL;
    weft__task_chaos_point(t->rt);
    weft_scope *cs = t->cancel_scope;
    int code = weft__scope_cancel_code(cs);
    if (code)
        return code;
    blocking_job j = {.fn = fn, .arg = arg, .task = t, .cancel_scope = cs};
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

/* ---- watchdog ------------------------------------------------------------------------------ */

/* What the kernel says of a worker's thread (see weft__thread_times). */
static weft__thread_times thread_times_of(weft__worker *w)
{
    weft__thread_times tt = {0, 0, 0, 0};
    int tid = atomic_load_explicit(&w->tid, memory_order_relaxed);
    if (!tid)
        return tt;
    char path[64], stat[512];
    snprintf(path, sizeof(path), "/proc/self/task/%d/schedstat", tid);
    FILE *f = fopen(path, "r");
    if (!f)
        return tt;
    unsigned long long ran = 0, waited = 0;
    int got = fscanf(f, "%llu %llu", &ran, &waited);
    fclose(f);
    snprintf(path, sizeof(path), "/proc/self/task/%d/stat", tid);
    f = fopen(path, "r");
    if (!f || got != 2) {
        if (f)
            fclose(f);
        return tt;
    }
    size_t n = fread(stat, 1, sizeof(stat) - 1, f);
    fclose(f);
    stat[n] = 0;
    const char *end_of_name = strrchr(stat, ')'); /* the name may hold anything but the last ) */
    if (!end_of_name || end_of_name[1] != ' ')
        return tt;
    tt.ran = (weft_time)ran;
    tt.waited = (weft_time)waited;
    tt.runnable = end_of_name[2] == 'R';
    tt.known = 1;
    return tt;
}

/* How long the task running on `w` has held its worker since the watchdog's first still sample
 * (`since`, with the thread's times `then`), as of `now`. A task is reported for the time it
 * held its worker, running or blocked in a call; on a loaded machine the kernel may keep a
 * worker off its CPU for tens of milliseconds, and a task that polls checkpoints would otherwise
 * be reported for time it never had. A thread blocked in the kernel is charged with the time
 * that passed less its waits on a run queue; a runnable one only with its time on a CPU, since
 * the kernel adds a wait on the run queue to the thread's total only once the wait is over.
 * Where the kernel does not say, the time that passed. */
static weft_time time_held(weft_time since, weft__thread_times then, weft_time now,
                           weft__thread_times at)
{
    if (!then.known || !at.known)
        return now - since;
    if (at.runnable)
        return at.ran - then.ran;
    return now - since - (at.waited - then.waited);
}

static void *watchdog_main(void *arg)
{
    weft_runtime *rt = arg;
    weft_time limit = rt->cfg.watchdog_ns;
    weft_time period = limit / 4 > WEFT_MSEC ? limit / 4 : WEFT_MSEC;
    while (!atomic_load_explicit(&rt->stopping, memory_order_acquire)) {
        uint32_t seq = atomic_load_explicit(&rt->watchdog_wake, memory_order_acquire);
        if (atomic_load_explicit(&rt->stopping, memory_order_acquire))
            break;
        weft__futex_wait(&rt->watchdog_wake, seq, weft_now() + period);
        weft_time now = weft_now();
        for (unsigned i = 0; i < rt->nworkers; i++) {
            weft__worker *w = &rt->workers[i];
            /* `current` first: its acquire orders our reads of that task's record after the
             * record was written for it. A move of either is news: a task that starts running
             * bumps `progress`, one that takes its stack back from an inline child only changes
             * `current`. */
            weft__task *t = atomic_load_explicit(&w->current, memory_order_acquire);
            uint64_t p = atomic_load_explicit(&w->progress, memory_order_acquire);
            /* A worker in one of the library's own waits (an odd count: malloc's lock, the
             * address space's, a spinlock whose holder waits for a CPU) moves on as far as its
             * task is concerned: with far more workers than CPUs such a wait lasts hundreds of
             * milliseconds, and the task did not ask for it. Its time counts from the first
             * sample after the wait. */
            uint64_t own = atomic_load_explicit(&w->own_waits, memory_order_acquire);
            if (p != w->watch_progress || t != w->watch_task || !t || own != w->watch_own_waits ||
                (own & 1)) {
                w->watch_progress = p;
                w->watch_task = t;
                w->watch_own_waits = own;
                w->watch_since = now;
                w->watch_still = 0;
                continue;
            }
            /* Standing still: the thread's times from the first still sample on (one period
             * after the last move at most, so that moving workers cost no read). */
            weft__thread_times at = thread_times_of(w);
            if (!w->watch_still) {
                w->watch_still = 1;
                w->watch_then = at;
            }
            if (time_held(w->watch_since, w->watch_then, now, at) < limit)
                continue;
            /* Neither moved for `limit`, so the task is still running. Its id and name come
             * from its record, which is recycled, never freed, while the runtime lives: if the
             * task ended meanwhile, the check below drops the report (a record runs again only
             * as a new task, which bumps `progress`).
             * ThreadSanitizer would still see those reads race a recycling spawn, so its builds
             * take the id the worker keeps for them, and name the task by id alone. */
            char name[WEFT__TASK_NAME_MAX + 24];
#ifndef WEFT_TSAN
            uint64_t id = t->id;
            if (t->name[0])
                snprintf(name, sizeof(name), "%.*s", WEFT__TASK_NAME_MAX - 1, t->name);
            else
#else
            uint64_t id = atomic_load_explicit(&w->running_id, memory_order_acquire);
#endif
                snprintf(name, sizeof(name), "task-%llu", (unsigned long long)id);
            if (atomic_load_explicit(&w->progress, memory_order_acquire) != p ||
                atomic_load_explicit(&w->current, memory_order_acquire) != t ||
                atomic_load_explicit(&w->own_waits, memory_order_acquire) != own)
                continue;
            /* Once per task: a task that is reported, then yields, then hogs again is known. */
            if (w->watch_reported_id != id) {
                w->watch_reported_id = id;
                fprintf(stderr,
                        "weft: task '%s' has run on worker %u for over %lld ms without reaching a "
                        "suspension point; move blocking calls into weft_blocking() and add "
                        "weft_checkpoint() or weft_yield() to long loops\n",
                        name, i, (long long)(limit / WEFT_MSEC));
            }
        }
    }
    return NULL;
}

void weft__watchdog_start(weft_runtime *rt)
{
    if (rt->cfg.watchdog_ns < 0)
        return;
    atomic_init(&rt->watchdog_wake, 0);
    rt->watchdog_running = pthread_create(&rt->watchdog, NULL, watchdog_main, rt) == 0;
}

void weft__watchdog_stop(weft_runtime *rt)
{
    if (!rt->watchdog_running)
        return;
    atomic_store_explicit(&rt->stopping, 1, memory_order_seq_cst);
    weft__futex_bump(&rt->watchdog_wake);
    pthread_join(rt->watchdog, NULL);
    rt->watchdog_running = 0;
}
