// SPDX-License-Identifier: MIT
/*
 * Scopes: spawn and join, failures, implicit joins, nesting, ownership, the life cycle of a
 * scope record, task names and per-spawn stack sizes.
 *
 * Tasks never call Criterion's assertions (they run on worker threads): each test's root task
 * stores what it saw in a struct, and the test asserts on it after weft_run has returned.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "support.h"
#include "weft.h"

static atomic_int counter;

static int count_once(void *arg)
{
    (void)arg;
    atomic_fetch_add(&counter, 1);
    return 0;
}

static int fail_with(void *arg)
{
    return (int)(intptr_t)arg;
}

/* ---- counts ------------------------------------------------------------------------------------
 */

#define CHILDREN 10000

/* Even children spawn one more child into the scope they are in: a spawn by a task that does
 * not own the scope, counted on the other path of the scope's child count. */
static int child_maybe_spawning(void *arg)
{
    atomic_fetch_add(&counter, 1);
    if ((intptr_t)arg % 2 == 0)
        return weft_spawn(weft_current_scope(), count_once, NULL);
    return 0;
}

typedef struct counts {
    int spawn_errors;
    int join_rc;
    int seen_at_join;
} counts;

static int spawn_many(void *arg)
{
    counts *c = arg;
    weft_scope *s;
    int rc = weft_scope_open(&s, NULL);
    if (rc)
        return rc;
    for (intptr_t i = 0; i < CHILDREN; i++)
        c->spawn_errors += weft_spawn(s, child_maybe_spawning, (void *)i) != 0;
    c->join_rc = weft_scope_join(s);
    c->seen_at_join = atomic_load(&counter);
    return weft_scope_release(s);
}

Test(scope, spawn_join_counts_exact)
{
    counts c = {0};
    cr_assert_eq(run_on(2, spawn_many, &c), 0);
    cr_assert_eq(c.spawn_errors, 0);
    cr_assert_eq(c.join_rc, 0);
    cr_assert_eq(c.seen_at_join, CHILDREN + CHILDREN / 2,
                 "the join returned with %d of %d children done", c.seen_at_join,
                 CHILDREN + CHILDREN / 2);
    cr_assert_eq(atomic_load(&counter), CHILDREN + CHILDREN / 2, "a child ran twice");
}

/* ---- failures -------------------------------------------------------------------------------- */

typedef struct failures {
    int join_rc, join_again_rc;
    size_t count;
    int code0, code1;
    char task0[40], msg0[64], scope0[40];
    size_t count_eio, count_epipe;
    int polls;
} failures;

static int fail_with_message(void *arg)
{
    (void)arg;
    return weft_fail(-EIO, "first %d", 1);
}

static int collect_root(void *arg)
{
    failures *f = arg;
    weft_scope *s;
    weft_scope_opts so = {.name = "collector", .policy = WEFT_COLLECT};
    int rc = weft_scope_open(&s, &so);
    if (rc)
        return rc;
    weft_spawn_opts a = {.name = "fail-a"};
    if ((rc = weft_spawn_ex(s, fail_with_message, NULL, &a)))
        return rc;
    /* One worker: the child runs when the root yields. Wait for its failure to be recorded so
     * that the order of the two failures is known. */
    while (weft_scope_error_count(s) == 0 && f->polls < 100000) {
        f->polls++;
        weft_yield();
    }
    if ((rc = weft_spawn(s, fail_with, (void *)(intptr_t)-EPIPE)))
        return rc;
    if ((rc = weft_spawn(s, count_once, NULL)))
        return rc;
    f->join_rc = weft_scope_join(s);
    f->join_again_rc = weft_scope_join(s);
    f->count = weft_scope_error_count(s);
    const weft_error *e0 = weft_scope_error(s, 0), *e1 = weft_scope_error(s, 1);
    if (e0) {
        f->code0 = e0->code;
        snprintf(f->task0, sizeof(f->task0), "%s", e0->task);
        snprintf(f->msg0, sizeof(f->msg0), "%s", e0->message);
        snprintf(f->scope0, sizeof(f->scope0), "%s", e0->scope);
    }
    if (e1)
        f->code1 = e1->code;
    f->count_eio = weft_scope_error_count_code(s, -EIO);
    f->count_epipe = weft_scope_error_count_code(s, -EPIPE);
    return weft_scope_release(s);
}

