// SPDX-License-Identifier: MIT
/*
 * Error groups: what weft_fail records, fail-fast and collect policies, the except*-style split by
 * code, groups handed up with their origins, message truncation, and max_concurrency.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "support_criterion.h"
#include "weft.h"

/* A copy of an error record that outlives its scope. */
typedef struct err_copy {
    int code;
    char message[WEFT_ERROR_MESSAGE_MAX + 8];
    char task[64];
    char scope[64];
    uint64_t task_id;
    size_t message_len;
} err_copy;

#define MAXERR 16

typedef struct group_copy {
    int join;
    size_t count;
    err_copy e[MAXERR];
    int past_end_is_null;
    weft_cancel_reason reason;
} group_copy;

/* Joins `s` and copies its result and error group into `g` (then releases `s`). */
static void join_and_copy(weft_scope *s, group_copy *g)
{
    g->join = weft_scope_join(s);
    g->count = weft_scope_error_count(s);
    g->reason = weft_scope_cancel_reason(s);
    for (size_t i = 0; i < g->count && i < MAXERR; i++) {
        const weft_error *e = weft_scope_error(s, i);
        if (!e) {
            CHECK(e != NULL);
            continue;
        }
        g->e[i].code = e->code;
        CHECK(e->message && e->task && e->scope);
        g->e[i].message_len = strlen(e->message);
        snprintf(g->e[i].message, sizeof(g->e[i].message), "%s", e->message);
        snprintf(g->e[i].task, sizeof(g->e[i].task), "%s", e->task);
        snprintf(g->e[i].scope, sizeof(g->e[i].scope), "%s", e->scope);
        g->e[i].task_id = e->task_id;
    }
    g->past_end_is_null = weft_scope_error(s, g->count) == NULL;
    CHECK_EQ(weft_scope_release(s), 0);
}

/* ---- what weft_fail records ------------------------------------------------------------------ */

typedef struct record_case {
    uint64_t named_id, unnamed_id;
    char unnamed_name[64];
    group_copy g, zero, plain, other_code, twice;
    int fail_outside;
} record_case;

static int named_failer(void *p)
{
    record_case *c = p;
    c->named_id = weft_task_id();
    return weft_fail(-EIO, "GET %s: %d", "/index.html", 503);
}

static int unnamed_failer(void *p)
{
    record_case *c = p;
    c->unnamed_id = weft_task_id();
    snprintf(c->unnamed_name, sizeof(c->unnamed_name), "%s", weft_task_name());
    return -ENOENT; /* no message */
}

static int zero_failer(void *p)
{
    (void)p;
    return weft_fail(0, "code zero becomes %s", "-EINVAL");
}

static int fail_then_succeed(void *p)
{
    (void)p;
    (void)weft_fail(-EIO, "recorded only if the task fails");
    return 0;
}

static int fail_then_other_code(void *p)
{
    (void)p;
    (void)weft_fail(-EIO, "about the -EIO that was handled");
    return -EPIPE;
}

static int fail_twice(void *p)
{
    (void)p;
    (void)weft_fail(-EIO, "first");
    return weft_fail(-EPIPE, "second");
}

static int record_root(void *p)
{
    record_case *c = p;
    weft_scope *s;
    weft_scope_opts o = {.name = "fetch", .policy = WEFT_COLLECT};
    weft_spawn_opts so = {.name = "fetcher"};

    REQUIRE_EQ(weft_scope_open(&s, &o), 0);
    CHECK_EQ(weft_spawn_ex(s, named_failer, c, &so), 0);
    join_and_copy(s, &c->g);

    REQUIRE_EQ(weft_scope_open(&s, &o), 0);
    CHECK_EQ(weft_spawn(s, zero_failer, c), 0);
    join_and_copy(s, &c->zero);

    weft_scope_opts unnamed = {.policy = WEFT_COLLECT};
    REQUIRE_EQ(weft_scope_open(&s, &unnamed), 0);
    CHECK_EQ(weft_spawn(s, unnamed_failer, c), 0);
    CHECK_EQ(weft_spawn(s, fail_then_succeed, c), 0);
    join_and_copy(s, &c->plain);

    REQUIRE_EQ(weft_scope_open(&s, &unnamed), 0);
    CHECK_EQ(weft_spawn(s, fail_then_other_code, c), 0);
    join_and_copy(s, &c->other_code);
    REQUIRE_EQ(weft_scope_open(&s, &unnamed), 0);
    CHECK_EQ(weft_spawn(s, fail_twice, c), 0);
    join_and_copy(s, &c->twice);
    return 0;
}

Test(errors, fail_records_code_message_task_and_scope, .timeout = 60)
{
    static record_case c;
    cr_assert_eq(weft_fail(-EIO, "outside %d", 1), -EIO, "outside a task it only returns");
    cr_assert_eq(weft_fail(0, "outside"), -EINVAL);
    cr_assert_eq(run_on(2, record_root, &c), 0);
    ASSERT_CHECKS();

    cr_assert_eq(c.g.join, -EIO);
    cr_assert_eq(c.g.count, 1);
    cr_assert_eq(c.g.e[0].code, -EIO);
    cr_assert_str_eq(c.g.e[0].message, "GET /index.html: 503");
    cr_assert_str_eq(c.g.e[0].task, "fetcher");
    cr_assert_eq(c.g.e[0].task_id, c.named_id);
    cr_assert_neq(c.named_id, 0);
    cr_assert_str_eq(c.g.e[0].scope, "fetch");
    cr_assert(c.g.past_end_is_null);

    cr_assert_eq(c.zero.join, -EINVAL, "a failure must have a non-zero code");
    cr_assert_eq(c.zero.count, 1);
    cr_assert_eq(c.zero.e[0].code, -EINVAL);
    cr_assert_str_eq(c.zero.e[0].message, "code zero becomes -EINVAL");

    cr_assert_eq(c.plain.join, -ENOENT);
    cr_assert_eq(c.plain.count, 1, "a task that called weft_fail but returned 0 did not fail");
    cr_assert_eq(c.plain.e[0].code, -ENOENT);
    cr_assert_str_eq(c.plain.e[0].message, "");
    cr_assert_str_eq(c.plain.e[0].scope, "");
    cr_assert_eq(c.plain.e[0].task_id, c.unnamed_id);
    cr_assert_str_eq(c.plain.e[0].task, c.unnamed_name);
    char expect[64];
    snprintf(expect, sizeof(expect), "task-%llu", (unsigned long long)c.unnamed_id);
    cr_assert_str_eq(c.plain.e[0].task, expect);

    /* A message goes with the code it was recorded with. */
    cr_assert_eq(c.other_code.count, 1);
    cr_assert_eq(c.other_code.e[0].code, -EPIPE);
    cr_assert_str_eq(c.other_code.e[0].message, "", "a handled failure's message stayed");
    cr_assert_eq(c.twice.count, 1);
    cr_assert_eq(c.twice.e[0].code, -EPIPE);
    cr_assert_str_eq(c.twice.e[0].message, "second");
}

