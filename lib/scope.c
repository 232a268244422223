// SPDX-License-Identifier: MIT
/* The scope tree: open, join, release, limited scopes; see scope.h (cancellation: cancel.c). */
#include "scope.h"
#include "alloc.h"
#include "errno_keep.h"

#include <assert.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "barrier.h"
#include "cancel.h"
#include "deadline.h"
#include "inject.h"
#include "join_inline.h"
#include "records.h"
#include "runtime.h"
#include "sched.h"

/* `state` is the owner's, but weft_scope_cancel and weft_spawn may look at it from any thread:
 * those reads and the owner's writes are atomic (relaxed: it only detects misuse). */
static void set_state(weft_scope *s, int state)
{
    __atomic_store_n(&s->state, state, __ATOMIC_RELAXED);
}

/* ---- records ------------------------------------------------------------------------------ */

/* Scope records are recycled, never freed while the runtime lives (a stale timer item may still
 * point into one; see timer.h): a worker keeps those released on it, the runtime those released
 * elsewhere (records.c). */
/* The newest record of the cache of `w` (the caller's worker), which is not empty. */
static inline weft_scope *cache_pop_own(weft__worker *w)
{
    weft_scope *s = w->scopes.top;
    w->scopes.top = s->cache_next;
    w->scopes.count--;
    return s;
}

static inline weft_scope *cache_get(weft__worker *w, weft_runtime *rt)
{
    if (!w || w->rt != rt || !w->scopes.top)
        return weft__records_take_scope(rt);
    return cache_pop_own(w);
}

/* A worker keeps at most this many released scope records; beyond, they go to the runtime, where
 * any worker finds them. A task that opens a scope on one worker and releases it on another
 * (it parked in between and was woken there) would otherwise pile records up on the second
 * while the first allocates new ones. */
#define SCOPE_CACHE_MAX 256

/* `s` on top of the cache of `w` (the caller's worker, of the record's runtime), which has
 * room. */
static inline void cache_push_own(weft__worker *w, weft_scope *s)
{
    s->cache_next = w->scopes.top;
    w->scopes.top = s;
    w->scopes.count++;
}

static void cache_put(weft__worker *w, weft_scope *s)
{
    weft_runtime *rt = s->rt;
    if (w && w->rt == rt && w->scopes.count < SCOPE_CACHE_MAX) {
        cache_push_own(w, s);
        return;
    }
    weft__records_give_scope(rt, s);
}

/* The fields of a clean record (below) that a scope's life may leave otherwise, and that the
 * common release (release_newest) finds so already: its own reference only, not linked, no
 * failure, nothing counted on the owner's side, no concurrency limit. */
static void scope_rest(weft_scope *s)
{
    atomic_init(&s->linked, 0);
    atomic_init(&s->refs, 1);
    s->first_failure = 0;
    s->result_unseen = 0;
    s->owner_spawned = 0;
    s->max_running = 0;
}

/* Records in the caches are clean: the fields set here hold what a new scope starts with. A
 * scope's life leaves most of them so (its children, parked tasks, slots and timer are gone by
 * its release) and scope_free_on puts the others back, so that an open writes only the fields
 * that differ from use to use (scope_init): spawn-heavy programs open a scope per task. Records
 * never leave their runtime, so its pointers are set once too. */
static void scope_init_clean(weft_scope *s, weft_runtime *rt)
{
    weft__lock_init(&s->lock);
    atomic_init(&s->fanning, 0);
    atomic_init(&s->closing, 0);    /* and so every close leaves it */
    atomic_init(&s->timer.word, 0); /* a recycled record keeps its timer generation */
    s->rt = rt;
    s->epoch = &rt->cancel_epoch;
    s->joiner = NULL;
    s->first_child = NULL;
    s->parked = NULL;
    memset(s->park_recent, 0, sizeof(s->park_recent)); /* later uses leave stale hints: harmless */
    s->park_count = 0;
    s->timer_armed = 0;
    s->running = 0;
    weft__defer_init(&s->deferred);
    s->error_segs = NULL;
    atomic_init(&s->nerrors, 0);
    s->on_done = NULL;
    s->on_done_arg = NULL;
    s->child_status = 0;
    s->name[0] = 0;
    scope_rest(s);
}

static void assert_clean(const weft_scope *s, const weft_runtime *rt)
{
    assert(s->rt == rt && s->epoch == &rt->cancel_epoch);
    assert(!atomic_load_explicit(&s->fanning, memory_order_relaxed));
    assert(!atomic_load_explicit(&s->closing, memory_order_relaxed));
    assert(!s->joiner && !s->first_child && !s->parked && !s->timer_armed && !s->running);
    assert(!s->deferred.head && !s->deferred.tail && !s->deferred.spare);
    assert(!s->error_segs && !atomic_load_explicit(&s->nerrors, memory_order_relaxed));
    assert(!s->on_done && !s->on_done_arg && !s->child_status && !s->name[0]);
    assert(!atomic_load_explicit(&s->linked, memory_order_relaxed));
    assert(atomic_load_explicit(&s->refs, memory_order_relaxed) == 1);
    assert(!s->first_failure && !s->result_unseen && !s->owner_spawned);
    assert(!s->max_running);
    (void)s;
    (void)rt;
}