Test(scope, join_returns_first_failure)
{
    failures f;
    memset(&f, 0, sizeof(f));
    cr_assert_eq(run_on(1, collect_root, &f), 0);
    cr_assert_eq(f.join_rc, -EIO, "join returned %d", f.join_rc);
    cr_assert_eq(f.join_again_rc, -EIO, "a second join returned %d", f.join_again_rc);
    cr_assert_eq(f.count, 2);
    cr_assert_eq(f.code0, -EIO);
    cr_assert_eq(f.code1, -EPIPE);
    cr_assert_str_eq(f.task0, "fail-a");
    cr_assert_str_eq(f.msg0, "first 1");
    cr_assert_str_eq(f.scope0, "collector");
    cr_assert_eq(f.count_eio, 1);
    cr_assert_eq(f.count_epipe, 1);
    cr_assert_eq(atomic_load(&counter), 1, "collect must let the siblings run");
}

typedef struct fail_fast {
    int join_rc;
    size_t count;
    atomic_int sibling_rc;
    atomic_int sibling_yields;
} fail_fast;

static int yield_until_cancelled(void *arg)
{
    fail_fast *f = arg;
    int rc;
    while ((rc = weft_yield()) == 0)
        atomic_fetch_add(&f->sibling_yields, 1);
    atomic_store(&f->sibling_rc, rc);
    return rc;
}

static int fail_fast_root(void *arg)
{
    fail_fast *f = arg;
    weft_scope *s;
    int rc = weft_scope_open(&s, NULL);
    if (rc)
        return rc;
    if ((rc = weft_spawn(s, yield_until_cancelled, f)))
        return rc;
    if ((rc = weft_spawn(s, fail_with, (void *)(intptr_t)-EIO)))
        return rc;
    f->join_rc = weft_scope_join(s);
    f->count = weft_scope_error_count(s);
    return weft_scope_release(s);
}

Test(scope, fail_fast_cancels_siblings_and_reports_the_failure)
{
    fail_fast f;
    memset(&f, 0, sizeof(f));
    cr_assert_eq(run_on(2, fail_fast_root, &f), 0);
    cr_assert_eq(f.join_rc, -EIO, "join returned %d, not the failure", f.join_rc);
    cr_assert_eq(atomic_load(&f.sibling_rc), -ECANCELED);
    cr_assert_eq(f.count, 1, "a sibling ended by the cancel is not a failure");
}

/* ---- implicit join ----------------------------------------------------------------------------
 */

#define IMPLICIT_CHILDREN 64

static int slow_child(void *arg)
{
    (void)arg;
    for (int i = 0; i < 20; i++)
        weft_yield();
    atomic_fetch_add(&counter, 1);
    return 0;
}

typedef struct implicit {
    int done_when_parent_returned;
    int done_after_join;
    int join_rc;
} implicit;

/* Opens two nested scopes, fills them, and returns without joining or releasing either. */
static int forgetful_parent(void *arg)
{
    implicit *im = arg;
    weft_scope *a, *b;
    int rc = weft_scope_open(&a, NULL);
    if (rc)
        return rc;
    for (int i = 0; i < IMPLICIT_CHILDREN / 2; i++)
        if ((rc = weft_spawn(a, slow_child, NULL)))
            return rc;
    if ((rc = weft_scope_open(&b, NULL)))
        return rc;
    for (int i = 0; i < IMPLICIT_CHILDREN / 2; i++)
        if ((rc = weft_spawn(b, slow_child, NULL)))
            return rc;
    im->done_when_parent_returned = atomic_load(&counter);
    return 0;
}

static int implicit_root(void *arg)
{
    implicit *im = arg;
    weft_scope *s;
    int rc = weft_scope_open(&s, NULL);
    if (rc)
        return rc;
    if ((rc = weft_spawn(s, forgetful_parent, im)))
        return rc;
    im->join_rc = weft_scope_join(s);
    im->done_after_join = atomic_load(&counter);
    return weft_scope_release(s);
}

