// SPDX-License-Identifier: MIT
/* Cancellation: the fan-out down the scope tree, the pull of an unlinked scope's state from its
 * ancestors, linking a scope into its parent so that a cancel can reach it, and the lists of
 * tasks parked in a scope that a cancel wakes; see cancel.h. */
#include "cancel.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "sched.h"
#include "scope.h"

/* What a scope reports when an ancestor's cancel reached it: an ancestor's deadline is this
 * scope's effective deadline too, so it is a deadline here as well. */
int weft__cancel_inherited_reason(int reason, int code)
{
    if (reason == WEFT_CANCEL_SHUTDOWN)
        return WEFT_CANCEL_SHUTDOWN;
    return code == -ETIMEDOUT ? WEFT_CANCEL_DEADLINE : WEFT_CANCEL_PARENT;
}

/* A fan-out's work list, through cache_next (free while a scope is in use): scopes whose state
 * to set, and marks (pointer | TODO_MARK) of claimed scopes whose subtree is done once popped. */
#define TODO_MARK ((uintptr_t)1)

static weft_scope *todo_push(weft_scope *todo, weft_scope *c, uintptr_t mark)
{
    c->cache_next = todo;
    return (weft_scope *)((uintptr_t)c | mark);
}

static int reason_of_kind(uint64_t kind)
{
    return kind == 3 ? WEFT_CANCEL_SHUTDOWN : kind == 2 ? WEFT_CANCEL_DEADLINE : WEFT_CANCEL_PARENT;
}

/* Wakes and detaches the tasks listed in `s` (cancel.h), whose state is set and whose lock is
 * held: those parked are woken, those running look at the state at their next park. A detached
 * task's unlist finds itself off the list and needs neither the lock nor its neighbours'
 * records. The lock is let go every WAKE_CHUNK tasks: a listed task that runs on another worker
 * and takes itself off (it ends, or parks elsewhere) takes the lock, and would otherwise spin
 * until the whole list was woken (100,000 sleepers: milliseconds).
 * Registrations are refused meanwhile (the state is set), so the list only shrinks, and each wake
 * still happens under the lock of the registration it found. */
#define WAKE_CHUNK 64

static void wake_parked(weft_scope *s)
{
    /* The state before the park words (cancel.h): a listed task that parks without the lock
     * either sees the state or is seen parked here. */
    atomic_thread_fence(memory_order_seq_cst);
    weft__ready_batch woken = {.head = NULL};
    for (;;) {
        for (int n = 0; n < WAKE_CHUNK && s->parked; n++) {
            weft__task *t = s->parked;
            weft__task *hint = weft__task_hint(t);
            if (hint) { /* what the wake of a task a few steps on will touch */
                __builtin_prefetch(&hint->pnext, 1);
                __builtin_prefetch(&hint->wait, 1);
            }
            s->parked = t->pnext;
            if (s->parked)
                s->parked->pprev = NULL;
            /* Woken before it is detached: a task that finds itself detached may park again at
             * once (in a join, say), and a wake after the detach could end that park. One that
             * finds itself still listed takes this lock to take itself off or list itself
             * anywhere, and waits here until these stores are done. */
            weft__sched_wake_into(t, WEFT__WOKEN_CANCEL, &woken);
            t->pnext = t->pprev = NULL;
            atomic_store_explicit(&t->listed, 0, memory_order_release);
        }
        weft__sched_ready_batch(s->rt, &woken);
        if (!s->parked)
            return;
        weft__lock_release(&s->lock);
        weft__lock_acquire(&s->lock);
    }
}

enum { CLAIMED, DONE_BEFORE, FANNING_BEFORE };

/* The state `s` pulls from its ancestors as they stand now, as a kind: weft__cancel_pull's walk
 * without the cached answers, for a scope about to take a state of its own. A cached "not
 * cancelled" may be stale while a cancel is still setting states (the epoch moves only once it
 * is through): a pull that began before an ancestor's state was set can store it after, in the
 * same epoch. Taken as a scope's first cause, it let an explicit cancel of an unlinked scope make
 * itself the cause although a scope below it had already been joined with the ancestor's
 * deadline (a join that returned -ETIMEDOUT, then the reason "parent"). A cached cancel is never
 * stale: states do not change once set. */
static uint64_t pull_now(weft_scope *s)
{
    for (weft_scope *x = s;; x = x->parent) {
        /* `linked` before the state, as in weft__cancel_pull. */
        int linked = atomic_load_explicit(&x->linked, memory_order_acquire);
        int c = atomic_load_explicit(&x->cancel_code, memory_order_acquire);
        if (c)
            return atomic_load_explicit(&x->cancel, memory_order_relaxed) == WEFT_CANCEL_SHUTDOWN
                       ? 3
                       : weft__scope_cancel_encode(c);
        if (x->shield || !x->parent || linked)
            return 0;
    }
}