static __attribute__((noinline)) weft_scope *scope_alloc_new(weft_runtime *rt)
{
    /* Whole cache lines: records in use on different workers must not share one (the owner's
     * atomics on `balance` would bounce between cores). */
    weft_scope *s = weft__alloc_aligned(64, sizeof(*s));
    if (s) {
        /* Zeroed: a dump (dump.c) reading a new record racily finds NULL where its owner has
         * not written yet, never a stray pointer. */
        memset(s, 0, sizeof(*s));
        scope_init_clean(s, rt);
    }
    return s;
}

static inline __attribute__((always_inline)) weft_scope *scope_alloc(weft__worker *w,
                                                                     weft_runtime *rt)
{
    weft_scope *s = cache_get(w, rt);
    if (!s)
        return scope_alloc_new(rt);
    assert_clean(s, rt);
    return s;
}

/* The fields a clean record does not hold already, but for those its callers set themselves
 * (policy, shield, max_running where a scope has one, deadline, the cached cancel state and the
 * owner's links). */
static void scope_init(weft_scope *s, weft_scope *parent, weft__task *owner)
{
    atomic_init(&s->cancel, 0);
    atomic_init(&s->cancel_code, 0);
    atomic_init(&s->balance, WEFT__SCOPE_BIAS);
    atomic_init(&s->others, WEFT__SCOPE_OTHERS_NONE);
    set_state(s, WEFT__SCOPE_OPEN);
    s->owner = owner;
    s->parent = parent;
}

/* Back into a cache, clean (see scope_init_clean). `w`: the caller's worker (NULL off the
 * workers), looked up since its last suspension. Inline: every release ends here. */
static inline __attribute__((always_inline)) void scope_free_on(weft__worker *w, weft_scope *s)
{
    weft__defer_fini(&s->deferred, s->rt);
    if (s->error_segs)
        weft__errors_free(s);
    scope_rest(s);
    s->name[0] = 0;
    set_state(s, WEFT__SCOPE_RELEASED);
    cache_put(w, s);
}

static void scope_free(weft_scope *s)
{
    scope_free_on(weft__sched_worker(), s);
}

void weft__scope_unref(weft_scope *s)
{
    if (atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) == 1)
        scope_free(s);
}

void weft__scope_link_child(weft_scope *parent, weft_scope *s)
{
    s->next_sibling = parent->first_child;
    s->prev_sibling = NULL;
    if (parent->first_child)
        parent->first_child->prev_sibling = s;
    parent->first_child = s;
}

static void unlink_child(weft_scope *s)
{
    weft_scope *parent = s->parent;
    if (!parent || !atomic_load_explicit(&s->linked, memory_order_relaxed))
        return;
    weft__lock_acquire(&parent->lock);
    if (s->prev_sibling)
        s->prev_sibling->next_sibling = s->next_sibling;
    else
        parent->first_child = s->next_sibling;
    if (s->next_sibling)
        s->next_sibling->prev_sibling = s->prev_sibling;
    weft__lock_release(&parent->lock);
}

/* ---- counting ended children out in batches ------------------------------------------------
 * Every child that ends takes itself off its scope's balance, an RMW on a line the scope's other
 * children share. When many children of one scope end on two workers (a cancel of 100,000
 * sleepers), that line moved between the cores at every end. A worker now keeps the count of
 * the children of one scope that ended on it, and takes them off together: when COUNT_OUT_BATCH
 * have ended, when a child of another scope ends, and when it picks anything but a child of that
 * scope to run next (another task, or nothing: it never sleeps holding a count: the scheduler calls
 * release_held, see sched.h). Holding the count while a sibling runs delays nobody: whoever waits
 * for the scope's children waits for that sibling too. Holding it while an unrelated task runs
 * could: that task may spin until something the scope's joiner does, and the joiner would never be
 * woken. */
#define COUNT_OUT_BATCH 32

static void release_count_out(weft__worker *w)
{
    weft_scope *s = w->held_for;
    uint32_t n = w->held_count;
    w->held_for = NULL;
    w->held_count = 0;
    weft__scope_count_children_out(s, n);
}