Test(errors, null_scope_queries)
{
    cr_assert_eq(weft_scope_error_count(NULL), 0);
    cr_assert_null(weft_scope_error(NULL, 0));
    cr_assert_eq(weft_scope_error_count_code(NULL, -EIO), 0);
    cr_assert_eq(weft_fail_group(NULL, NULL, 0), -EINVAL);
}

/* ---- fail-fast ------------------------------------------------------------------------------- */

#define NSIB 8

typedef struct failfast_case {
    atomic_int parked, ended;
    int rc[NSIB];
    weft_cancel_reason reason[NSIB];
    group_copy g;
    int stubborn_rc; /* a sibling that answers the cancel with a failure of its own */
} failfast_case;

typedef struct sib_arg {
    failfast_case *c;
    int i;
} sib_arg;

static sib_arg sib_args[NSIB];

static int sibling(void *p)
{
    sib_arg *a = p;
    atomic_fetch_add(&a->c->parked, 1);
    int rc = weft_sleep_for(HOUR);
    a->c->rc[a->i] = rc;
    a->c->reason[a->i] = weft_cancel_reason_self();
    atomic_fetch_add(&a->c->ended, 1);
    return rc; /* -ECANCELED: ended by the scope's cancel, not a failure */
}

static int stubborn_sibling(void *p)
{
    failfast_case *c = p;
    atomic_fetch_add(&c->parked, 1);
    c->stubborn_rc = weft_sleep_for(HOUR);
    return weft_fail(-EPIPE, "cleanup failed after %d", c->stubborn_rc);
}

static int first_failer(void *p)
{
    failfast_case *c = p;
    if (yield_until(&c->parked, NSIB + 1))
        return -ENOTRECOVERABLE;
    return weft_fail(-EIO, "first");
}

static int failfast_root(void *p)
{
    failfast_case *c = p;
    weft_scope *s;
    weft_scope_opts o = {.name = "ff"};
    REQUIRE_EQ(weft_scope_open(&s, &o), 0);
    for (int i = 0; i < NSIB; i++) {
        sib_args[i] = (sib_arg){.c = c, .i = i};
        c->rc[i] = 1;
        CHECK_EQ(weft_spawn(s, sibling, &sib_args[i]), 0);
    }
    CHECK_EQ(weft_spawn(s, stubborn_sibling, c), 0);
    weft_spawn_opts so = {.name = "failer"};
    CHECK_EQ(weft_spawn_ex(s, first_failer, c, &so), 0);
    join_and_copy(s, &c->g);
    return 0;
}

static void check_failfast(unsigned workers)
{
    static failfast_case c;
    memset(&c, 0, sizeof(c));
    cr_assert_eq(run_on(workers, failfast_root, &c), 0);
    ASSERT_CHECKS();
    cr_assert_eq(c.g.join, -EIO, "join returns the first failure");
    cr_assert_eq(c.g.reason, WEFT_CANCEL_FAILURE);
    cr_assert_eq(atomic_load(&c.ended), NSIB);
    for (int i = 0; i < NSIB; i++) {
        cr_assert_eq(c.rc[i], -ECANCELED, "sibling %d: %d", i, c.rc[i]);
        cr_assert_eq(c.reason[i], WEFT_CANCEL_FAILURE, "sibling %d", i);
    }
    cr_assert_eq(c.stubborn_rc, -ECANCELED);
    /* The cancelled siblings are not failures; the one that failed on its own is, after. */
    cr_assert_eq(c.g.count, 2, "%zu failures recorded", c.g.count);
    cr_assert_eq(c.g.e[0].code, -EIO);
    cr_assert_str_eq(c.g.e[0].task, "failer");
    cr_assert_str_eq(c.g.e[0].message, "first");
    cr_assert_str_eq(c.g.e[0].scope, "ff");
    cr_assert_eq(c.g.e[1].code, -EPIPE);
    cr_assert_str_eq(c.g.e[1].message, "cleanup failed after -125");
}

Test(errors, fail_fast_cancels_siblings_one_worker, .timeout = 60)
{
    check_failfast(1);
}

Test(errors, fail_fast_cancels_siblings_four_workers, .timeout = 60)
{
    check_failfast(4);
}

/* ---- collect: every failure kept, in order --------------------------------------------------- */

#define NCOLLECT 12

typedef struct collect_case {
    atomic_int turn;
    int peer_rc;
    group_copy g;
    group_copy one;
} collect_case;

typedef struct collect_arg {
    collect_case *c;
    int i;
} collect_arg;

static collect_arg collect_args[NCOLLECT];

static int collect_code(int i)
{
    static const int codes[] = {-EIO,    0,    -ENOENT, -EIO,    0,    -EPERM,
                                -ENOENT, -EIO, 0,       -EACCES, -EIO, -ENOENT};
    return codes[i];
}

/* Child i ends when its turn comes (one worker: its completion is recorded before the next). */
static int collect_child(void *p)
{
    collect_arg *a = p;
    while (atomic_load(&a->c->turn) != a->i)
        if (weft_yield() != 0)
            return -ENOTRECOVERABLE;
    atomic_store(&a->c->turn, a->i + 1);
    int code = collect_code(a->i);
    return code ? weft_fail(code, "failure %d", a->i) : 0;
}

/* A sibling that outlives the failures: collect does not cancel it. */
static int collect_peer(void *p)
{
    collect_case *c = p;
    if (yield_until(&c->turn, NCOLLECT))
        return -ENOTRECOVERABLE;
    c->peer_rc = weft_sleep_for(WEFT_MSEC);
    return c->peer_rc;
}

static int single_failure(void *p)
{
    (void)p;
    return weft_fail(-EBADMSG, "alone");
}

static int collect_root(void *p)
{
    collect_case *c = p;
    weft_scope *s;
    weft_scope_opts o = {.name = "all", .policy = WEFT_COLLECT};
    REQUIRE_EQ(weft_scope_open(&s, &o), 0);
    c->peer_rc = 1;
    CHECK_EQ(weft_spawn(s, collect_peer, c), 0);
    for (int i = 0; i < NCOLLECT; i++) {
        collect_args[i] = (collect_arg){.c = c, .i = i};
        CHECK_EQ(weft_spawn(s, collect_child, &collect_args[i]), 0);
    }
    join_and_copy(s, &c->g);

    REQUIRE_EQ(weft_scope_open(&s, &o), 0);
    CHECK_EQ(weft_spawn(s, single_failure, NULL), 0);
    join_and_copy(s, &c->one);
    return 0;
}

Test(errors, collect_keeps_every_failure_in_order, .timeout = 60)
{
    static collect_case c;
    cr_assert_eq(run_on(1, collect_root, &c), 0);
    ASSERT_CHECKS();
    cr_assert_eq(c.peer_rc, 0, "collect cancelled a sibling");
    cr_assert_eq(c.g.reason, WEFT_CANCEL_NONE);
    cr_assert_eq(c.g.join, -EIO, "join returns the first failure");
    size_t k = 0;
    for (int i = 0; i < NCOLLECT; i++) {
        if (!collect_code(i))
            continue;
        char msg[32];
        snprintf(msg, sizeof(msg), "failure %d", i);
        cr_assert_lt(k, c.g.count);
        cr_assert_eq(c.g.e[k].code, collect_code(i), "entry %zu", k);
        cr_assert_str_eq(c.g.e[k].message, msg, "entry %zu", k);
        cr_assert_str_eq(c.g.e[k].scope, "all");
        k++;
    }
    cr_assert_eq(c.g.count, k);

    /* One failure is collected exactly as one of many is. */
    cr_assert_eq(c.one.join, -EBADMSG);
    cr_assert_eq(c.one.count, 1);
    cr_assert_eq(c.one.e[0].code, -EBADMSG);
    cr_assert_str_eq(c.one.e[0].message, "alone");
}