Test(scope, implicit_join_when_task_returns_with_open_scopes)
{
    implicit im;
    memset(&im, 0, sizeof(im));
    cr_assert_eq(run_on(1, implicit_root, &im), 0);
    cr_assert_eq(im.join_rc, 0);
    cr_assert_lt(im.done_when_parent_returned, IMPLICIT_CHILDREN,
                 "the children finished before the parent returned: nothing was tested");
    cr_assert_eq(im.done_after_join, IMPLICIT_CHILDREN,
                 "the parent's task ended before its children: %d of %d done", im.done_after_join,
                 IMPLICIT_CHILDREN);
}

/* ---- nesting ------------------------------------------------------------------------------------
 */

typedef struct nesting {
    int inner_join_rc, outer_join_rc;
    int done_after_outer_join;
    weft_cancel_reason outer_reason, inner_reason;
    int cancel_rc;
    atomic_int cancelled_children;
} nesting;

static int nested_root(void *arg)
{
    nesting *n = arg;
    weft_scope *outer, *inner;
    int rc = weft_scope_open(&outer, NULL);
    if (rc)
        return rc;
    for (int i = 0; i < 10; i++)
        if ((rc = weft_spawn(outer, slow_child, NULL)))
            return rc;
    if ((rc = weft_scope_open(&inner, NULL)))
        return rc;
    for (int i = 0; i < 10; i++)
        if ((rc = weft_spawn(inner, slow_child, NULL)))
            return rc;
    /* Joining the outer scope joins the inner one first: it was opened later, inside it. */
    n->outer_join_rc = weft_scope_join(outer);
    n->done_after_outer_join = atomic_load(&counter);
    n->inner_join_rc = weft_scope_join(inner);
    weft_scope_release(inner);
    return weft_scope_release(outer);
}

Test(scope, nested_scopes_join_inside_out)
{
    nesting n;
    memset(&n, 0, sizeof(n));
    cr_assert_eq(run_on(2, nested_root, &n), 0);
    cr_assert_eq(n.outer_join_rc, 0);
    cr_assert_eq(n.inner_join_rc, 0, "joining the inner scope again must give its result");
    cr_assert_eq(n.done_after_outer_join, 20,
                 "joining the outer scope left children of the inner one running");
}

static int until_cancelled(void *arg)
{
    nesting *n = arg;
    int rc;
    while ((rc = weft_yield()) == 0) {
    }
    if (rc == -ECANCELED)
        atomic_fetch_add(&n->cancelled_children, 1);
    return rc;
}

static int nested_cancel_root(void *arg)
{
    nesting *n = arg;
    weft_scope *outer, *inner;
    int rc = weft_scope_open(&outer, NULL);
    if (rc)
        return rc;
    if ((rc = weft_spawn(outer, until_cancelled, n)))
        return rc;
    if ((rc = weft_scope_open(&inner, NULL)))
        return rc;
    for (int i = 0; i < 5; i++)
        if ((rc = weft_spawn(inner, until_cancelled, n)))
            return rc;
    n->cancel_rc = weft_scope_cancel(outer);
    n->inner_join_rc = weft_scope_join(inner);
    n->outer_join_rc = weft_scope_join(outer);
    n->outer_reason = weft_scope_cancel_reason(outer);
    n->inner_reason = weft_scope_cancel_reason(inner);
    weft_scope_release(inner);
    weft_scope_release(outer);
    return 0;
}

Test(scope, cancel_reaches_nested_scope)
{
    nesting n;
    memset(&n, 0, sizeof(n));
    cr_assert_eq(run_on(2, nested_cancel_root, &n), 0);
    cr_assert_eq(n.cancel_rc, 0);
    cr_assert_eq(atomic_load(&n.cancelled_children), 6);
    cr_assert_eq(n.inner_join_rc, -ECANCELED);
    cr_assert_eq(n.outer_join_rc, -ECANCELED);
    cr_assert_eq(n.outer_reason, WEFT_CANCEL_EXPLICIT);
    cr_assert_eq(n.inner_reason, WEFT_CANCEL_PARENT);
}

/* ---- ownership and the life cycle of a scope ----------------------------------------------------
 */