void weft__scope_count_out(weft_scope *s)
{
    weft__worker *w = weft__sched_worker();
    if (w->held_for != s) {
        if (w->held_for)
            w->release_held(w);
        w->held_for = s;
        w->release_held = release_count_out;
    }
    if (++w->held_count == COUNT_OUT_BATCH)
        release_count_out(w);
}

/* ---- open ------------------------------------------------------------------------------------ */

static weft_time earlier(weft_time a, weft_time b)
{
    return a < b ? a : b;
}

/* Makes `s`, just opened by `t`, the newest of the scopes `t` owns and its innermost one, where
 * its suspension points look for cancellation. */
static inline void push_owned(weft__task *t, weft_scope *s)
{
    s->prev_owned = t->owned;
    t->owned = s;
    s->outer_cancel_scope = t->cancel_scope;
    t->cancel_scope = s;
}

/* Both expansions below share this body; with `o` NULL (no options: a plain fork-join scope, the
 * common case) every option test folds away. */
#define OPT(o, field) ((o) ? (o)->field : 0)

static inline __attribute__((always_inline)) int open_scope(weft_scope **out,
                                                            const weft_scope_opts *o)
{
    weft__worker *w = weft__sched_worker();
    weft__task *t = weft__sched_current(w);
    if (!t)
        return -EPERM;
    if (!out)
        return -EINVAL;
    if (OPT(o, timeout_ns) < 0 || OPT(o, deadline) < 0 ||
        (OPT(o, policy) != WEFT_FAIL_FAST && OPT(o, policy) != WEFT_COLLECT))
        return -EINVAL;
    weft_scope *parent = t->cancel_scope;
    /* The epoch before the state: a cancel that lands in between bumps it past this value, so
     * the answer cached below is recomputed instead of hiding that cancel. */
    uint64_t epoch = atomic_load_explicit(&t->rt->cancel_epoch, memory_order_acquire);
    int code = weft__scope_cancel_code(parent);
    int shield = OPT(o, shield) != 0;
    if (code && !shield)
        return code;

    weft_time own = OPT(o, deadline) ? OPT(o, deadline) : WEFT_NEVER;
    weft_time now = 0;
    if (OPT(o, timeout_ns)) {
        weft_time timeout = OPT(o, timeout_ns);
        now = weft_now();
        own = earlier(own, timeout > WEFT_NEVER - now ? WEFT_NEVER : now + timeout);
    }

    weft_scope *s = scope_alloc(w, t->rt);
    if (!s)
        return -ENOMEM;
    scope_init(s, parent, t);
    s->policy = OPT(o, policy);
    s->shield = shield;
    s->max_running = OPT(o, max_concurrency);
    if (o && o->name) {
        strncpy(s->name, o->name, sizeof(s->name) - 1);
        s->name[sizeof(s->name) - 1] = 0;
    }
    s->own_deadline = own;

    /* Not linked into the parent yet (see scope.h): it inherits the state by pulling. */
    atomic_store_explicit(&s->cancel_cache,
                          epoch << 2 | weft__scope_cancel_encode(shield ? 0 : code),
                          memory_order_relaxed);

    if (shield)
        weft__cancel_unlist(t); /* no cancel from outside may reach its waits (cancel.h) */
    push_owned(t, s);
    if (__builtin_expect(w->trace != NULL, 0))
        weft__trace_scope_open(w, s);

    /* A timer for every own deadline, even one later than an ancestor's: an ancestor's
     * deadline may be moved later (weft_scope_set_deadline), and this one must then still fire
     * on its own. */
    if (own != WEFT_NEVER) {
        if (own <= (now ? now : weft_now())) {
            weft__cancel_scope(s, WEFT_CANCEL_DEADLINE, -ETIMEDOUT);
        } else if (weft__deadline_arm(s, own) == 0) {
            s->timer_armed = 1;
        } else {
            weft_scope_release(s);
            return -ENOMEM;
        }
    }
    *out = s;
    return 0;
}

#undef OPT

/* An open with options may arm a timer (an allocation): errno as the caller had it. */
static __attribute__((noinline)) int open_with_options(weft_scope **out,
                                                       const weft_scope_opts *opts)
{
    int kept = weft__errno_keep();
    int rc = open_scope(out, opts);
    weft__errno_put_back(kept);
    return rc;
}

/* weft_scope_open's common case, for `t` running on `w`, whose cache holds a record: a plain
 * scope, in a parent that is not cancelled (its own code is clear and its pulled state, cached
 * for this very epoch, is clear too: one compare). 0 when opened, 1 when not the common case. */