/* ---- the split by code ----------------------------------------------------------------------- */

typedef struct split_case {
    size_t n_eio, n_enoent, n_eperm, n_eagain, n_zero, total;
    int join;
    int kept_code; /* weft_fail_group with -EIO and -ENOENT handled */
    int all_handled;
} split_case;

static int fail_with(void *p)
{
    return weft_fail((int)(intptr_t)p, "code %d", (int)(intptr_t)p);
}

static int split_task(void *p)
{
    split_case *c = p;
    weft_scope *s;
    weft_scope_opts o = {.policy = WEFT_COLLECT};
    REQUIRE_EQ(weft_scope_open(&s, &o), 0);
    static const int codes[] = {-EIO, -ENOENT, -EIO, -EPERM, -ENOENT, -EIO};
    for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++)
        CHECK_EQ(weft_spawn(s, fail_with, (void *)(intptr_t)codes[i]), 0);
    c->join = weft_scope_join(s);
    c->total = weft_scope_error_count(s);
    c->n_eio = weft_scope_error_count_code(s, -EIO);
    c->n_enoent = weft_scope_error_count_code(s, -ENOENT);
    c->n_eperm = weft_scope_error_count_code(s, -EPERM);
    c->n_eagain = weft_scope_error_count_code(s, -EAGAIN);
    c->n_zero = weft_scope_error_count_code(s, 0);
    const int handled_all[] = {-EIO, -ENOENT, -EPERM};
    c->all_handled = weft_fail_group(s, handled_all, 3);
    const int handled[] = {-EIO, -ENOENT};
    c->kept_code = weft_fail_group(s, handled, 2);
    CHECK_EQ(weft_scope_release(s), 0);
    return c->kept_code;
}

typedef struct split_outer {
    split_case c;
    group_copy g;
} split_outer;

static int split_root(void *p)
{
    split_outer *o = p;
    weft_scope *s;
    REQUIRE_EQ(weft_scope_open(&s, NULL), 0);
    CHECK_EQ(weft_spawn(s, split_task, &o->c), 0);
    join_and_copy(s, &o->g);
    return 0;
}

Test(errors, count_by_code_and_handled_codes, .timeout = 60)
{
    static split_outer o;
    cr_assert_eq(run_on(4, split_root, &o), 0);
    ASSERT_CHECKS();
    cr_assert_eq(o.c.total, 6);
    cr_assert_eq(o.c.n_eio, 3);
    cr_assert_eq(o.c.n_enoent, 2);
    cr_assert_eq(o.c.n_eperm, 1);
    cr_assert_eq(o.c.n_eagain, 0);
    cr_assert_eq(o.c.n_zero, 0);
    cr_assert_eq(o.c.all_handled, 0, "every failure handled: nothing to hand up");
    cr_assert_eq(o.c.kept_code, -EPERM);
    /* Only the unhandled failure reached the outer scope, with its origin. */
    cr_assert_eq(o.g.join, -EPERM);
    cr_assert_eq(o.g.count, 1);
    cr_assert_eq(o.g.e[0].code, -EPERM);
    cr_assert_str_eq(o.g.e[0].message, "code -1");
}

/* ---- groups handed up keep their origins ----------------------------------------------------- */

typedef struct origin_case {
    uint64_t leaf_id[3];
    int mid_rc;
    group_copy inner, outer;
    group_copy deep; /* three levels: leaf -> mid1 -> mid2 -> top */
    uint64_t deep_leaf_id;
    int not_joined_rc;
} origin_case;

typedef struct leaf_arg {
    origin_case *c;
    int i;
    int code;
    const char *msg;
} leaf_arg;

static leaf_arg leaf_args[3];

static int leaf(void *p)
{
    leaf_arg *a = p;
    a->c->leaf_id[a->i] = weft_task_id();
    return weft_fail(a->code, "%s", a->msg);
}

static int middle(void *p)
{
    origin_case *c = p;
    weft_scope *inner;
    weft_scope_opts o = {.name = "inner", .policy = WEFT_COLLECT};
    REQUIRE_EQ(weft_scope_open(&inner, &o), 0);
    c->not_joined_rc = weft_fail_group(inner, NULL, 0);
    static const char *names[] = {"leaf-a", "leaf-b", "leaf-c"};
    static const int codes[] = {-EIO, -ENOENT, -EPERM};
    static const char *msgs[] = {"a broke", "b missing", "c refused"};
    for (int i = 0; i < 3; i++) {
        leaf_args[i] = (leaf_arg){.c = c, .i = i, .code = codes[i], .msg = msgs[i]};
        weft_spawn_opts so = {.name = names[i]};
        CHECK_EQ(weft_spawn_ex(inner, leaf, &leaf_args[i], &so), 0);
    }
    int joined = weft_scope_join(inner);
    REQUIRE_EQ(weft_scope_error_count(inner), 3);
    CHECK_EQ(joined, weft_scope_error(inner, 0)->code);
    /* Copy the inner group for comparison, without releasing it yet. */
    c->inner.count = weft_scope_error_count(inner);
    for (size_t i = 0; i < c->inner.count && i < MAXERR; i++) {
        const weft_error *e = weft_scope_error(inner, i);
        c->inner.e[i].code = e->code;
        snprintf(c->inner.e[i].task, sizeof(c->inner.e[i].task), "%s", e->task);
        c->inner.e[i].task_id = e->task_id;
    }
    const int handled[] = {-EPERM};
    c->mid_rc = weft_fail_group(inner, handled, 1);
    CHECK_EQ(weft_scope_release(inner), 0);
    return c->mid_rc;
}

static int deep_leaf(void *p)
{
    origin_case *c = p;
    c->deep_leaf_id = weft_task_id();
    return weft_fail(-EDOM, "deep %s", "trouble");
}

static int deep_mid1(void *p)
{
    weft_scope *s;
    weft_scope_opts o = {.name = "level-c"};
    REQUIRE_EQ(weft_scope_open(&s, &o), 0);
    weft_spawn_opts so = {.name = "deep-leaf"};
    CHECK_EQ(weft_spawn_ex(s, deep_leaf, p, &so), 0);
    CHECK_EQ(weft_scope_join(s), -EDOM);
    int rc = weft_fail_group(s, NULL, 0);
    CHECK_EQ(weft_scope_release(s), 0);
    return rc;
}