typedef struct ownership {
    weft_scope *s;
    int join_rc, release_rc, close_rc, spawn_rc;
} ownership;

static int not_the_owner(void *arg)
{
    ownership *o = arg;
    o->join_rc = weft_scope_join(o->s);
    o->release_rc = weft_scope_release(o->s);
    o->close_rc = weft_scope_close(o->s);
    o->spawn_rc = weft_spawn(o->s, count_once, NULL); /* spawning is allowed */
    return 0;
}

static int ownership_root(void *arg)
{
    ownership *o = arg;
    int rc = weft_scope_open(&o->s, NULL);
    if (rc)
        return rc;
    if ((rc = weft_spawn(o->s, not_the_owner, o)))
        return rc;
    rc = weft_scope_join(o->s);
    weft_scope_release(o->s);
    return rc;
}

Test(scope, join_by_non_owner_is_eperm)
{
    ownership o;
    memset(&o, 0, sizeof(o));
    cr_assert_eq(run_on(2, ownership_root, &o), 0);
    cr_assert_eq(o.join_rc, -EPERM);
    cr_assert_eq(o.release_rc, -EPERM);
    cr_assert_eq(o.close_rc, -EPERM);
    cr_assert_eq(o.spawn_rc, 0);
    cr_assert_eq(atomic_load(&counter), 1);
}

typedef struct lifecycle {
    int ok_join1, ok_join2;
    int fail_join1, fail_join2;
    int spawn_after_join, release_rc;
    int after_release_join, after_release_spawn, after_release_release, after_release_cancel;
    int release_unjoined_rc, counted_by_release;
    int bad_fn, bad_scope, bad_stack_small, bad_stack_big;
} lifecycle;

static int lifecycle_root(void *arg)
{
    lifecycle *l = arg;
    weft_scope *ok, *bad, *s;
    int rc = weft_scope_open(&ok, NULL);
    if (rc)
        return rc;
    weft_spawn(ok, count_once, NULL);
    l->ok_join1 = weft_scope_join(ok);
    l->ok_join2 = weft_scope_join(ok);
    /* Spawning into a joined scope: refused, and the function does not run. */
    l->spawn_after_join = weft_spawn(ok, count_once, NULL);
    weft_scope_release(ok);

    if ((rc = weft_scope_open(&bad, NULL)))
        return rc;
    weft_spawn(bad, fail_with, (void *)(intptr_t)-EIO);
    l->fail_join1 = weft_scope_join(bad);
    l->fail_join2 = weft_scope_join(bad);
    l->release_rc = weft_scope_release(bad);
    /* Detectable use after release: the record is not reused until the next scope is opened,
     * and none is opened in between. */
    l->after_release_join = weft_scope_join(bad);
    l->after_release_spawn = weft_spawn(bad, count_once, NULL);
    l->after_release_cancel = weft_scope_cancel(bad);
    l->after_release_release = weft_scope_release(bad);

    /* Releasing a scope that was not joined joins it first. */
    if ((rc = weft_scope_open(&s, NULL)))
        return rc;
    for (int i = 0; i < 10; i++)
        weft_spawn(s, slow_child, NULL);
    l->release_unjoined_rc = weft_scope_release(s);
    l->counted_by_release = atomic_load(&counter);

    /* Bad arguments: refused, nothing runs. */
    if ((rc = weft_scope_open(&s, NULL)))
        return rc;
    l->bad_fn = weft_spawn(s, NULL, NULL);
    l->bad_scope = weft_spawn(NULL, count_once, NULL);
    weft_spawn_opts small = {.stack_size = 1024};
    l->bad_stack_small = weft_spawn_ex(s, count_once, NULL, &small);
    weft_spawn_opts big = {.stack_size = (size_t)1 << 40};
    l->bad_stack_big = weft_spawn_ex(s, count_once, NULL, &big);
    weft_scope_join(s);
    return weft_scope_release(s);
}