static inline __attribute__((always_inline)) int open_common(weft__worker *w, weft__task *t,
                                                             weft_scope **out)
{
    weft_scope *parent = t->cancel_scope;
    /* The epoch before the state, as in open_scope. */
    uint64_t epoch = atomic_load_explicit(&t->rt->cancel_epoch, memory_order_acquire);
    if (__builtin_expect(atomic_load_explicit(&parent->cancel_code, memory_order_acquire) ||
                             atomic_load_explicit(&parent->cancel_cache, memory_order_relaxed) !=
                                 epoch << 2,
                         0))
        return 1;
    weft_scope *s = cache_pop_own(w);
    assert_clean(s, t->rt);
    scope_init(s, parent, t);
    s->policy = 0;
    s->shield = 0;
    s->own_deadline = WEFT_NEVER;
    atomic_store_explicit(&s->cancel_cache, epoch << 2, memory_order_relaxed);
    push_owned(t, s);
    *out = s;
    return 0;
}

/* weft_scope_open without options, when its common case is not at hand; in a traced runtime,
 * the common case but for the trace still goes the common way, and records its slice. */
static int open_plain_body(weft_scope **out)
{
    weft__worker *w = weft__sched_worker();
    weft__task *t = weft__sched_current(w);
    if (t && out && w->trace && w->scopes.top && open_common(w, t, out) == 0) {
        weft__trace_scope_open(w, *out);
        return 0;
    }
    return open_scope(out, NULL);
}

static __attribute__((noinline)) int open_plain(weft_scope **out)
{
    int kept = weft__errno_keep();
    int rc = open_plain_body(out);
    weft__errno_put_back(kept);
    return rc;
}

int weft_scope_open(weft_scope **out, const weft_scope_opts *opts)
{
    if (opts)
        return open_with_options(out, opts);
    /* The common case inline; anything else takes open_scope's whole path. */
    weft__worker *w = weft__sched_worker_leaf();
    weft__task *t = weft__sched_current(w);
    if (__builtin_expect(!t || !out || !w->scopes.top || w->trace, 0))
        return open_plain(out);
    if (__builtin_expect(open_common(w, t, out), 0))
        return open_plain(out);
    return 0;
}

weft_scope *weft_current_scope(void)
{
    weft__task *t = weft__task_self();
    return t ? t->scope : NULL;
}

/* ---- spawning ---------------------------------------------------------------------------- */

void weft__scope_last_child_gone(weft_scope *s)
{
    if (s->joiner)
        weft__sched_wake(s->joiner, WEFT__WOKEN);
    else if (s->on_done)
        s->on_done(s, s->child_status);
}

/* Until `flag` is no longer `value`: another thread is a few instructions from changing it
 * (unless it was switched out there). */
static void wait_while(_Atomic int *flag, int value)
{
    unsigned round = 0;
    while (atomic_load_explicit(flag, memory_order_acquire) == value)
        weft__lock_backoff(&round);
}

/* The first task other than the owner to count a child into `s`, in a runtime whose joins close
 * without a locked instruction (close_if_empty), makes sure that no such close misses it: the
 * barrier, then the end of a close that may have begun before it. Those after it wait until it
 * is through. */
static __attribute__((noinline)) void others_arrive(weft_scope *s)
{
    int none = WEFT__SCOPE_OTHERS_NONE;
    if (!atomic_compare_exchange_strong_explicit(&s->others, &none, WEFT__SCOPE_OTHERS_ARRIVING,
                                                 memory_order_relaxed, memory_order_relaxed)) {
        wait_while(&s->others, WEFT__SCOPE_OTHERS_ARRIVING);
        return;
    }
    /* Registered at start (barrier.h): the call cannot be refused. */
    (void)weft__barrier_heavy();
    wait_while(&s->closing, 1);
    atomic_store_explicit(&s->others, WEFT__SCOPE_OTHERS_IN, memory_order_release);
}

int weft__scope_admit_other(weft_scope *s)
{
    if (s->owner && s->rt->asymmetric &&
        atomic_load_explicit(&s->others, memory_order_acquire) != WEFT__SCOPE_OTHERS_IN)
        others_arrive(s);
    int64_t n = atomic_load_explicit(&s->balance, memory_order_relaxed);
    do {
        if (n <= 0)
            return -EINVAL; /* joined: no child may start any more */
    } while (!atomic_compare_exchange_weak_explicit(&s->balance, &n, n + 1, memory_order_acq_rel,
                                                    memory_order_relaxed));
    return 0;
}

void weft__scope_unadmit(weft_scope *s, uint32_t counted)
{
    if (counted & WEFT__TASK_OWNER_COUNTED)
        s->owner_spawned--;
    else
        weft__scope_count_child_out(s, 0);
}

int weft__scope_start_or_defer(weft_scope *s, weft_fn fn, void *arg)
{
    weft__lock_acquire(&s->lock);
    int rc = 0;
    if (s->running < s->max_running)
        s->running++;
    else
        rc = weft__defer_push(&s->deferred, s->rt, fn, arg) == 0 ? 1 : -ENOMEM;
    weft__lock_release(&s->lock);
    return rc;
}

