// SPDX-License-Identifier: MIT
/*
 * The scope tree.
 *
 * Counting children without shared atomics on the owner's path. `balance` starts at BIAS; a
 * child spawned by a task other than the owner adds one to it (a CAS that refuses to raise it
 * from zero or below: zero means joined, and no child may start then); every child that ends
 * subtracts one, except a child that the owner both spawned and ran inline in its join: those
 * the owner counts in the plain `owner_spawned`, up and down, on its own thread. The join adds
 * `owner_spawned - BIAS` in one RMW; the result is then exactly the number of children still
 * running, and the child that brings it to zero wakes the joiner and touches the scope no more.
 * (A join that finds every child ended takes the balance from BIAS to zero with a CAS, since
 * another worker may admit a child meanwhile; a runtime of one worker has no such thread, and
 * there it is a plain load and store, and so it is in a scope nobody else ever counted into,
 * where the first to try pays for an asymmetric barrier: see close_if_empty in scope.c.)
 * BIAS (2^40) is far above any number of children the owner can spawn, so the balance cannot
 * reach zero before the join.
 *
 * Cancellation is a state, never an event: `cancel` holds the reason, `cancel_code` what
 * suspension points return (-ETIMEDOUT where a deadline caused it, -ECANCELED otherwise). The
 * first cause sticks: a scope's state, once set (or pulled, below), never changes. The reason is
 * stored before the code, so whoever sees the code sees its reason.
 *
 * Scopes link into their parent's children list lazily. Most scopes (a fork-join program opens
 * one per task) never hold a task in a cancellable wait, and linking costs a lock of the parent
 * on open and on release. So the state of a scope is found two ways:
 *   - pushed: a cancel fans out over the children lists, setting `cancel_code` of every linked,
 *     unshielded descendant under its lock and waking the tasks on its `parked` list;
 *   - pulled: an unlinked scope asks its ancestors, up to the first that is linked (its own
 *     state is then authoritative), shielded or cancelled. The answer is cached in the scope
 *     with the runtime's cancel epoch, which every cancel bumps after setting the states; with
 *     no cancel in between, a check is two loads.
 * A scope is linked (with its unlinked ancestors, top-down, copying the parent's state under
 * the parent's lock) before a task parks in it cancellably, so a fan-out can always reach the
 * tasks it must wake. A linked scope's parent is always linked. An unlinked scope that is
 * cancelled while its ancestors already are keeps the pulled state as its own (first cause),
 * read from the ancestors themselves: a cached "not cancelled" may be stale while a cancel is
 * still setting states (see pull_now in cancel.c).
 *
 * When weft_scope_cancel(s) returns, every scope below s (up to shields) is cancelled, even when
 * another cancel got to s first and is still fanning out: the fan-out that sets a scope's state
 * marks it `fanning` until it has been through the scope's whole subtree, and a cancel that finds
 * a scope cancelled and fanning waits for that mark to clear. The waits cannot form a cycle: a
 * fan-out only waits on a scope another fan-out reached first, and only below the scopes it
 * has claimed itself.
 *
 * Lifetime: `refs` holds one reference for the owner and one for each fan-out visiting the
 * scope; the record goes back to a cache when the last is dropped.
 */
#ifndef WEFT_SCOPE_H
#define WEFT_SCOPE_H

#include <errno.h>
#include <stdatomic.h>
#include <stdint.h>

#include "cancel.h"
#include "defer.h"
#include "errors.h"
#include "lock.h"
#include "sched.h"
#include "task.h"
#include "timer.h"
#include "weft.h"

enum weft__scope_state { WEFT__SCOPE_OPEN = 1, WEFT__SCOPE_JOINED = 2, WEFT__SCOPE_RELEASED = 3 };

/* Laid out by who writes what, a cache line per group: a child that ends on another worker
 * writes `balance`, and while it shared a line with the owner's spawn-time reads (the cancel
 * state) and writes (owner_spawned), every child ended elsewhere cost the owner's next spawn a
 * line moved between cores and the ender one more. */