static int deep_mid2(void *p)
{
    weft_scope *s;
    weft_scope_opts o = {.name = "level-b"};
    REQUIRE_EQ(weft_scope_open(&s, &o), 0);
    weft_spawn_opts so = {.name = "mid1"};
    CHECK_EQ(weft_spawn_ex(s, deep_mid1, p, &so), 0);
    CHECK_EQ(weft_scope_join(s), -EDOM);
    int rc = weft_fail_group(s, NULL, 0);
    CHECK_EQ(weft_scope_release(s), 0);
    return rc;
}

static int origin_root(void *p)
{
    origin_case *c = p;
    weft_scope *s;
    weft_scope_opts o = {.name = "outer", .policy = WEFT_COLLECT};
    REQUIRE_EQ(weft_scope_open(&s, &o), 0);
    weft_spawn_opts so = {.name = "middle"};
    CHECK_EQ(weft_spawn_ex(s, middle, c, &so), 0);
    join_and_copy(s, &c->outer);

    o.name = "level-a";
    REQUIRE_EQ(weft_scope_open(&s, &o), 0);
    so.name = "mid2";
    CHECK_EQ(weft_spawn_ex(s, deep_mid2, c, &so), 0);
    join_and_copy(s, &c->deep);
    return 0;
}

Test(errors, fail_group_hands_failures_up_with_origins, .timeout = 60)
{
    static origin_case c;
    cr_assert_eq(run_on(4, origin_root, &c), 0);
    ASSERT_CHECKS();
    cr_assert_eq(c.not_joined_rc, -EINVAL, "fail_group of an open scope");
    cr_assert_eq(c.inner.count, 3);
    /* The first unhandled failure in the inner order is the middle task's code. */
    int first_kept = 0;
    for (size_t i = 0; i < c.inner.count && !first_kept; i++)
        if (c.inner.e[i].code != -EPERM)
            first_kept = c.inner.e[i].code;
    cr_assert_eq(c.mid_rc, first_kept);
    cr_assert_eq(c.outer.join, first_kept);

    /* Two failures went up, -EPERM was handled; each keeps its leaf task, id, scope, message. */
    cr_assert_eq(c.outer.count, 2, "%zu entries in the outer group", c.outer.count);
    int seen_a = 0, seen_b = 0;
    for (size_t i = 0; i < c.outer.count; i++) {
        const err_copy *e = &c.outer.e[i];
        cr_assert_str_neq(e->task, "middle", "the handing task replaced the origin");
        cr_assert_str_eq(e->scope, "inner");
        if (e->code == -EIO) {
            seen_a++;
            cr_assert_str_eq(e->task, "leaf-a");
            cr_assert_str_eq(e->message, "a broke");
            cr_assert_eq(e->task_id, c.leaf_id[0]);
        } else if (e->code == -ENOENT) {
            seen_b++;
            cr_assert_str_eq(e->task, "leaf-b");
            cr_assert_str_eq(e->message, "b missing");
            cr_assert_eq(e->task_id, c.leaf_id[1]);
        } else {
            cr_assert_fail("unexpected code %d in the outer group", e->code);
        }
    }
    cr_assert_eq(seen_a, 1);
    cr_assert_eq(seen_b, 1);
    /* Same relative order as in the inner scope. */
    size_t k = 0;
    for (size_t i = 0; i < c.inner.count; i++)
        if (c.inner.e[i].code != -EPERM) {
            cr_assert_eq(c.outer.e[k].code, c.inner.e[i].code);
            k++;
        }

    cr_assert_eq(c.deep.join, -EDOM);
    cr_assert_eq(c.deep.count, 1);
    cr_assert_str_eq(c.deep.e[0].task, "deep-leaf");
    cr_assert_str_eq(c.deep.e[0].scope, "level-c");
    cr_assert_str_eq(c.deep.e[0].message, "deep trouble");
    cr_assert_eq(c.deep.e[0].task_id, c.deep_leaf_id);
}

/* ---- truncation ------------------------------------------------------------------------------ */

typedef struct trunc_case {
    group_copy g;
    group_copy up; /* the same, handed up through weft_fail_group */
} trunc_case;

static char huge[4096];
static char exact[WEFT_ERROR_MESSAGE_MAX]; /* WEFT_ERROR_MESSAGE_MAX - 1 characters */
static const char long_name[] = "a-task-name-well-beyond-thirty-one-bytes";

static int huge_failer(void *p)
{
    (void)p;
    return weft_fail(-E2BIG, "%s", huge);
}

static int exact_failer(void *p)
{
    (void)p;
    return weft_fail(-EMSGSIZE, "%s", exact);
}

static int trunc_mid(void *p)
{
    (void)p;
    weft_scope *s;
    weft_scope_opts o = {.policy = WEFT_COLLECT};
    REQUIRE_EQ(weft_scope_open(&s, &o), 0);
    CHECK_EQ(weft_spawn(s, huge_failer, NULL), 0);
    CHECK_EQ(weft_scope_join(s), -E2BIG);
    int rc = weft_fail_group(s, NULL, 0);
    CHECK_EQ(weft_scope_release(s), 0);
    return rc;
}

static int trunc_root(void *p)
{
    trunc_case *c = p;
    weft_scope *s;
    weft_scope_opts o = {.policy = WEFT_COLLECT};
    REQUIRE_EQ(weft_scope_open(&s, &o), 0);
    weft_spawn_opts so = {.name = long_name};
    CHECK_EQ(weft_spawn_ex(s, huge_failer, NULL, &so), 0);
    join_and_copy(s, &c->g);
    REQUIRE_EQ(weft_scope_open(&s, &o), 0);
    CHECK_EQ(weft_spawn(s, trunc_mid, NULL), 0);
    CHECK_EQ(weft_spawn(s, exact_failer, NULL), 0);
    join_and_copy(s, &c->up);
    return 0;
}

Test(errors, huge_message_truncated, .timeout = 60)
{
    static trunc_case c;
    memset(huge, 'x', sizeof(huge) - 1);
    memset(exact, 'y', sizeof(exact) - 1);
    cr_assert_eq(run_on(2, trunc_root, &c), 0);
    ASSERT_CHECKS();
    cr_assert_eq(c.g.count, 1);
    cr_assert_eq(c.g.e[0].code, -E2BIG);
    cr_assert_eq(c.g.e[0].message_len, WEFT_ERROR_MESSAGE_MAX - 1);
    cr_assert_eq(strspn(c.g.e[0].message, "x"), WEFT_ERROR_MESSAGE_MAX - 1);
    /* weft_spawn_opts: a name is truncated to 31 bytes. */
    cr_assert_eq(strlen(c.g.e[0].task), 31);
    cr_assert_eq(strncmp(c.g.e[0].task, long_name, 31), 0);

    cr_assert_eq(c.up.count, 2);
    for (size_t i = 0; i < 2; i++) {
        cr_assert_eq(c.up.e[i].message_len, WEFT_ERROR_MESSAGE_MAX - 1, "entry %zu", i);
        if (c.up.e[i].code == -E2BIG)
            cr_assert_eq(strspn(c.up.e[i].message, "x"), WEFT_ERROR_MESSAGE_MAX - 1);
        else
            cr_assert_eq(strspn(c.up.e[i].message, "y"), WEFT_ERROR_MESSAGE_MAX - 1,
                         "a message of exactly the maximum was cut");
    }
}