Test(scope, join_release_and_spawn_life_cycle)
{
    lifecycle l;
    memset(&l, 0x55, sizeof(l));
    cr_assert_eq(run_on(1, lifecycle_root, &l), 0);
    cr_assert_eq(l.ok_join1, 0);
    cr_assert_eq(l.ok_join2, 0, "double join must return the same result");
    cr_assert_eq(l.spawn_after_join, -EINVAL);
    cr_assert_eq(l.fail_join1, -EIO);
    cr_assert_eq(l.fail_join2, -EIO, "double join must return the same result");
    cr_assert_eq(l.release_rc, 0);
    cr_assert_eq(l.after_release_join, -EINVAL);
    cr_assert_eq(l.after_release_spawn, -EINVAL);
    cr_assert_eq(l.after_release_cancel, -EINVAL);
    cr_assert_eq(l.after_release_release, -EINVAL);
    cr_assert_eq(l.release_unjoined_rc, 0);
    cr_assert_eq(l.counted_by_release, 11, "release did not wait for the children");
    cr_assert_eq(l.bad_fn, -EINVAL);
    cr_assert_eq(l.bad_scope, -EINVAL);
    cr_assert_eq(l.bad_stack_small, -EINVAL);
    cr_assert_eq(l.bad_stack_big, -EINVAL);
    cr_assert_eq(atomic_load(&counter), 11, "a refused spawn ran its function");
}

/* ---- close: join and release in one call -------------------------------------------------- */

typedef struct closing {
    int plain_rc, counted_at_plain;
    int failed_rc, counted_at_failed;
    int joined_join_rc, joined_close_rc;
    int nested_rc, nested_spawn_rc, inner_rc, outer_rc, counted_at_nested;
    int after_join, after_release, after_close;
    int null_rc;
} closing;

static int close_root(void *arg)
{
    closing *c = arg;
    weft_scope *s, *inner;
    int rc;

    /* The common case: close waits for every child, returns 0, and the scope is gone. */
    if ((rc = weft_scope_open(&s, NULL)))
        return rc;
    for (int i = 0; i < 10; i++)
        weft_spawn(s, slow_child, NULL);
    c->plain_rc = weft_scope_close(s);
    c->counted_at_plain = atomic_load(&counter);
    /* Detectable use after close, as after a release: no scope is opened in between. */
    c->after_join = weft_scope_join(s);
    c->after_release = weft_scope_release(s);
    c->after_close = weft_scope_close(s);

    /* A failing child: close returns what join returns, after every child ended. */
    weft_scope_opts collect = {.policy = WEFT_COLLECT};
    if ((rc = weft_scope_open(&s, &collect)))
        return rc;
    for (int i = 0; i < 10; i++)
        weft_spawn(s, slow_child, NULL);
    weft_spawn(s, fail_with, (void *)(intptr_t)-EIO);
    c->failed_rc = weft_scope_close(s);
    c->counted_at_failed = atomic_load(&counter);

    /* Already joined: close releases it and returns the join's result again. */
    if ((rc = weft_scope_open(&s, NULL)))
        return rc;
    weft_spawn(s, fail_with, (void *)(intptr_t)-EPIPE);
    c->joined_join_rc = weft_scope_join(s);
    c->joined_close_rc = weft_scope_close(s);

    /* A scope nested in `s`, still open: refused, and nothing is joined or released. */
    if ((rc = weft_scope_open(&s, NULL)))
        return rc;
    weft_spawn(s, slow_child, NULL);
    if ((rc = weft_scope_open(&inner, NULL)))
        return rc;
    for (int i = 0; i < 5; i++)
        weft_spawn(inner, slow_child, NULL);
    c->nested_rc = weft_scope_close(s);
    c->nested_spawn_rc = weft_spawn(s, slow_child, NULL); /* `s` is still open */
    c->inner_rc = weft_scope_close(inner);
    c->outer_rc = weft_scope_close(s);
    c->counted_at_nested = atomic_load(&counter);

    c->null_rc = weft_scope_close(NULL);
    return 0;
}

