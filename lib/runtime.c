/*
 * Runtimes seen from outside: weft_run, long-lived runtimes, and submission from foreign threads.
 *
 * Each submission gets a scope of its own (an "external" scope: no task owns it), a child of the
 * runtime's root scope. The handle waits for that scope to empty; cancelling the handle cancels
 * the scope; shutting the runtime down cancels the root, so every submission below it.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "alloc.h"
#include "scope.h"
#include "runtime.h"

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

int weft_runtime_start(weft_runtime **out, const weft_config *cfg)
{
    if (!out)
        return -EINVAL;
    if (weft__worker_self())
        return -EDEADLK;
    return weft__runtime_create(out, cfg);
}

static int submit(weft_runtime *rt, weft_fn fn, void *arg, const char *name, weft_handle **out)
{
    if (!rt || !fn || !out)
        return -EINVAL;
    /* Counted before the check, each side with a seq_cst RMW or store before its load: either
     * shutdown waits for this submission, or this submission sees the shutdown. */
    atomic_fetch_add_explicit(&rt->outstanding, 1, memory_order_seq_cst);
    int rc = -ESHUTDOWN;
    if (atomic_load_explicit(&rt->shutting_down, memory_order_seq_cst))
        goto refuse;
    rc = -ENOMEM;
    weft_handle *h = weft__calloc(1, sizeof(*h));
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
    weft__task *t = weft__task_alloc(rt);
    if (!t) {
        weft__scope_external_free(s);
        free(h);
        rc = -ENOMEM;
        goto refuse;
    }
    if (weft__scope_admit(s, NULL) < 0) {
        /* Born cancelled: the runtime began shutting down after the check above. */
        weft__task_free(t);
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
    weft__sched_inject(rt, t);
    *out = h;
    weft__scope_external_seal(s);
    return 0;
refuse:
    if (atomic_fetch_sub_explicit(&rt->outstanding, 1, memory_order_acq_rel) == 1)
        weft__futex_wake(&rt->outstanding);
    return rc;
}

int weft_submit(weft_runtime *rt, weft_fn fn, void *arg, weft_handle **out)
{
    return submit(rt, fn, arg, NULL, out);
}

int weft_handle_wait(weft_handle *h, weft_time deadline, int *status)
{
    if (!h)
        return -EINVAL;
    if (weft__worker_self())
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

int weft_handle_cancel(weft_handle *h)
{
    if (!h)
        return -EINVAL;
    weft__lock_acquire(&h->lock);
    if (h->scope)
        weft__scope_cancel(h->scope, WEFT_CANCEL_EXPLICIT, -ECANCELED);
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

int weft_runtime_shutdown(weft_runtime *rt)
{
    if (!rt)
        return -EINVAL;
    weft__worker *w = weft__worker_self();
    /* From its own workers or blocking pool, shutdown would wait for the caller itself. */
    if ((w && w->rt == rt) || weft__blocking_current_runtime() == rt)
        return -EDEADLK;
    atomic_store_explicit(&rt->shutting_down, 1, memory_order_seq_cst);
    weft__scope_cancel(rt->root_scope, WEFT_CANCEL_SHUTDOWN, -ECANCELED);
    uint32_t n;
    while ((n = atomic_load_explicit(&rt->outstanding, memory_order_seq_cst)) != 0)
        weft__futex_wait(&rt->outstanding, n, WEFT_NEVER);
    weft__runtime_stop(rt);
    return 0;
}

int weft_run(const weft_config *cfg, weft_fn root, void *arg)
{
    if (weft__worker_self())
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
    weft_runtime_shutdown(rt);
    return rc;
}