/* ---- max_concurrency ------------------------------------------------------------------------- */

#define NLIMITED 60

typedef struct limit_case {
    atomic_int running, max_running, ran;
    atomic_int next_start;
    int start_order[NLIMITED];
    int join;
    unsigned limit;
} limit_case;

typedef struct limit_arg {
    limit_case *c;
    int i;
} limit_arg;

static limit_arg limit_args[NLIMITED];

static int limited_child(void *p)
{
    limit_arg *a = p;
    limit_case *c = a->c;
    c->start_order[atomic_fetch_add(&c->next_start, 1)] = a->i;
    count_up_with_high(&c->running, &c->max_running);
    /* Stay running across suspension points: a sleep and a few yields. */
    CHECK_EQ(weft_sleep_for(50 * WEFT_USEC), 0);
    for (int k = 0; k < 3; k++)
        CHECK_EQ(weft_yield(), 0);
    atomic_fetch_sub(&c->running, 1);
    atomic_fetch_add(&c->ran, 1);
    return 0;
}

static int limit_root(void *p)
{
    limit_case *c = p;
    weft_scope *s;
    weft_scope_opts o = {.max_concurrency = c->limit};
    REQUIRE_EQ(weft_scope_open(&s, &o), 0);
    for (int i = 0; i < NLIMITED; i++) {
        limit_args[i] = (limit_arg){.c = c, .i = i};
        CHECK_EQ(weft_spawn(s, limited_child, &limit_args[i]), 0);
    }
    c->join = weft_scope_join(s);
    CHECK_EQ(weft_scope_release(s), 0);
    return 0;
}

static limit_case *run_limited(unsigned workers, unsigned limit)
{
    static limit_case c;
    memset(&c, 0, sizeof(c));
    c.limit = limit;
    cr_assert_eq(run_on(workers, limit_root, &c), 0);
    ASSERT_CHECKS();
    cr_assert_eq(c.join, 0);
    cr_assert_eq(atomic_load(&c.ran), NLIMITED, "every child runs");
    cr_assert_leq(atomic_load(&c.max_running), (int)limit, "%d children ran at once, limit %u",
                  atomic_load(&c.max_running), limit);
    return &c;
}

Test(errors, max_concurrency_bounds_running_children, .timeout = 60)
{
    run_limited(4, 3);
}

Test(errors, max_concurrency_one_starts_in_spawn_order, .timeout = 60)
{
    limit_case *c = run_limited(4, 1);
    for (int i = 0; i < NLIMITED; i++)
        cr_assert_eq(c->start_order[i], i, "start %d was child %d", i, c->start_order[i]);
}

/* Children waiting for a slot run, one after another, on the record and stack of the child whose
 * slot they take: each must still be a task of its own (id, name, scope, failures), and nothing
 * a child leaves behind (an open scope, a cancel scope, a failure message) may leak into the
 * next. */
#define NRENEW 400

typedef struct renew_case {
    uint64_t id[NRENEW];
    char name[NRENEW][32];
    int saw_scope_ok[NRENEW];
    weft_scope *limited;
    atomic_int ran;
} renew_case;

typedef struct renew_arg {
    renew_case *c;
    int i;
} renew_arg;

static renew_arg renew_args[NRENEW];

static int renew_child(void *p)
{
    renew_arg *a = p;
    renew_case *c = a->c;
    c->id[a->i] = weft_task_id();
    snprintf(c->name[a->i], sizeof(c->name[a->i]), "%s", weft_task_name());
    c->saw_scope_ok[a->i] = weft_current_scope() == c->limited && weft_checkpoint() == 0;
    atomic_fetch_add(&c->ran, 1);
    if (a->i % 7 == 0) {
        /* Left open on purpose: the implicit release must end it before the next child. */
        weft_scope *inner;
        CHECK_EQ(weft_scope_open(&inner, NULL), 0);
        CHECK_EQ(weft_yield(), 0);
    }
    if (a->i % 5 == 0)
        return weft_fail(-EINVAL, "child %d", a->i);
    return weft_yield();
}

static int renew_root(void *p)
{
    renew_case *c = p;
    weft_scope_opts o = {.max_concurrency = 4, .policy = WEFT_COLLECT};
    REQUIRE_EQ(weft_scope_open(&c->limited, &o), 0);
    for (int i = 0; i < NRENEW; i++) {
        renew_args[i] = (renew_arg){.c = c, .i = i};
        char name[32];
        snprintf(name, sizeof(name), "named-%d", i);
        weft_spawn_opts so = {.name = name};
        /* Every third child named: it waits with a record, among bare ones. */
        CHECK_EQ(weft_spawn_ex(c->limited, renew_child, &renew_args[i], i % 3 ? NULL : &so), 0);
    }
    CHECK_EQ(weft_scope_join(c->limited), -EINVAL);
    size_t n = weft_scope_error_count(c->limited);
    CHECK_EQ(n, (size_t)(NRENEW + 4) / 5);
    for (size_t k = 0; k < n; k++) {
        const weft_error *e = weft_scope_error(c->limited, k);
        int i;
        REQUIRE_EQ(sscanf(e->message, "child %d", &i), 1);
        CHECK_EQ(e->task_id, c->id[i]); /* the failure names the child that failed */
        CHECK_EQ(strcmp(e->task, c->name[i]), 0);
    }
    CHECK_EQ(weft_scope_release(c->limited), 0);
    return 0;
}

static void check_renewed(unsigned workers)
{
    static renew_case c;
    memset(&c, 0, sizeof(c));
    cr_assert_eq(run_on(workers, renew_root, &c), 0);
    ASSERT_CHECKS();
    cr_assert_eq(atomic_load(&c.ran), NRENEW);
    for (int i = 0; i < NRENEW; i++) {
        cr_assert(c.saw_scope_ok[i], "child %d did not start clean in its scope", i);
        if (i % 3 == 0) {
            char want[32];
            snprintf(want, sizeof(want), "named-%d", i);
            cr_assert_str_eq(c.name[i], want);
        }
        for (int j = 0; j < i; j++) {
            cr_assert_neq(c.id[i], c.id[j], "children %d and %d share id %llu", i, j,
                          (unsigned long long)c.id[i]);
            cr_assert(strcmp(c.name[i], c.name[j]) != 0, "children %d and %d share name %s", i, j,
                      c.name[i]);
        }
    }
}

Test(errors, max_concurrency_children_on_a_passed_record_are_tasks_of_their_own, .timeout = 60)
{
    check_renewed(1);
    check_renewed(3);
}

/* Tasks other than the owner spawn into a limited scope too: their children wait with records,
 * the owner's as bare entries, in one queue. Every child runs once and the bound holds. */
#define NFOREIGN_SPAWNERS 6
#define NPER_SPAWNER 50

typedef struct mixed_case {
    weft_scope *limited;
    atomic_int running, max_running, ran;
} mixed_case;