/* Sets the cancel state of `s` and wakes its parked tasks, marks it fanning and queues its mark
 * (unless it is the root of this fan-out) and its unshielded children (each with a reference)
 * on *todo: CLAIMED. Or finds it cancelled before: DONE_BEFORE, or FANNING_BEFORE while that
 * cancel still works below it. */
static int claim(weft_scope *s, int reason, int code, int root, weft_scope **todo)
{
    weft__lock_acquire(&s->lock);
    if (atomic_load_explicit(&s->cancel, memory_order_relaxed)) {
        int fanning = atomic_load_explicit(&s->fanning, memory_order_acquire);
        weft__lock_release(&s->lock);
        return fanning ? FANNING_BEFORE : DONE_BEFORE;
    }
    if (root && s->parent && !s->shield &&
        !atomic_load_explicit(&s->linked, memory_order_relaxed)) {
        /* Unlinked: it may already be cancelled through an ancestor (pulled). That state was
         * first; it becomes the scope's own. No linked scope hangs below an unlinked one. */
        uint64_t kind = pull_now(s);
        if (kind) {
            atomic_store_explicit(&s->cancel, reason_of_kind(kind), memory_order_release);
            atomic_store_explicit(&s->cancel_code, weft__scope_cancel_decode(kind),
                                  memory_order_release);
            weft__lock_release(&s->lock);
            return DONE_BEFORE;
        }
    }
    atomic_store_explicit(&s->cancel, reason, memory_order_release);
    atomic_store_explicit(&s->cancel_code, code, memory_order_release);
    atomic_store_explicit(&s->fanning, 1, memory_order_relaxed);
    /* The root's mark stays off the list: another fan-out may hold the root on its own list
     * (through the same cache_next), as a child of a scope it claimed. */
    if (!root)
        *todo = todo_push(*todo, s, TODO_MARK);
    for (weft_scope *c = s->first_child; c; c = c->next_sibling) {
        if (c->shield)
            continue;
        atomic_fetch_add_explicit(&c->refs, 1, memory_order_relaxed);
        *todo = todo_push(*todo, c, 0);
    }
    wake_parked(s);
    weft__lock_release(&s->lock);
    return CLAIMED;
}

/* Another cancel set this scope's state and still works below it: short work (no suspension,
 * locks held briefly), so wait for it on this thread. */
static void wait_fanout(weft_scope *s)
{
    unsigned round = 0;
    while (atomic_load_explicit(&s->fanning, memory_order_acquire))
        weft__lock_backoff(&round);
}

/* Iterative and depth-first, so that a tree 10,000 scopes deep does not need 10,000 frames on a
 * task's stack, and a scope's mark is popped only after its whole subtree. */
void weft__cancel_scope(weft_scope *s, int reason, int code)
{
    weft_scope *todo = NULL;
    int root = claim(s, reason, code, 1, &todo);
    if (root == FANNING_BEFORE)
        wait_fanout(s);
    int r;
    int inherited = weft__cancel_inherited_reason(reason, code);
    while (todo) {
        uintptr_t top = (uintptr_t)todo;
        weft_scope *c = (weft_scope *)(top & ~TODO_MARK);
        todo = c->cache_next;
        if (top & TODO_MARK) {
            atomic_store_explicit(&c->fanning, 0, memory_order_release);
            weft__scope_unref(c);
            continue;
        }
        r = claim(c, inherited, code, 0, &todo);
        if (r == CLAIMED)
            continue; /* its reference goes with its mark */
        if (r == FANNING_BEFORE)
            wait_fanout(c);
        weft__scope_unref(c);
    }
    if (root == CLAIMED)
        atomic_store_explicit(&s->fanning, 0, memory_order_release);
    /* After the states: a check that sees the new epoch sees them (unlinked scopes pull). */
    atomic_fetch_add_explicit(s->epoch, 1, memory_order_seq_cst);
}

uint64_t weft__cancel_pull(weft_scope *s)
{
    uint64_t epoch = atomic_load_explicit(s->epoch, memory_order_acquire);
    uint64_t cache = atomic_load_explicit(&s->cancel_cache, memory_order_relaxed);
    if ((cache >> 2) == epoch)
        return cache & 3;
    uint64_t kind = 0;
    for (weft_scope *x = s;; x = x->parent) {
        /* `linked` before the state: linking copies the parent's state into x and then sets
         * `linked` (release), so a scope seen linked shows its state. The other order could read
         * the state before the copy, the flag after it, and cache a cancelled scope as not. */
        int linked = atomic_load_explicit(&x->linked, memory_order_acquire);
        int c = atomic_load_explicit(&x->cancel_code, memory_order_acquire);
        if (c) {
            kind = atomic_load_explicit(&x->cancel, memory_order_relaxed) == WEFT_CANCEL_SHUTDOWN
                       ? 3
                       : weft__scope_cancel_encode(c);
            break;
        }
        if (x->shield || !x->parent || linked)
            break;
        if (x != s) {
            cache = atomic_load_explicit(&x->cancel_cache, memory_order_relaxed);
            if ((cache >> 2) == epoch) {
                kind = cache & 3;
                break;
            }
        }
    }
    atomic_store_explicit(&s->cancel_cache, epoch << 2 | kind, memory_order_relaxed);
    return kind;
}