/* A running child of a limited scope ended: its slot goes to the oldest deferred child, if any.
 * A bare one is returned for the ended child's record to run (1); a record is queued. */
static int pass_slot(weft_scope *s, weft__defer_entry *next)
{
    weft__lock_acquire(&s->lock);
    int got = weft__defer_pop(&s->deferred, s->rt, next);
    if (!got)
        s->running--;
    weft__lock_release(&s->lock);
    if (!got || next->fn)
        return got;
    weft__task *t = next->arg;
    if (weft__sched_spawn(s->rt, t) != 0)
        weft__inject_task(s->rt, t);
    return 0;
}

/* Whether `t`, a child of `s` ending with `rc`, fails in it: a cancel code is no failure where
 * the scope is cancelled (the child only answered the cancel), unless it hands a group up. */
static int is_failure(weft_scope *s, const weft__task *t, int rc)
{
    if (rc == 0)
        return 0;
    int cc = weft__scope_cancel_code(s);
    int by_cancel = cc && (rc == -ECANCELED || rc == -ETIMEDOUT);
    return !by_cancel || weft__errors_group_holds(t->failure, rc);
}

int weft__scope_child_done(weft_scope *s, weft__task *t, int rc, weft__defer_entry *next)
{
    if (is_failure(s, t, rc)) {
        weft__errors_record(s, t, rc);
        if (s->policy == WEFT_FAIL_FAST)
            weft__cancel_scope(s, WEFT_CANCEL_FAILURE, -ECANCELED);
    }
    if (t->flags & WEFT__TASK_SUBMITTED)
        s->child_status = rc; /* the submitted task's status, not whichever child ends last */
    /* The slot first: once this child is counted out, the scope may be gone. A bare successor
     * inherits the count instead: only slot holders are counted, so while one waits the count
     * cannot have reached zero. */
    if (s->max_running && pass_slot(s, next))
        return 1;
    weft__scope_count_child_out(s, t->flags);
    return 0;
}

/* ---- join and release ---------------------------------------------------------------------- */

/* Takes the balance of `s`, whose owner counts no child of its own any more, from its bias (no
 * child left) to 0 (joined: no child may start), if no child is left: 1 if it did. Another
 * worker may admit a child or count one out at any moment, hence the CAS. A runtime with one
 * worker has no such thread: a spawn needs a task, every task runs on that worker, and the
 * worker is here (the blocking pool's threads run no tasks). There a plain check and store do,
 * as the deques of such a runtime need no synchronisation either; the locked instruction was a
 * measurable share of a fork-join program's time at one worker.
 *
 * With more workers, a scope that nobody but its owner ever counted a child into (fib's, and
 * most fork-join scopes) has a balance of exactly BIAS here: its owner's children that ended
 * inline are counted in owner_spawned, which is zero, and one that was stolen would keep it
 * above zero until the join's fold. Only a task other than the owner, admitting a child at this
 * very moment, could change it. The close and that admission are Dekker's pattern: the owner
 * raises `closing` and then reads `others`, the other raises `others` and then reads `closing`
 * (others_arrive). The owner's side has a compiler barrier only; the other's, the first of its
 * kind in the scope's life, calls the asymmetric barrier (barrier.h). Then either the owner sees
 * `others` raised and takes the CAS path, or the other sees `closing` raised (or the close
 * finished) and waits for its end, after which its CAS finds the balance at 0 and the scope
 * joined. At two workers this took the locked instruction off every fork-join step (fib(30):
 * benchmarks/LOG.md, "The join without a locked instruction"). */
static inline int close_if_empty(weft_scope *s, const weft_runtime *rt)
{
    int64_t all_done = WEFT__SCOPE_BIAS;
    if (rt->nworkers == 1) {
        if (atomic_load_explicit(&s->balance, memory_order_relaxed) != all_done)
            return 0;
        atomic_store_explicit(&s->balance, 0, memory_order_relaxed);
        return 1;
    }
    if (rt->asymmetric) {
        atomic_store_explicit(&s->closing, 1, memory_order_relaxed);
        atomic_signal_fence(memory_order_seq_cst); /* the barrier of others_arrive orders them */
        if (atomic_load_explicit(&s->others, memory_order_relaxed) == WEFT__SCOPE_OTHERS_NONE) {
            assert(atomic_load_explicit(&s->balance, memory_order_relaxed) == all_done);
            atomic_store_explicit(&s->balance, 0, memory_order_relaxed);
            atomic_store_explicit(&s->closing, 0, memory_order_release);
            return 1;
        }
        atomic_store_explicit(&s->closing, 0, memory_order_relaxed);
    }
    return atomic_compare_exchange_strong_explicit(&s->balance, &all_done, 0, memory_order_acq_rel,
                                                   memory_order_relaxed);
}