static int mixed_child(void *p)
{
    mixed_case *c = p;
    count_up_with_high(&c->running, &c->max_running);
    CHECK_EQ(weft_yield(), 0);
    atomic_fetch_sub(&c->running, 1);
    atomic_fetch_add(&c->ran, 1);
    return 0;
}

static int mixed_spawner(void *p)
{
    mixed_case *c = p;
    for (int i = 0; i < NPER_SPAWNER; i++) {
        CHECK_EQ(weft_spawn(c->limited, mixed_child, c), 0);
        if (i % 8 == 0)
            CHECK_EQ(weft_yield(), 0);
    }
    return 0;
}

static int mixed_root(void *p)
{
    mixed_case *c = p;
    weft_scope_opts o = {.max_concurrency = 3};
    REQUIRE_EQ(weft_scope_open(&c->limited, &o), 0);
    weft_scope *spawners;
    REQUIRE_EQ(weft_scope_open(&spawners, NULL), 0);
    for (int i = 0; i < NFOREIGN_SPAWNERS; i++)
        CHECK_EQ(weft_spawn(spawners, mixed_spawner, c), 0);
    for (int i = 0; i < NPER_SPAWNER; i++)
        CHECK_EQ(weft_spawn(c->limited, mixed_child, c), 0);
    CHECK_EQ(weft_scope_join(spawners), 0);
    CHECK_EQ(weft_scope_release(spawners), 0);
    CHECK_EQ(weft_scope_join(c->limited), 0);
    CHECK_EQ(weft_scope_release(c->limited), 0);
    return 0;
}

Test(errors, max_concurrency_spawns_from_owner_and_others_share_the_bound, .timeout = 60)
{
    for (unsigned workers = 1; workers <= 3; workers += 2) {
        static mixed_case c;
        memset(&c, 0, sizeof(c));
        cr_assert_eq(run_on(workers, mixed_root, &c), 0);
        ASSERT_CHECKS();
        cr_assert_eq(atomic_load(&c.ran), (NFOREIGN_SPAWNERS + 1) * NPER_SPAWNER);
        cr_assert_leq(atomic_load(&c.max_running), 3);
    }
}

/* Children held back by the limit when their scope is cancelled (explicitly, or by a fail-fast
 * failure) still start, each exactly once: a spawn that returned 0 hands `arg` to the child, whose
 * function may own it. They find the cancel at their first suspension point, and ending with it
 * does not make them failures. Among them are bare entries (the owner's plain spawns), records
 * (named children) and children spawned by another task. The slot holders stay running until the
 * cancel reaches them, so every other child starts only after it. */
#define NHELD 120
#define NHELD_OTHER 40
#define HELD_LIMIT 2

typedef struct held_case {
    weft_scope *limited;
    int fail_fast; /* the first child fails instead of the root cancelling */
    atomic_int started, go, saw_cancel_first;
    int join;
    size_t nerrors;
} held_case;

static int held_child(void *p)
{
    held_case *c = p;
    int order = atomic_fetch_add(&c->started, 1);
    if (c->fail_fast && order == 0) {
        while (!atomic_load(&c->go))
            CHECK_EQ(weft_yield(), 0);
        return weft_fail(-EIO, "the first child fails");
    }
    if (order >= HELD_LIMIT) {
        /* Started after the cancel: its first suspension point says so. */
        int rc = weft_checkpoint();
        CHECK_EQ(rc, -ECANCELED);
        if (rc == -ECANCELED)
            atomic_fetch_add(&c->saw_cancel_first, 1);
        return rc;
    }
    int rc;
    while ((rc = weft_yield()) == 0) {
    }
    CHECK_EQ(rc, -ECANCELED);
    return rc;
}

static int held_other_spawner(void *p)
{
    held_case *c = p;
    for (int i = 0; i < NHELD_OTHER; i++)
        CHECK_EQ(weft_spawn(c->limited, held_child, c), 0);
    return 0;
}

static int held_root(void *p)
{
    held_case *c = p;
    weft_scope_opts o = {.max_concurrency = HELD_LIMIT};
    REQUIRE_EQ(weft_scope_open(&c->limited, &o), 0);
    for (int i = 0; i < NHELD; i++) {
        weft_spawn_opts so = {.name = "held-named"};
        CHECK_EQ(weft_spawn_ex(c->limited, held_child, c, i % 3 ? NULL : &so), 0);
    }
    weft_scope *others;
    REQUIRE_EQ(weft_scope_open(&others, NULL), 0);
    CHECK_EQ(weft_spawn(others, held_other_spawner, c), 0);
    CHECK_EQ(weft_scope_join(others), 0);
    CHECK_EQ(weft_scope_release(others), 0);
    if (c->fail_fast)
        atomic_store(&c->go, 1);
    else
        CHECK_EQ(weft_scope_cancel(c->limited), 0);
    c->join = weft_scope_join(c->limited);
    c->nerrors = weft_scope_error_count(c->limited);
    CHECK_EQ(weft_scope_release(c->limited), 0);
    return 0;
}

static void check_held_back(unsigned workers, int fail_fast)
{
    static held_case c;
    memset(&c, 0, sizeof(c));
    c.fail_fast = fail_fast;
    cr_assert_eq(run_on(workers, held_root, &c), 0);
    ASSERT_CHECKS();
    cr_assert_eq(atomic_load(&c.started), NHELD + NHELD_OTHER, "every spawned child starts once");
    cr_assert_eq(atomic_load(&c.saw_cancel_first), NHELD + NHELD_OTHER - HELD_LIMIT);
    cr_assert_eq(c.join, fail_fast ? -EIO : -ECANCELED);
    cr_assert_eq(c.nerrors, (size_t)(fail_fast ? 1 : 0));
}

Test(errors, max_concurrency_held_back_children_of_a_cancelled_scope_start_and_see_it,
     .timeout = 60)
{
    for (unsigned workers = 1; workers <= 3; workers += 2) {
        check_held_back(workers, 0);
        check_held_back(workers, 1);
    }
}

/* ---- failures of a scope its task forgot ------------------------------------------------------
 * A task that returns with a scope still open leaves it to the runtime's implicit join; the
 * failures of that scope's children reach the task's own scope, as weft_fail_group would hand
 * them up. */

typedef struct forgot_case {
    int own_code;       /* what the forgetful task returns (0: success) */
    int wait_cancel;    /* the forgetful task waits until its own scope is cancelled */
    int join_then_keep; /* it joins the scope it leaves open, and only forgets its release */
    int nested;         /* it forgets a second scope, nested in the first */
    int join_outer;     /* it joins the first scope (so the nested one too) and releases neither */
    int group_inner;    /* then hands the nested scope's failures up with weft_fail_group */
    weft_fn body;       /* the forgetful task's body, when not `forgetful` */
    weft_scope *inner;  /* the nested scope */
    uint64_t boom_id, inner_boom_id;
    atomic_int boom_done;
    group_copy g;
    int root_rc;
} forgot_case;

static int forgot_boom(void *p)
{
    forgot_case *c = p;
    c->boom_id = weft_task_id();
    int rc = weft_fail(-EIO, "boom");
    atomic_store(&c->boom_done, 1);
    return rc;
}