static void check_close(unsigned workers)
{
    closing c;
    memset(&c, 0x55, sizeof(c));
    cr_assert_eq(run_on(workers, close_root, &c), 0);
    cr_assert_eq(c.plain_rc, 0);
    cr_assert_eq(c.counted_at_plain, 10, "close returned before its children ended");
    cr_assert_eq(c.after_join, -EINVAL);
    cr_assert_eq(c.after_release, -EINVAL);
    cr_assert_eq(c.after_close, -EINVAL);
    cr_assert_eq(c.failed_rc, -EIO);
    cr_assert_eq(c.counted_at_failed, 20, "close returned before its children ended");
    cr_assert_eq(c.joined_join_rc, -EPIPE);
    cr_assert_eq(c.joined_close_rc, -EPIPE, "close of a joined scope returns the join's result");
    cr_assert_eq(c.nested_rc, -EBUSY, "close of a scope with one nested in it open");
    cr_assert_eq(c.nested_spawn_rc, 0, "the refused close joined the scope");
    cr_assert_eq(c.inner_rc, 0);
    cr_assert_eq(c.outer_rc, 0);
    cr_assert_eq(c.counted_at_nested, 27);
    cr_assert_eq(c.null_rc, -EINVAL);
    cr_assert_eq(weft_scope_close(NULL), -EPERM, "outside a task");
}

Test(scope, close_joins_then_releases_on_one_worker)
{
    check_close(1);
}

Test(scope, close_joins_then_releases_on_two_workers)
{
    check_close(2);
}

/* ---- scopes end newest first: an outer scope outlives the scopes nested in it ---------------- */

typedef struct outer_first {
    int release_rc, close_rc, release_joined_inner_rc, close_joined_inner_rc;
    int outer_spawn_rc, inner_spawn_rc, inner_join_rc, inner_release_rc, outer_close_rc;
    int counted_at_end;
    int later_release_rc, later_spawn_rc, later_close_rc, later_count;
    int joined_both_inner_rc, joined_both_outer_rc;
} outer_first;

static int outer_first_root(void *arg)
{
    outer_first *o = arg;
    weft_scope *outer, *inner;
    int rc;
    if ((rc = weft_scope_open(&outer, NULL)))
        return rc;
    weft_spawn(outer, slow_child, NULL);
    if ((rc = weft_scope_open(&inner, NULL)))
        return rc;
    weft_spawn(inner, slow_child, NULL);
    /* Releasing `outer` would release `inner` under the caller's pointer, or free the scope its
     * state is read through. */
    o->release_rc = weft_scope_release(outer);
    o->close_rc = weft_scope_close(outer);
    o->outer_spawn_rc = weft_spawn(outer, slow_child, NULL); /* not joined by the refusals */
    o->inner_spawn_rc = weft_spawn(inner, slow_child, NULL);
    o->inner_join_rc = weft_scope_join(inner);
    /* Joined, but not released: it still hangs below `outer`. */
    o->release_joined_inner_rc = weft_scope_release(outer);
    o->close_joined_inner_rc = weft_scope_close(outer);
    o->inner_release_rc = weft_scope_release(inner);
    o->outer_close_rc = weft_scope_close(outer);
    o->counted_at_end = atomic_load(&counter);

    /* A scope opened after `outer` was joined is not nested in it: `outer` goes alone. */
    if ((rc = weft_scope_open(&outer, NULL)))
        return rc;
    weft_scope_join(outer);
    weft_scope *later;
    if ((rc = weft_scope_open(&later, NULL)))
        return rc;
    o->later_release_rc = weft_scope_release(outer);
    o->later_spawn_rc = weft_spawn(later, slow_child, NULL);
    o->later_close_rc = weft_scope_close(later);
    o->later_count = atomic_load(&counter);

    /* Joining the outer scope joins the inner one too; they are then released inner first. */
    if ((rc = weft_scope_open(&outer, NULL)))
        return rc;
    if ((rc = weft_scope_open(&inner, NULL)))
        return rc;
    weft_spawn(inner, slow_child, NULL);
    weft_scope_join(outer);
    o->joined_both_inner_rc = weft_scope_release(inner);
    o->joined_both_outer_rc = weft_scope_release(outer);
    return 0;
}

