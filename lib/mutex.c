// SPDX-License-Identifier: MIT
/*
 * Mutexes that park tasks: a semaphore of one token and the task holding it. Recording the
 * holder is what turns the two classic corruptions into errors: a second lock by the holder
 * (-EDEADLK rather than a task waiting for itself for ever) and an unlock by anyone else (-EPERM
 * rather than a mutex two tasks believe they hold). The holder is its task id, which no other
 * task ever has: a task's record is reused by the next task, so a record's address named a
 * task that ended holding the mutex and the unrelated task that came after it alike.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>

#include "alloc.h"
#include "task.h"

struct weft_mutex {
    weft_sem *sem;
    _Atomic uint64_t holder; /* the holder's task id, 0 for none; written by the holder only */
};

int weft_mutex_create(weft_mutex **out)
{
    if (!out)
        return -EINVAL;
    weft_mutex *m = weft__alloc_calloc(1, sizeof(*m));
    if (!m)
        return -ENOMEM;
    int rc = weft_sem_create(&m->sem, 1);
    if (rc) {
        free(m);
        return rc;
    }
    *out = m;
    return 0;
}

int weft_mutex_destroy(weft_mutex *m)
{
    if (!m)
        return -EINVAL;
    /* The token as well as the holder: a lock stores its id only after it took the token. */
    if (atomic_load_explicit(&m->holder, memory_order_acquire) || weft_sem_available(m->sem) == 0)
        return -EBUSY;
    int rc = weft_sem_destroy(m->sem);
    if (rc)
        return rc;
    free(m);
    return 0;
}

int weft_mutex_lock(weft_mutex *m)
{
    weft__task *t = weft__task_self();
    if (!t)
        return -EPERM;
    if (!m)
        return -EINVAL;
    if (atomic_load_explicit(&m->holder, memory_order_relaxed) == t->id)
        return -EDEADLK;
    int rc = weft_sem_acquire(m->sem);
    if (rc == 0)
        atomic_store_explicit(&m->holder, t->id, memory_order_relaxed);
    return rc;
}

int weft_mutex_trylock(weft_mutex *m)
{
    weft__task *t = weft__task_self();
    if (!t)
        return -EPERM;
    if (!m)
        return -EINVAL;
    if (weft_sem_try_acquire(m->sem) != 0)
        return -EBUSY;
    atomic_store_explicit(&m->holder, t->id, memory_order_relaxed);
    return 0;
}

int weft_mutex_unlock(weft_mutex *m)
{
    weft__task *t = weft__task_self();
    if (!t)
        return -EPERM;
    if (!m)
        return -EINVAL;
    if (atomic_load_explicit(&m->holder, memory_order_relaxed) != t->id)
        return -EPERM;
    atomic_store_explicit(&m->holder, 0, memory_order_release);
    return weft_sem_release(m->sem);
}