static int forgot_inner_boom(void *p)
{
    forgot_case *c = p;
    c->inner_boom_id = weft_task_id();
    return weft_fail(-ENODATA, "inner boom");
}

static int forgetful(void *p)
{
    forgot_case *c = p;
    weft_scope *s;
    weft_scope_opts o = {.name = "forgotten", .policy = WEFT_COLLECT};
    REQUIRE_EQ(weft_scope_open(&s, &o), 0);
    weft_spawn_opts so = {.name = "boom"};
    REQUIRE_EQ(weft_spawn_ex(s, forgot_boom, c, &so), 0);
    if (c->join_then_keep)
        CHECK_EQ(weft_scope_join(s), -EIO); /* seen here: not forgotten, only not released */
    if (c->nested) {
        weft_scope *inner;
        o.name = "forgotten-inner";
        REQUIRE_EQ(weft_scope_open(&inner, &o), 0);
        so.name = "inner-boom";
        REQUIRE_EQ(weft_spawn_ex(inner, forgot_inner_boom, c, &so), 0);
        c->inner = inner;
    }
    if (c->join_outer)
        CHECK_EQ(weft_scope_join(s), -EIO); /* the nested scope's result is not what it shows */
    if (c->group_inner)
        return weft_fail_group(c->inner, NULL, 0); /* seen: no longer forgotten */
    if (c->wait_cancel) {
        /* Its own scope is cancelled once the child has failed: it ends with the cancel code,
         * which is no failure of its own. */
        int rc;
        while ((rc = weft_sleep_for(HOUR)) == 0) {
        }
        return rc;
    }
    if (c->own_code)
        return weft_fail(c->own_code, "mine");
    return 0; /* without joining, or releasing, `s` */
}

static int forgot_root(void *p)
{
    forgot_case *c = p;
    weft_scope *s;
    weft_scope_opts o = {.name = "outer", .policy = WEFT_COLLECT};
    REQUIRE_EQ(weft_scope_open(&s, &o), 0);
    weft_spawn_opts so = {.name = "forgetful"};
    REQUIRE_EQ(weft_spawn_ex(s, c->body ? c->body : forgetful, c, &so), 0);
    if (c->wait_cancel) {
        REQUIRE_EQ(yield_until(&c->boom_done, 1), 0);
        CHECK_EQ(weft_scope_cancel(s), 0);
    }
    join_and_copy(s, &c->g);
    return 0;
}

static void run_forgot(forgot_case *c, unsigned workers)
{
    c->root_rc = run_on(workers, forgot_root, c);
    ASSERT_CHECKS();
    cr_assert_eq(c->root_rc, 0);
}

static void assert_boom(const err_copy *e, const forgot_case *c)
{
    cr_assert_eq(e->code, -EIO);
    cr_assert_str_eq(e->message, "boom");
    cr_assert_str_eq(e->task, "boom");
    cr_assert_str_eq(e->scope, "forgotten");
    cr_assert_eq(e->task_id, c->boom_id);
}

Test(errors, forgotten_scope_failure_becomes_the_task_result, .timeout = 60)
{
    for (unsigned workers = 1; workers <= 4; workers += 3) {
        static forgot_case c;
        memset(&c, 0, sizeof(c));
        run_forgot(&c, workers);
        cr_assert_eq(c.g.join, -EIO, "the forgotten failure did not reach the parent (%d)",
                     c.g.join);
        cr_assert_eq(c.g.count, 1);
        assert_boom(&c.g.e[0], &c);
    }
}

Test(errors, forgotten_scope_failure_follows_the_task_own_failure, .timeout = 60)
{
    static forgot_case c;
    memset(&c, 0, sizeof(c));
    c.own_code = -EPROTO;
    run_forgot(&c, 2);
    cr_assert_eq(c.g.join, -EPROTO, "the task's own failure must win");
    cr_assert_eq(c.g.count, 2);
    cr_assert_eq(c.g.e[0].code, -EPROTO);
    cr_assert_str_eq(c.g.e[0].message, "mine");
    cr_assert_str_eq(c.g.e[0].task, "forgetful");
    cr_assert_str_eq(c.g.e[0].scope, "outer");
    assert_boom(&c.g.e[1], &c);
}

Test(errors, forgotten_scope_failure_replaces_a_cancel_code, .timeout = 60)
{
    static forgot_case c;
    memset(&c, 0, sizeof(c));
    c.wait_cancel = 1;
    run_forgot(&c, 2);
    cr_assert_eq(c.g.join, -EIO, "a cancelled task's forgotten failure was lost (%d)", c.g.join);
    cr_assert_eq(c.g.count, 1);
    assert_boom(&c.g.e[0], &c);
    cr_assert_eq(c.g.reason, WEFT_CANCEL_EXPLICIT);
}

Test(errors, forgotten_nested_scopes_hand_up_newest_first, .timeout = 60)
{
    static forgot_case c;
    memset(&c, 0, sizeof(c));
    c.nested = 1;
    run_forgot(&c, 2);
    cr_assert_eq(c.g.join, -ENODATA, "the newest forgotten scope is joined first");
    cr_assert_eq(c.g.count, 2);
    cr_assert_eq(c.g.e[0].code, -ENODATA);
    cr_assert_str_eq(c.g.e[0].message, "inner boom");
    cr_assert_str_eq(c.g.e[0].task, "inner-boom");
    cr_assert_str_eq(c.g.e[0].scope, "forgotten-inner");
    cr_assert_eq(c.g.e[0].task_id, c.inner_boom_id);
    assert_boom(&c.g.e[1], &c);
}

Test(errors, scope_joined_but_not_released_hands_nothing_up, .timeout = 60)
{
    static forgot_case c;
    memset(&c, 0, sizeof(c));
    c.join_then_keep = 1;
    run_forgot(&c, 2);
    cr_assert_eq(c.g.join, 0, "a failure its task saw at its join went up (%d)", c.g.join);
    cr_assert_eq(c.g.count, 0);
}

Test(errors, scope_joined_by_the_join_of_an_outer_one_hands_its_failures_up, .timeout = 60)
{
    for (unsigned workers = 1; workers <= 2; workers++) {
        static forgot_case c;
        memset(&c, 0, sizeof(c));
        c.nested = 1;
        c.join_outer = 1;
        run_forgot(&c, workers);
        /* The outer scope's failure was seen at its join; the nested one's never was. */
        cr_assert_eq(c.g.join, -ENODATA, "the nested scope's failure was lost (%d)", c.g.join);
        cr_assert_eq(c.g.count, 1);
        cr_assert_str_eq(c.g.e[0].message, "inner boom");
        cr_assert_str_eq(c.g.e[0].scope, "forgotten-inner");
        cr_assert_eq(c.g.e[0].task_id, c.inner_boom_id);
    }
}

Test(errors, a_nested_scope_handed_up_by_weft_fail_group_is_recorded_once, .timeout = 60)
{
    for (unsigned workers = 1; workers <= 2; workers++) {
        static forgot_case c;
        memset(&c, 0, sizeof(c));
        c.nested = 1;
        c.join_outer = 1;
        c.group_inner = 1;
        run_forgot(&c, workers);
        cr_assert_eq(c.g.join, -ENODATA);
        cr_assert_eq(c.g.count, 1, "the failure was recorded %zu times", c.g.count);
        cr_assert_str_eq(c.g.e[0].message, "inner boom");
        cr_assert_eq(c.g.e[0].task_id, c.inner_boom_id);
    }
}