static void check_outer_first(unsigned workers)
{
    outer_first o;
    memset(&o, 0x55, sizeof(o));
    atomic_store(&counter, 0);
    cr_assert_eq(run_on(workers, outer_first_root, &o), 0);
    cr_assert_eq(o.release_rc, -EBUSY, "release of a scope with one nested in it open: %d",
                 o.release_rc);
    cr_assert_eq(o.close_rc, -EBUSY);
    cr_assert_eq(o.outer_spawn_rc, 0, "a refused release or close joined the scope");
    cr_assert_eq(o.inner_spawn_rc, 0, "a refused release or close ended the nested scope");
    cr_assert_eq(o.inner_join_rc, 0);
    cr_assert_eq(o.release_joined_inner_rc, -EBUSY);
    cr_assert_eq(o.close_joined_inner_rc, -EBUSY);
    cr_assert_eq(o.inner_release_rc, 0);
    cr_assert_eq(o.outer_close_rc, 0);
    cr_assert_eq(o.counted_at_end, 4);
    cr_assert_eq(o.later_release_rc, 0);
    cr_assert_eq(o.later_spawn_rc, 0, "releasing a scope released one opened after it");
    cr_assert_eq(o.later_close_rc, 0);
    cr_assert_eq(o.later_count, 5);
    cr_assert_eq(o.joined_both_inner_rc, 0);
    cr_assert_eq(o.joined_both_outer_rc, 0);
}

Test(scope, outer_scope_release_refused_while_a_nested_one_lives_one_worker)
{
    check_outer_first(1);
}

Test(scope, outer_scope_release_refused_while_a_nested_one_lives_two_workers)
{
    check_outer_first(2);
}

/* A task of another scope spawns into a scope that was joined meanwhile. */
typedef struct late {
    weft_scope *target;
    atomic_int joined;
    int late_rc;
} late;

static int late_spawner(void *arg)
{
    late *l = arg;
    while (!atomic_load(&l->joined))
        weft_yield();
    l->late_rc = weft_spawn(l->target, count_once, NULL);
    return 0;
}

static int late_root(void *arg)
{
    late *l = arg;
    weft_scope *waiting, *target;
    int rc = weft_scope_open(&waiting, NULL);
    if (rc)
        return rc;
    if ((rc = weft_spawn(waiting, late_spawner, l)))
        return rc;
    /* Opened after `waiting`, so joining it does not join `waiting`. */
    if ((rc = weft_scope_open(&target, NULL)))
        return rc;
    l->target = target;
    rc = weft_scope_join(target);
    atomic_store(&l->joined, 1);
    int wrc = weft_scope_join(waiting);
    weft_scope_release(target);
    weft_scope_release(waiting);
    return rc ? rc : wrc;
}

Test(scope, spawn_by_other_task_after_join_is_einval)
{
    late l;
    memset(&l, 0, sizeof(l));
    l.late_rc = 1;
    cr_assert_eq(run_on(2, late_root, &l), 0);
    cr_assert_eq(l.late_rc, -EINVAL);
    cr_assert_eq(atomic_load(&counter), 0, "the refused spawn ran");
}

/* ---- introspection: scopes and names ----------------------------------------------------------
 */

typedef struct names {
    int root_scope_nonnull, root_scope_unchanged_by_open;
    int child_scope_is_target;
    char root_name[40], named[40], truncated[40], unnamed[40];
    uint64_t unnamed_id;
    char failure_task[40];
} names;

typedef struct name_arg {
    names *n;
    weft_scope *target;
    char *out;
} name_arg;

static int record_name(void *arg)
{
    name_arg *a = arg;
    snprintf(a->out, 40, "%s", weft_task_name());
    if (a->target) {
        a->n->child_scope_is_target = weft_current_scope() == a->target;
        a->n->unnamed_id = weft_task_id();
    }
    return 0;
}

