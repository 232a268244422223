// SPDX-License-Identifier: MIT
/*
 * Mutexes that park tasks: a semaphore of one token and the task holding it. Recording the
 * holder is what turns the two classic corruptions into errors: a second lock by the holder
 * (-EDEADLK rather than a task waiting for itself for ever) and an unlock by anyone else (-EPERM
 * rather than a mutex two tasks believe they hold).
 */
#include <errno.h>
#include <stdlib.h>

#include "alloc.h"
#include "task.h"

struct weft_mutex {
    weft_sem *sem;
    weft__task *_Atomic holder; /* written by the holder only; read by any thread */
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
    if (atomic_load_explicit(&m->holder, memory_order_acquire))
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
    if (atomic_load_explicit(&m->holder, memory_order_relaxed) == t)
        return -EDEADLK;
    int rc = weft_sem_acquire(m->sem);
    if (rc == 0)
        atomic_store_explicit(&m->holder, t, memory_order_relaxed);
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
    atomic_store_explicit(&m->holder, t, memory_order_relaxed);
    return 0;
}

int weft_mutex_unlock(weft_mutex *m)
{
    weft__task *t = weft__task_self();
    if (!t)
        return -EPERM;
    if (!m)
        return -EINVAL;
    if (atomic_load_explicit(&m->holder, memory_order_relaxed) != t)
        return -EPERM;
    atomic_store_explicit(&m->holder, NULL, memory_order_release);
    return weft_sem_release(m->sem);
}