struct weft_scope {
    /* Read at every spawn and suspension point; written by a cancel and at open and join. */
    _Atomic int cancel_code;       /* 0, -ECANCELED or -ETIMEDOUT, set on this scope */
    _Atomic int cancel;            /* weft_cancel_reason, set on this scope (before cancel_code) */
    _Atomic uint64_t cancel_cache; /* epoch << 2 | pulled code (see weft__scope_cancel_code) */
    _Atomic uint64_t *epoch;       /* the runtime's cancel epoch */
    int state;
    int policy;
    int shield;
    unsigned max_running; /* max_concurrency, 0 for none */
    weft_runtime *rt;
    weft__task *owner; /* NULL for the root scope and external scopes */
    weft_scope *parent;

    /* Written as children end, on any worker. */
    _Alignas(64) _Atomic int64_t balance;
    /* The join's close without a locked instruction (close_if_empty in scope.c): `closing` is 1
     * while the owner decides, `others` says how far the first task other than the owner that
     * counts a child in has got (WEFT__SCOPE_OTHERS_*). */
    _Atomic int closing;
    _Atomic int others;
    weft__task *joiner; /* the owner, while it waits in join */
    /* external scopes (submitted work): called when the last child ends */
    void (*on_done)(weft_scope *s, int status);
    void *on_done_arg;
    int child_status;

    /* The owner's. */
    _Alignas(64) int64_t owner_spawned; /* until its join */
    weft_scope *prev_owned;             /* the owner's unreleased scopes, newest first: the
                                         * one opened before (a scope ends after those
                                         * nested in it, so mostly at the head; the list
                                         * needs no link the other way) */
    weft_scope *outer_cancel_scope;     /* owner's cancel_scope before this one opened */
    int join_result;
    int timer_armed;
    /* Its own deadline, WEFT_NEVER if none. Written by the owner only (open, set_deadline),
     * read by any thread: the effective deadline is the earliest of those up to a shield. */
    weft_time own_deadline;
    weft__timer timer; /* fires at own_deadline, while timer_armed */

    /* Under `lock` (or the parent's), taken by cancels, cancellable waits, failures and the
     * slots of a limited scope. */
    _Alignas(64) weft__lock lock;
    _Atomic int32_t refs;
    _Atomic int fanning; /* the cancel that set the state still works below this scope */
    _Atomic int linked;  /* in the parent's children list */
    int first_failure;   /* kept even when the error group cannot grow (ENOMEM) */
    int result_unseen;   /* joined by the join of a scope it is nested in, not by its own */
    weft_scope *first_child, *next_sibling, *prev_sibling; /* under the parent's lock */
    weft__task *parked; /* tasks in cancellable waits, under `lock` */
    /* The last tasks registered there (under `lock`): each new one takes the task registered
     * WEFT__HINT_AHEAD before it as its hint, the one a fan-out reaches that many steps later. */
    weft__task *park_recent[WEFT__HINT_AHEAD];
    uint32_t park_count;
    /* max_concurrency: children holding a slot, and those waiting for one in spawn order (under
     * `lock`). The queue is non-empty only while every slot is held: a slot is released only
     * when nobody waits for it. */
    unsigned running;
    weft__defer_queue deferred;
    /* Error group (errors.c): record i lies in segment k, which holds WEFT__ERROR_SEG0 << k
     * records, and records never move, since readers (any thread, no lock) keep pointers to them
     * until the release. Written under `lock`; `nerrors` is raised (release) only once the
     * record below it is complete, so a reader that loads it (acquire) sees every record below. */
    weft__error_rec **error_segs; /* WEFT__ERROR_SEGS entries, from the first failure on */
    _Atomic size_t nerrors;
    weft_scope *cache_next;
    char name[32];
    int trace_open; /* traced runtimes: its slice is open (from its open to its join's end) */
};