static weft__worker *join_traced(weft__worker *w, weft__task *t, weft_scope *s, int releasing,
                                 int *result);

/* Chaos mode's point at the start of a join (out of line: the common join never comes here).
 * Returns the worker the caller runs on afterwards. */
static __attribute__((noinline)) weft__worker *join_chaos_point(weft__worker *w, weft__task *t)
{
    return weft__task_chaos_point(t->rt) ? weft__sched_worker() : w;
}

/* A join's own look at the clock, for a scope of its own deadline whose timer has not fired:
 * the worker that holds the timer may not have looked at its timers since the deadline passed
 * (one worker, running the owner without a suspension point), and the join returns what a timer
 * on time would have made it return. Only at its end: a look at its start would cost every join
 * a test, and the children it runs find a passed deadline at their checkpoints all the same. */
static __attribute__((noinline)) void join_deadline_check(weft_scope *s)
{
    if (!weft__scope_cancel_code(s) &&
        __atomic_load_n(&s->own_deadline, __ATOMIC_RELAXED) <= weft_now())
        weft__cancel_scope(s, WEFT_CANCEL_DEADLINE, -ETIMEDOUT);
}

/* The join of `s` by its owner `t`. `w`: the caller's worker, looked up since its last
 * suspension. Returns the worker the caller runs on afterwards. Inline in the common cases of
 * weft_scope_join and weft_scope_close; join_one elsewhere. The join's result goes to *result.
 * `releasing`: the caller releases `s` next, so no later join reads the result from `s`, and it
 * sets the state itself (see weft_scope_close). `traced`: a constant, 1 for join_traced. */
static inline __attribute__((always_inline)) weft__worker *
join_body_as(weft__worker *w, weft__task *t, weft_scope *s, int releasing, int *result, int traced)
{
    /* Off the parked list it is on (of `s` or of an outer scope): no cancel may end the join's
     * park, and `s` stops being the cancel scope of `t` at its end (cancel.h). */
    weft__cancel_unlist(t);
    /* One test for chaos mode and tracing both: a join of a traced runtime is join_traced. */
    if (__builtin_expect(t->rt->detours != 0, 0)) {
        if (!traced && w->trace)
            return join_traced(w, t, s, releasing, result);
        w = join_chaos_point(w, t);
    }
    /* Run our own unstarted children here, as calls: no stack, no switch. Only children of `s`:
     * running unrelated work inside a wait could deadlock (it could wait on us). */
    for (;;) {
        /* None of the owner's own children left, and no other child queued or running: */
        if (s->owner_spawned == 0 && close_if_empty(s, t->rt))
            goto joined; /* every child ended already: no park to prepare */
        weft__task *c = weft__join_take_child(w, t, s);
        if (!c)
            break;
        w = weft__join_run_child(w, t, s, c, traced);
    }
    if (s->owner_spawned == 0 && close_if_empty(s, t->rt))
        goto joined; /* the last one ended meanwhile on another worker */
    s->joiner = t;
    weft__task_note_wait(t, WEFT__ON_JOIN, s);
    weft__sched_prepare_park(t);
    int64_t delta = s->owner_spawned - WEFT__SCOPE_BIAS;
    s->owner_spawned = 0; /* folded into the balance: the children count out there now */
    if (atomic_fetch_add_explicit(&s->balance, delta, memory_order_acq_rel) + delta == 0) {
        /* No child left: nobody will wake us. */
        if (!weft__sched_unprepare_park(t)) {
            weft__sched_park(t);
            w = weft__sched_worker();
        }
    } else {
        weft__sched_park(t);
        w = weft__sched_worker();
    }
    s->joiner = NULL;
joined:
    if (traced)
        weft__trace_scope_joined(w, s);
    if (s->timer_armed) {
        join_deadline_check(s);
        weft__timer_cancel(&s->timer);
        s->timer_armed = 0;
    }
    int rc = s->first_failure ? s->first_failure : weft__scope_cancel_code(s);
    if (!releasing) {
        s->join_result = rc; /* for every later join */
        set_state(s, WEFT__SCOPE_JOINED);
    }
    *result = rc;
    /* `s` was its owner's innermost open scope: the scopes opened after it are joined. */
    assert(t->cancel_scope == s);
    t->cancel_scope = s->outer_cancel_scope;
    return w;
}

static __attribute__((noinline)) weft__worker *
join_traced(weft__worker *w, weft__task *t, weft_scope *s, int releasing, int *result)
{
    return join_body_as(w, t, s, releasing, result, 1);
}

static inline __attribute__((always_inline)) weft__worker *
join_body(weft__worker *w, weft__task *t, weft_scope *s, int releasing, int *result)
{
    return join_body_as(w, t, s, releasing, result, 0);
}