int weft__cancel_code_slow(weft_scope *s)
{
    return weft__scope_cancel_decode(weft__cancel_pull(s));
}

/* Links `c` into its linked parent, taking over the parent's state: a fan-out that passed the
 * parent before could not see `c`. */
static void link_into_parent(weft_scope *c)
{
    weft_scope *p = c->parent;
    weft__lock_acquire(&p->lock);
    weft__lock_acquire(&c->lock);
    if (!atomic_load_explicit(&c->linked, memory_order_relaxed)) {
        weft__scope_link_child(p, c);
        int pc = atomic_load_explicit(&p->cancel_code, memory_order_relaxed);
        if (pc && !c->shield && !atomic_load_explicit(&c->cancel_code, memory_order_relaxed)) {
            atomic_store_explicit(&c->cancel,
                                  weft__cancel_inherited_reason(
                                      atomic_load_explicit(&p->cancel, memory_order_relaxed), pc),
                                  memory_order_release);
            atomic_store_explicit(&c->cancel_code, pc, memory_order_release);
        }
        atomic_store_explicit(&c->linked, 1, memory_order_release);
    }
    weft__lock_release(&c->lock);
    weft__lock_release(&p->lock);
}

/* Links `s` and its unlinked ancestors, top-down, so that every cancel above reaches `s`. */
static int ensure_linked(weft_scope *s)
{
    if (atomic_load_explicit(&s->linked, memory_order_acquire) || !s->parent)
        return 0;
    size_t n = 0, cap = 16;
    weft_scope *local[16];
    weft_scope **chain = local;
    for (weft_scope *x = s; x->parent && !atomic_load_explicit(&x->linked, memory_order_acquire);
         x = x->parent) {
        if (n == cap) {
            weft_scope **bigger = weft__alloc_malloc(2 * cap * sizeof(*bigger));
            if (!bigger) {
                if (chain != local)
                    free(chain);
                return -ENOMEM;
            }
            memcpy(bigger, chain, n * sizeof(*bigger));
            if (chain != local)
                free(chain);
            chain = bigger;
            cap *= 2;
        }
        chain[n++] = x;
    }
    while (n > 0)
        link_into_parent(chain[--n]);
    if (chain != local)
        free(chain);
    return 0;
}

int weft_scope_cancel(weft_scope *s)
{
    if (!s || __atomic_load_n(&s->state, __ATOMIC_RELAXED) == WEFT__SCOPE_RELEASED)
        return -EINVAL;
    weft__cancel_scope(s, WEFT_CANCEL_EXPLICIT, -ECANCELED);
    return 0;
}

weft_cancel_reason weft_scope_cancel_reason(const weft_scope *s)
{
    if (!s)
        return WEFT_CANCEL_NONE;
    weft_scope *m = (weft_scope *)s;
    /* The code first: the reason was stored before it, so the two agree. */
    if (atomic_load_explicit(&m->cancel_code, memory_order_acquire))
        return (weft_cancel_reason)atomic_load_explicit(&m->cancel, memory_order_relaxed);
    uint64_t kind = weft__cancel_pull(m);
    return kind ? (weft_cancel_reason)reason_of_kind(kind) : WEFT_CANCEL_NONE;
}

int weft__cancel_park_register(weft_scope *s, weft__task *t)
{
    int rc = ensure_linked(s);
    if (rc)
        return rc;
    weft__lock_acquire(&s->lock);
    int code = atomic_load_explicit(&s->cancel_code, memory_order_relaxed);
    if (code) {
        weft__lock_release(&s->lock);
        return code;
    }
    t->pprev = NULL;
    t->pnext = s->parked;
    if (s->parked)
        s->parked->pprev = t;
    s->parked = t;
    uint32_t r = s->park_count++ % WEFT__HINT_AHEAD;
    weft__task_set_hint(t, s->park_recent[r]);
    s->park_recent[r] = t;
    atomic_store_explicit(&t->listed, 1, memory_order_relaxed);
    weft__lock_release(&s->lock);
    t->listed_in = s;
    t->flags |= WEFT__TASK_LISTED;
    return 0;
}

void weft__cancel_unlist_slow(weft__task *t)
{
    t->flags &= ~(uint32_t)WEFT__TASK_LISTED;
    if (!atomic_load_explicit(&t->listed, memory_order_acquire))
        return; /* detached by a cancel */
    weft_scope *s = t->listed_in;
    weft__lock_acquire(&s->lock);
    if (atomic_load_explicit(&t->listed, memory_order_relaxed)) {
        if (t->pprev)
            t->pprev->pnext = t->pnext;
        else
            s->parked = t->pnext;
        if (t->pnext)
            t->pnext->pprev = t->pprev;
        atomic_store_explicit(&t->listed, 0, memory_order_relaxed);
    }
    weft__lock_release(&s->lock);
}