/* Pulled states are cached as a kind: 0 none, 1 cancelled, 2 deadline, 3 runtime shutdown. */
static inline int weft__scope_cancel_decode(uint64_t kind)
{
    return kind == 0 ? 0 : kind == 2 ? -ETIMEDOUT : -ECANCELED;
}

static inline uint64_t weft__scope_cancel_encode(int code)
{
    return code == 0 ? 0 : code == -ECANCELED ? 1 : 2;
}

/** The code suspension points under `s` return: 0 when neither `s` nor an ancestor (up to a
 *  shield) is cancelled. */
static inline int weft__scope_cancel_code(weft_scope *s)
{
    int c = atomic_load_explicit(&s->cancel_code, memory_order_acquire);
    if (c)
        return c;
    uint64_t cache = atomic_load_explicit(&s->cancel_cache, memory_order_relaxed);
    if ((cache >> 2) == atomic_load_explicit(s->epoch, memory_order_acquire))
        return weft__scope_cancel_decode(cache & 3);
    return weft__cancel_code_slow(s);
}

/** 1 when `s` holds no cancel of its own and its cached pull is current and says none: no
 *  suspension point under `s` need return a cancel code. 0 says only "ask
 *  weft__scope_cancel_code", which may still find none: the test of a fast path that takes any
 *  doubt to the slow one, with no call of its own. */
static inline int weft__scope_cancel_surely_none(weft_scope *s)
{
    return atomic_load_explicit(&s->cancel_code, memory_order_acquire) == 0 &&
           atomic_load_explicit(&s->cancel_cache, memory_order_relaxed) ==
               atomic_load_explicit(s->epoch, memory_order_acquire) << 2;
}

/** Opens a scope not owned by a task (the runtime's root, submitted work). */
int weft__scope_new_external(weft_runtime *rt, weft_scope *parent, weft_scope **out);
/** Drops the hold of an external scope's creator: it completes when its children end. */
void weft__scope_external_seal(weft_scope *s);
void weft__scope_external_free(weft_scope *s);

/** Joins and releases every scope `t` still owns (implicit join at task exit), newest first.
 *  The failures of the scopes it left open go up with its own (see weft.h): returns the task's
 *  result, `rc` (what its function returned) or, where that is no failure of its own, the first
 *  failure of a scope it left open. */
int weft__scope_release_owned(weft__task *t, int rc);
/** weft__scope_release_owned for the scopes `t` opened after `mark` (its newest scope when a
 *  function it calls began, NULL for all): a parallel loop's piece that returns with scopes of
 *  its own left open is such a function (pfor.c). */
int weft__scope_release_owned_since(weft__task *t, weft_scope *mark, int rc);

/** Drops a reference to `s`; the last one frees the record. */
void weft__scope_unref(weft_scope *s);
/** Links `s` into `parent`'s list of children. `parent`'s lock is held. */
void weft__scope_link_child(weft_scope *parent, weft_scope *s);

/** The balance of `s` reached zero: wakes the joiner (or tells an external scope's owner). */
void weft__scope_last_child_gone(weft_scope *s);
/** A child of `s` ended with status rc (recorded as failure when appropriate). In a limited
 *  scope its slot passes to the oldest waiting child: when that one is a bare fn(arg), it is
 *  returned in *next (return value 1) for the ended child's record and stack to run next, with
 *  the ended child's count in the scope (its flags stay). That saves a record, a stack, a trip
 *  through the run queues and two atomics on the scope per child. The common end (success, no
 *  slot, not submitted) never gets here: weft__scope_end_task counts it out inline. */
int weft__scope_child_done(weft_scope *s, weft__task *t, int rc, weft__defer_entry *next);

/** Takes one ended child off the balance of `s`, perhaps later: ends of the same scope in a row
 *  on one worker are taken off together (see scope.c). Called by the ending task. */
void weft__scope_count_out(weft_scope *s);

/** `n` children fewer on the balance; the last one wakes whoever waits for the scope to empty.
 *  (Workers call it for the children that ended on them in a row: weft__scope_count_out.) */