static __attribute__((noinline)) weft__worker *join_one(weft__worker *w, weft__task *t,
                                                        weft_scope *s)
{
    int rc;
    return join_body(w, t, s, 0, &rc);
}

/* The checks join and release share: 0 when `t` may end `s`. */
static int owner_check(weft__task *t, const weft_scope *s)
{
    if (!t)
        return -EPERM;
    if (!s || s->state == WEFT__SCOPE_RELEASED || s->state == 0)
        return -EINVAL;
    return s->owner == t ? 0 : -EPERM;
}

int weft_scope_join(weft_scope *s)
{
    weft__worker *w = weft__sched_worker();
    weft__task *t = weft__sched_current(w);
    /* The common case first: the caller's newest scope (so its own: a task's list holds only
     * the scopes it opened), open. */
    if (t && s && t->owned == s && s->state == WEFT__SCOPE_OPEN) {
        int rc;
        join_body(w, t, s, 0, &rc);
        return rc;
    }
    int rc = owner_check(t, s);
    if (rc)
        return rc;
    if (s->state == WEFT__SCOPE_JOINED) {
        s->result_unseen = 0; /* the owner sees it now */
        return s->join_result;
    }
    /* Scopes opened after `s` are nested in it: they end first. Their results are not what
     * this join returns: until their owner joins them itself, they are as good as forgotten
     * (weft__scope_release_owned). */
    for (weft_scope *x = t->owned; x && x != s; x = x->prev_owned)
        if (x->state == WEFT__SCOPE_OPEN) {
            w = join_one(w, t, x);
            x->result_unseen = 1;
        }
    join_one(w, t, s);
    return s->join_result;
}

/* Releases `s`, a scope of `t` that no unreleased scope is nested in (so, if it is open, its
 * newest). Returns the worker the caller runs on afterwards (see join_one). */
static weft__worker *release_one(weft__worker *w, weft__task *t, weft_scope *s)
{
    if (s->state == WEFT__SCOPE_OPEN)
        w = join_one(w, t, s);
    /* Scopes opened after `s` was joined are not nested in it and stay: take `s` out from
     * among them. */
    weft_scope **link = &t->owned;
    while (*link != s)
        link = &(*link)->prev_owned;
    *link = s->prev_owned;
    unlink_child(s);
    set_state(s, WEFT__SCOPE_RELEASED);
    /* Unlinked, so no fan-out can take a new reference: if ours is the only one, no RMW. */
    if (atomic_load_explicit(&s->refs, memory_order_acquire) == 1)
        scope_free_on(w, s);
    else
        weft__scope_unref(s);
    return w;
}

/* The release of `s`, the newest scope of `t` (running on `w`), joined: 1 if it was the common
 * case and is done; 0 if not, and nothing was done. `s` was open until this release's own join,
 * or its result_unseen was cleared: the cache takes the field as it is. The common case: nothing to
 * give back but the record (only a limited scope queues children, and only a failure adds to the
 * error group), room for it in the worker's cache (which is of the scope's runtime: its owner runs
 * there), and never linked into its parent, so that no fan-out holds a reference. The plain fields
 * first: the join just read them. */
static inline __attribute__((always_inline)) int release_newest(weft__worker *w, weft__task *t,
                                                                weft_scope *s)
{
    if (s->max_running || s->first_failure || w->scopes.count >= SCOPE_CACHE_MAX ||
        atomic_load_explicit(&s->linked, memory_order_relaxed) ||
        atomic_load_explicit(&s->refs, memory_order_acquire) != 1)
        return 0;
    t->owned = s->prev_owned;
    s->name[0] = 0;
    set_state(s, WEFT__SCOPE_RELEASED);
    cache_push_own(w, s);
    return 1;
}

/* -EBUSY while a scope nested in `s`, the scope of `t`, is not released: it reads its state
 * through `s`, and its owner may still use it. Only `t`'s own scopes need a look: a child's
 * scopes are released before the child ends, and the join of `s` waits for that. Those of `t`
 * nested in `s` were opened after it, and the outermost of them, whose parent is `s`, stays
 * unreleased as long as any of them does (this very check). */
static int nested_open(const weft__task *t, const weft_scope *s)
{
    for (const weft_scope *x = t->owned; x && x != s; x = x->prev_owned)
        if (x->parent == s)
            return -EBUSY;
    return 0;
}

int weft_scope_release(weft_scope *s)
{
    weft__worker *w = weft__sched_worker();
    weft__task *t = weft__sched_current(w);
    if (t && s && t->owned == s && s->state == WEFT__SCOPE_JOINED) {
        /* Joined by the join of a scope it was nested in, perhaps: released, nothing of that
         * is left for a later use of the record (release_newest keeps the field as it is). */
        s->result_unseen = 0;
        if (release_newest(w, t, s))
            return 0;
    }
    int rc = owner_check(t, s);
    if (!rc)
        rc = nested_open(t, s);
    if (rc)
        return rc;
    release_one(w, t, s);
    return 0;
}