/* Opens a scope named "forgotten", in which a child fails with -EIO ("boom"), joins it and hands
 * its failure up with weft_fail_group: what that returned. */
static int boom_group_handed_up(forgot_case *c)
{
    weft_scope *s;
    weft_scope_opts o = {.name = "forgotten", .policy = WEFT_COLLECT};
    REQUIRE_EQ(weft_scope_open(&s, &o), 0);
    weft_spawn_opts so = {.name = "boom"};
    REQUIRE_EQ(weft_spawn_ex(s, forgot_boom, c, &so), 0);
    CHECK_EQ(weft_scope_join(s), -EIO);
    int rc = weft_fail_group(s, NULL, 0);
    CHECK_EQ(weft_scope_release(s), 0);
    return rc;
}

/* Hands a group up, then ends with a code of its own: the group goes with its own code. */
static int group_then_other_code(void *p)
{
    forgot_case *c = p;
    CHECK_EQ(boom_group_handed_up(c), -EIO);
    return weft_fail(-EPROTO, "own");
}

Test(errors, a_group_handed_up_then_replaced_by_another_code_leaves_that_code, .timeout = 60)
{
    static forgot_case c;
    memset(&c, 0, sizeof(c));
    c.body = group_then_other_code;
    run_forgot(&c, 2);
    cr_assert_eq(c.g.join, -EPROTO);
    cr_assert_eq(c.g.count, 1);
    cr_assert_eq(c.g.e[0].code, -EPROTO, "the record says %d", c.g.e[0].code);
    cr_assert_str_eq(c.g.e[0].message, "own");
    cr_assert_str_eq(c.g.e[0].task, "forgetful");
}

/* Hands a group up, then answers a cancel of its own scope: no failure of its own. */
static int group_then_cancelled(void *p)
{
    forgot_case *c = p;
    CHECK_EQ(boom_group_handed_up(c), -EIO);
    CHECK_EQ(weft_scope_cancel(weft_current_scope()), 0);
    return weft_checkpoint(); /* -ECANCELED: the cancel answered */
}

Test(errors, a_group_handed_up_then_a_cancel_answered_is_no_failure, .timeout = 60)
{
    static forgot_case c;
    memset(&c, 0, sizeof(c));
    c.body = group_then_cancelled;
    run_forgot(&c, 2);
    cr_assert_eq(c.g.join, -ECANCELED);
    cr_assert_eq(c.g.count, 0, "the cancel was recorded as a failure (%zu records)", c.g.count);
}

static int fail_einval(void *p)
{
    (void)p;
    return weft_fail(-EINVAL, "second");
}

/* Hands two groups up and returns what the second call returned, as weft.h says to. */
static int two_groups(void *p)
{
    forgot_case *c = p;
    CHECK_EQ(boom_group_handed_up(c), -EIO);
    weft_scope *b;
    weft_scope_opts o = {.name = "second", .policy = WEFT_COLLECT};
    REQUIRE_EQ(weft_scope_open(&b, &o), 0);
    weft_spawn_opts so = {.name = "second-boom"};
    REQUIRE_EQ(weft_spawn_ex(b, fail_einval, c, &so), 0);
    CHECK_EQ(weft_scope_join(b), -EINVAL);
    int rc = weft_fail_group(b, NULL, 0);
    CHECK_EQ(rc, -EINVAL);
    CHECK_EQ(weft_scope_release(b), 0);
    return rc;
}

Test(errors, two_groups_handed_up_both_go_with_the_last_code, .timeout = 60)
{
    static forgot_case c;
    memset(&c, 0, sizeof(c));
    c.body = two_groups;
    run_forgot(&c, 2);
    cr_assert_eq(c.g.join, -EINVAL);
    cr_assert_eq(c.g.count, 2, "%zu records", c.g.count);
    assert_boom(&c.g.e[0], &c);
    cr_assert_eq(c.g.e[1].code, -EINVAL);
    cr_assert_str_eq(c.g.e[1].message, "second");
    cr_assert_str_eq(c.g.e[1].task, "second-boom");
    cr_assert_str_eq(c.g.e[1].scope, "second");
}

static int forgetful_root(void *p)
{
    return forgetful(p);
}

Test(errors, root_forgetting_a_failed_scope_makes_weft_run_fail, .timeout = 60)
{
    static forgot_case c;
    memset(&c, 0, sizeof(c));
    cr_assert_eq(run_on(2, forgetful_root, &c), -EIO);
    ASSERT_CHECKS();
}

/* ---- a released record keeps nothing of its last use ---- */

static int fail_eio(void *p)
{
    (void)p;
    return weft_fail(-EIO, "boom");
}

/* Opens a and b in it, joins a (so b only through it), releases both, then opens x and c: the
 * worker's cache hands b's record to c. c's failure, seen by the task's own join, is no forgotten
 * one: the task returns 0 and hands nothing up. */
static int reuses_a_scope_joined_through_its_parent(void *p)
{
    weft_scope **c_out = p;
    weft_scope *a, *b, *x, *c;
    REQUIRE_EQ(weft_scope_open(&a, NULL), 0);
    REQUIRE_EQ(weft_scope_open(&b, NULL), 0);
    REQUIRE_EQ(weft_scope_join(a), 0);
    REQUIRE_EQ(weft_scope_release(b), 0);
    REQUIRE_EQ(weft_scope_release(a), 0);
    REQUIRE_EQ(weft_scope_open(&x, NULL), 0);
    REQUIRE_EQ(weft_scope_open(&c, NULL), 0);
    c_out[0] = b;
    c_out[1] = c;
    REQUIRE_EQ(weft_spawn(c, fail_eio, NULL), 0);
    CHECK_EQ(weft_scope_join(c), -EIO);
    CHECK_EQ(weft_scope_join(x), 0);
    return 0; /* c joined by its owner, not released: nothing goes up */
}

static int reuse_root(void *p)
{
    weft_scope *s;
    REQUIRE_EQ(weft_scope_open(&s, &(weft_scope_opts){.policy = WEFT_COLLECT}), 0);
    REQUIRE_EQ(weft_spawn(s, reuses_a_scope_joined_through_its_parent, p), 0);
    CHECK_EQ(weft_scope_join(s), 0);
    CHECK_EQ(weft_scope_error_count(s), 0);
    CHECK_EQ(weft_scope_release(s), 0);
    return 0;
}

Test(errors, a_released_scope_joined_through_its_parent_leaves_its_record_clean, .timeout = 60)
{
    weft_scope *records[2] = {NULL, NULL};
    cr_assert_eq(run_on(1, reuse_root, records), 0);
    ASSERT_CHECKS();
    /* The case needs the record's reuse: say so if the cache's order ever changes. */
    cr_assert_eq(records[0], records[1], "the second scope got another record");
}