static inline void weft__scope_count_children_out(weft_scope *s, uint32_t n)
{
    if (atomic_fetch_sub_explicit(&s->balance, n, memory_order_acq_rel) == (int64_t)n)
        weft__scope_last_child_gone(s);
}

/** One child fewer (`flags`: its record's). A child the owner both spawned and runs inside its
 *  join is counted on the owner's side, without an atomic. */
static inline void weft__scope_count_child_out(weft_scope *s, uint32_t flags)
{
    if ((flags & (WEFT__TASK_OWNER_COUNTED | WEFT__TASK_INLINE)) ==
        (WEFT__TASK_OWNER_COUNTED | WEFT__TASK_INLINE)) {
        s->owner_spawned--;
        return;
    }
    weft__scope_count_children_out(s, 1);
}

/* Debug builds report a task that ends holding semaphore tokens (weft__task_complete_slow);
 * release builds do not look. */
#ifdef NDEBUG
#define WEFT__TOKENS_LEFT(t) 0
#else
#define WEFT__TOKENS_LEFT(t) ((t)->tokens_held > 0)
#endif

/** See weft__task_complete_slow (task.h): this is its common case, inline. */
static inline int weft__scope_end_task(weft__task *t, int rc)
{
    weft_scope *s = t->scope;
    if (rc != 0 || t->owned || t->failure || WEFT__TOKENS_LEFT(t) || s->max_running ||
        (t->flags & (WEFT__TASK_SUBMITTED | WEFT__TASK_LISTED | WEFT__TASK_FORKED)))
        return weft__task_complete_slow(t, rc);
    if (t->flags & WEFT__TASK_INLINE)
        weft__scope_count_child_out(s, t->flags); /* its joiner looks at the count next */
    else
        weft__scope_count_out(s);
    return 0;
}

#define WEFT__SCOPE_BIAS ((int64_t)1 << 40)

/* weft_scope.others: nobody but the owner counted a child in; the first other is on its way in
 * (its barrier, then the owner's close it may have met); others count in as they like. */
enum { WEFT__SCOPE_OTHERS_NONE, WEFT__SCOPE_OTHERS_ARRIVING, WEFT__SCOPE_OTHERS_IN };

/** Counts a child the owner of `s` spawns, outside its join; returns WEFT__TASK_OWNER_COUNTED. */
static inline uint32_t weft__scope_count_owner_child(weft_scope *s)
{
    s->owner_spawned++;
    return WEFT__TASK_OWNER_COUNTED;
}

/** A child spawned by a task other than the owner: one more on the balance, unless joined. */
int weft__scope_admit_other(weft_scope *s);

/** Counts a new child of `s` spawned by `self` (NULL off the workers). Returns the flags the
 *  child's record must carry (0 or WEFT__TASK_OWNER_COUNTED), or a negative code: the scope is
 *  cancelled, or joined. */
static inline int weft__scope_admit(weft_scope *s, weft__task *self)
{
    int code = weft__scope_cancel_code(s);
    if (code)
        return code;
    if (self && s->owner == self) /* not in its join (it is here): the scope is open */
        return (int)weft__scope_count_owner_child(s);
    return weft__scope_admit_other(s);
}

/** Takes back what weft__scope_admit counted (`counted`: the flags it returned), for a spawn
 *  that then failed. */
void weft__scope_unadmit(weft_scope *s, uint32_t counted);
/** For a limited scope (max_concurrency): takes a slot for a new child (0), or queues the child
 *  to wait for one (1): fn(arg) (the owner's plain spawns, not counted until they start), or
 *  with fn NULL the child's record `arg` (counted at admission). -ENOMEM when the
 *  queue cannot grow. A child that got a slot must then be queued to run whatever happens
 *  (weft__inject_task as the last resort): its slot is passed on only when it ends. */
int weft__scope_start_or_defer(weft_scope *s, weft_fn fn, void *arg);

#endif