int weft_scope_close(weft_scope *s)
{
    weft__worker *w = weft__sched_worker_leaf();
    weft__task *t = weft__sched_current(w);
    if (t && s && t->owned == s && s->state == WEFT__SCOPE_OPEN) {
        int rc;
        w = join_body(w, t, s, 1, &rc);
        if (!release_newest(w, t, s)) {
            set_state(s, WEFT__SCOPE_JOINED);
            release_one(w, t, s);
        }
        return rc;
    }
    int rc = owner_check(t, s);
    if (!rc)
        rc = nested_open(t, s);
    if (rc)
        return rc;
    rc = weft_scope_join(s);
    weft_scope_release(s);
    return rc;
}

int weft__scope_release_owned(weft__task *t, int rc)
{
    return weft__scope_release_owned_since(t, NULL, rc);
}

int weft__scope_release_owned_since(weft__task *t, weft_scope *mark, int rc)
{
    weft__worker *w = weft__sched_worker();
    int own = -1;      /* whether rc is a failure of the task's own: asked at the first hand-up */
    int forgotten = 0; /* the first forgotten failure */
    if (mark) {
        /* `mark` released by the function (it had the handle): which scopes are the function's
         * is not known any more, and none is ended here (the task's end ends them). */
        const weft_scope *x = t->owned;
        while (x && x != mark)
            x = x->prev_owned;
        if (!x)
            return rc;
    }
    /* Newest first: inner scopes end before the scopes they are nested in. */
    while (t->owned != mark) {
        weft_scope *s = t->owned;
        if (s->state == WEFT__SCOPE_OPEN || s->result_unseen) {
            if (s->state == WEFT__SCOPE_OPEN) {
                weft_scope_join(s);
                w = weft__sched_worker();
            }
            /* Nobody else will read what failed in it: the task fails with it (see weft.h).
             * A scope the task joined itself is not forgotten: it saw the result; one joined
             * only by the join of a scope it is nested in is. */
            if (s->first_failure) {
                if (own < 0) {
                    own = is_failure(t->scope, t, rc);
                    if (!own && t->failure) {
                        /* Nothing of its own would be recorded: neither is it now. */
                        weft__errors_free_failure(t->failure);
                        t->failure = NULL;
                    }
                }
                weft__errors_hand_up(t, s, own ? rc : 0);
                if (!forgotten)
                    forgotten = s->first_failure;
            }
        }
        w = release_one(w, t, s);
    }
    return own == 0 ? forgotten : rc;
}

/* ---- external scopes ------------------------------------------------------------------------ */

int weft__scope_new_external(weft_runtime *rt, weft_scope *parent, weft_scope **out)
{
    weft_scope *s = scope_alloc(weft__sched_worker(), rt);
    if (!s)
        return -ENOMEM;
    scope_init(s, parent, NULL);
    s->policy = WEFT_COLLECT;
    s->shield = 0;
    s->max_running = 0;
    s->own_deadline = WEFT_NEVER;
    s->prev_owned = NULL;
    s->outer_cancel_scope = NULL;
    atomic_init(&s->cancel_cache, 0); /* linked from the start: its own state is the answer */
    if (parent) {
        weft__lock_acquire(&parent->lock);
        int pcode = atomic_load_explicit(&parent->cancel_code, memory_order_relaxed);
        if (pcode) {
            atomic_store_explicit(
                &s->cancel,
                weft__cancel_inherited_reason(
                    atomic_load_explicit(&parent->cancel, memory_order_relaxed), pcode),
                memory_order_relaxed);
            atomic_store_explicit(&s->cancel_code, pcode, memory_order_relaxed);
        }
        weft__scope_link_child(parent, s);
        atomic_store_explicit(&s->linked, 1, memory_order_relaxed);
        weft__lock_release(&parent->lock);
    } else {
        atomic_store_explicit(&s->linked, 1, memory_order_relaxed);
    }
    *out = s;
    return 0;
}

void weft__scope_external_seal(weft_scope *s)
{
    if (atomic_fetch_sub_explicit(&s->balance, WEFT__SCOPE_BIAS, memory_order_acq_rel) ==
        WEFT__SCOPE_BIAS)
        weft__scope_last_child_gone(s);
}

void weft__scope_external_free(weft_scope *s)
{
    /* Its completion was reported: clean for the cache (see scope_init_clean). */
    s->on_done = NULL;
    s->on_done_arg = NULL;
    s->child_status = 0;
    unlink_child(s);
    weft__scope_unref(s);
}