static int names_root(void *arg)
{
    names *n = arg;
    snprintf(n->root_name, sizeof(n->root_name), "%s", weft_task_name());
    weft_scope *mine = weft_current_scope();
    n->root_scope_nonnull = mine != NULL;
    weft_scope *s;
    int rc = weft_scope_open(&s, NULL);
    if (rc)
        return rc;
    n->root_scope_unchanged_by_open = weft_current_scope() == mine && mine != s;

    static name_arg a1, a2, a3;
    a1 = (name_arg){n, NULL, n->named};
    a2 = (name_arg){n, NULL, n->truncated};
    a3 = (name_arg){n, s, n->unnamed};
    weft_spawn_opts o1 = {.name = "fetch-7"};
    weft_spawn_opts o2 = {.name = "a-name-much-longer-than-thirty-one-bytes"};
    weft_spawn_opts o3 = {.name = "fails-by-name"};
    weft_spawn_ex(s, record_name, &a1, &o1);
    weft_spawn_ex(s, record_name, &a2, &o2);
    weft_spawn(s, record_name, &a3);
    weft_spawn_ex(s, fail_with, (void *)(intptr_t)-EIO, &o3);
    weft_scope_join(s);
    const weft_error *e = weft_scope_error(s, 0);
    snprintf(n->failure_task, sizeof(n->failure_task), "%s", e ? e->task : "(none)");
    return weft_scope_release(s);
}

Test(scope, current_scope_and_task_names)
{
    names n;
    memset(&n, 0, sizeof(n));
    cr_assert_eq(run_on(2, names_root, &n), 0);
    cr_assert(n.root_scope_nonnull, "weft_current_scope() is NULL in the root task");
    cr_assert(n.root_scope_unchanged_by_open,
              "weft_current_scope() must stay the scope the task was spawned into");
    cr_assert(n.child_scope_is_target,
              "a child's current scope is not the one it was spawned into");
    cr_assert_str_eq(n.root_name, "root");
    cr_assert_str_eq(n.named, "fetch-7");
    cr_assert_eq(strlen(n.truncated), 31);
    cr_assert_eq(strncmp(n.truncated, "a-name-much-longer-than-thirty-one-bytes", 31), 0);
    char expect[40];
    snprintf(expect, sizeof(expect), "task-%llu", (unsigned long long)n.unnamed_id);
    cr_assert_neq(n.unnamed_id, 0);
    cr_assert_str_eq(n.unnamed, expect);
    cr_assert_str_eq(n.failure_task, "fails-by-name");
}

/* ---- per-spawn stack size ----------------------------------------------------------------------
 */

#define BIG_FRAME (300 * 1024)

/* Uses 300 KiB of stack: more than a default stack holds. */
static __attribute__((noinline)) int use_big_frame(int seed)
{
    volatile char big[BIG_FRAME];
    for (size_t i = 0; i < sizeof(big); i += 64)
        big[i] = (char)(seed + (int)i);
    int sum = 0;
    for (size_t i = 0; i < sizeof(big); i += 4096)
        sum += big[i];
    return sum;
}

static int big_stack_task(void *arg)
{
    (void)arg;
    int expect = 0;
    for (size_t i = 0; i < BIG_FRAME; i += 4096)
        expect += (char)(3 + (int)i);
    return use_big_frame(3) == expect ? 0 : -EFAULT;
}

typedef struct big_stack {
    int yield_first;
    int spawn_rc, join_rc;
} big_stack;

static int big_stack_root(void *arg)
{
    big_stack *b = arg;
    weft_scope *s;
    int rc = weft_scope_open(&s, NULL);
    if (rc)
        return rc;
    weft_spawn_opts o = {.name = "big-stack", .stack_size = 1024 * 1024};
    b->spawn_rc = weft_spawn_ex(s, big_stack_task, NULL, &o);
    if (b->yield_first)
        weft_yield(); /* the child starts on a stack of its own before the join */
    b->join_rc = weft_scope_join(s);
    return weft_scope_release(s);
}

Test(scope, stack_size_option_started_by_scheduler)
{
    big_stack b = {.yield_first = 1};
    cr_assert_eq(run_on(1, big_stack_root, &b), 0);
    cr_assert_eq(b.spawn_rc, 0);
    cr_assert_eq(b.join_rc, 0);
}

Test(scope, stack_size_option_spawn_then_join)
{
    /* The plain pattern: spawn, then join at once. On one worker the join finds the child
     * unstarted, and whatever it does with it, the child must get its 1 MiB. */
    big_stack b = {.yield_first = 0};
    cr_assert_eq(run_on(1, big_stack_root, &b), 0);
    cr_assert_eq(b.spawn_rc, 0);
    cr_assert_eq(b.join_rc, 0);
}
