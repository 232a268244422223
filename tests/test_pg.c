// SPDX-License-Identifier: MIT
/*
 * PostgreSQL through libpq on weft (benchmarks/pg_weft.c), against a real server: CTest runs
 * this suite under tools/pgcluster, which starts a private cluster on 127.0.0.1 and a free
 * port, points the PG* variables at it, and stops it by its PID at the end. Run by hand:
 *
 *     tools/pgcluster run -- build/release/tests/test_pg --jobs 1
 *
 * (one test at a time, as CTest runs it: the tests share the server, count what runs on all of
 * it, and one stops it for a while).
 *
 * Cancellation is checked on the server's side: pg_stat_activity, read on a connection of its
 * own, must show that no cancelled query still runs there, and every connection of the pool
 * must answer its next query.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "../benchmarks/pg_weft.h"
#include "support_criterion.h"

#define SLEEP_SQL "SELECT pg_sleep(10)"
/* The cancelled queries the server still runs. */
#define RUNNING_SQL "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query = $1"

static void require_server(void)
{
    if (!getenv("PGPORT"))
        cr_assert_fail("PGPORT is not set: this suite runs under tools/pgcluster (see its top)");
}

/* Runs `root` on two workers against the suite's server and asserts what its tasks checked. */
static void run_against_server(weft_fn root)
{
    require_server();
    cr_assert_eq(run_on(2, root, NULL), 0);
    ASSERT_CHECKS();
}

/* Connects or records why not. */
static pgw_conn *connect_or_fail(void)
{
    pgw_conn *c = NULL;
    int rc = pgw_connect("", &c);
    if (rc)
        check_fail(__FILE__, __LINE__, "connect: %d %s", rc, pgw_last_connect_error());
    return c;
}

/* The one value of a query of one row and column, as a number; LLONG_MIN if it failed. */
static long long value_of(pgw_conn *c, const char *sql, int n, const char *const *params)
{
    PGresult *r;
    int rc = pgw_query(c, sql, n, params, &r);
    if (rc) {
        check_fail(__FILE__, __LINE__, "%s: %d %s", sql, rc, pgw_conn_error(c));
        return -1;
    }
    long long v = PQntuples(r) == 1 ? atoll(PQgetvalue(r, 0, 0)) : -1;
    PQclear(r);
    return v;
}

/* An administrator ends the backend `pid` (pg_terminate_backend, waiting up to 5 s for it to
 * go): 1 once it is gone. */
static long long terminate_backend(pgw_conn *admin, int pid)
{
    char s[16];
    snprintf(s, sizeof s, "%d", pid);
    const char *p[] = {s};
    return value_of(admin, "SELECT pg_terminate_backend($1::int, 5000)::int", 1, p);
}

/* A pool of one connection, and a connection of its own to act as the server's administrator:
 * 0, or -1 with the reason recorded. */
static int pool_of_one_and_admin(pgw_pool **p, pgw_conn **admin)
{
    REQUIRE_EQ(pgw_pool_create(p, "", 1), 0);
    *admin = connect_or_fail();
    return *admin ? 0 : -1;
}

static long long running_sleeps(pgw_conn *mon)
{
    const char *p[] = {SLEEP_SQL};
    return value_of(mon, RUNNING_SQL, 1, p);
}

/* ---- connect, parameters, prepared statements, errors ------------------------------------ */

static int connect_root(void *arg)
{
    (void)arg;
    pgw_conn *c = connect_or_fail();
    if (!c)
        return -1;
    CHECK(pgw_conn_backend_pid(c) > 0);
    CHECK_EQ(value_of(c, "SELECT 1", 0, NULL), 1);
    CHECK_EQ(pgw_conn_broken(c), 0);
    pgw_conn_close(c);

    /* Nothing listens on port 1 of the loopback: refused, with libpq's reason. */
    pgw_conn *bad = (pgw_conn *)&bad;
    CHECK_EQ(pgw_connect("host=127.0.0.1 port=1 connect_timeout=5", &bad), -ECONNREFUSED);
    CHECK(bad == NULL);
    CHECK(strstr(pgw_last_connect_error(), "127.0.0.1") != NULL);
    CHECK_EQ(pgw_connect("this is not a conninfo", &bad), -ECONNREFUSED);
    /* A replication connection takes no extended query: the session's set-up is refused, in
     * the server's words. */
    CHECK_EQ(pgw_connect("replication=database", &bad), -EREMOTEIO);
    CHECK(strstr(pgw_last_connect_error(), "replication") != NULL);
    CHECK_EQ(pgw_connect(NULL, &bad), -EINVAL);
    CHECK_EQ(pgw_connect("", NULL), -EINVAL);
    return 0;
}

Test(pg, connect_and_refusals, .timeout = 60)
{
    run_against_server(connect_root);
    pgw_conn *c = (pgw_conn *)&c;
    cr_assert_eq(pgw_connect("", &c), -EPERM, "outside a task");
}

static int params_root(void *arg)
{
    (void)arg;
    pgw_conn *c = connect_or_fail();
    if (!c)
        return -1;
    const char *p41[] = {"41"};
    CHECK_EQ(value_of(c, "SELECT $1::int + 1", 1, p41), 42);

    /* A parameter is a value, never SQL: quotes and semicolons come back as they went. */
    const char *evil = "O'Reilly'; DROP TABLE x; --";
    const char *pe[] = {evil};
    PGresult *r;
    CHECK_EQ(pgw_query(c, "SELECT $1::text", 1, pe, &r), 0);
    if (r) {
        CHECK(strcmp(PQgetvalue(r, 0, 0), evil) == 0);
        PQclear(r);
    }
    /* NULL is SQL NULL. */
    const char *pn[] = {NULL, "7"};
    CHECK_EQ(pgw_query(c, "SELECT $1::int IS NULL, $2::int * 6", 2, pn, &r), 0);
    if (r) {
        CHECK(strcmp(PQgetvalue(r, 0, 0), "t") == 0);
        CHECK(strcmp(PQgetvalue(r, 0, 1), "42") == 0);
        PQclear(r);
    }
    /* A result of many rows arrives whole. */
    CHECK_EQ(
        pgw_query(c, "SELECT g, repeat('x', 100) FROM generate_series(1, 20000) g", 0, NULL, &r),
        0);
    if (r) {
        CHECK_EQ(PQntuples(r), 20000);
        CHECK_EQ(atoi(PQgetvalue(r, 19999, 0)), 20000);
        PQclear(r);
    }
    /* A parameter larger than the socket's buffer goes out in pieces while the task parks. */
    size_t big = 4 << 20;
    char *s = malloc(big + 1);
    if (s) {
        memset(s, 'y', big);
        s[big] = 0;
        const char *pb[] = {s};
        CHECK_EQ(value_of(c, "SELECT length($1::text)", 1, pb), (long long)big);
        free(s);
    }
    CHECK_EQ(pgw_query(c, "SELECT $1::int", 1, NULL, NULL), -EINVAL);
    CHECK_EQ(pgw_query(c, NULL, 0, NULL, NULL), -EINVAL);
    CHECK_EQ(pgw_query(NULL, "SELECT 1", 0, NULL, NULL), -EINVAL);
    pgw_conn_close(c);
    return 0;
}

Test(pg, parameters_are_values, .timeout = 60)
{
    run_against_server(params_root);
}

static int prepared_root(void *arg)
{
    (void)arg;
    pgw_conn *c = connect_or_fail();
    if (!c)
        return -1;
    CHECK_EQ(pgw_prepare(c, "add", "SELECT $1::int + $2::int", 2), 0);
    long long sum = 0;
    for (int i = 0; i < 200; i++) {
        char a[16], b[16];
        snprintf(a, sizeof a, "%d", i);
        snprintf(b, sizeof b, "%d", 1000);
        const char *p[] = {a, b};
        PGresult *r;
        if (pgw_exec_prepared(c, "add", 2, p, &r) == 0) {
            sum += atoll(PQgetvalue(r, 0, 0));
            PQclear(r);
        }
    }
    CHECK_EQ(sum, 199 * 200 / 2 + 200 * 1000);
    /* The same name twice, and a name never prepared: the server's errors, the connection
     * goes on. */
    CHECK_EQ(pgw_prepare(c, "add", "SELECT 1", 0), -EREMOTEIO);
    CHECK(strcmp(pgw_conn_sqlstate(c), "42P05") == 0);
    const char *p[] = {"1"};
    CHECK_EQ(pgw_exec_prepared(c, "nope", 1, p, NULL), -EREMOTEIO);
    CHECK(strcmp(pgw_conn_sqlstate(c), "26000") == 0);
    const char *q[] = {"1", "2"};
    PGresult *r;
    CHECK_EQ(pgw_exec_prepared(c, "add", 2, q, &r), 0);
    if (r) {
        CHECK_EQ(atoi(PQgetvalue(r, 0, 0)), 3);
        PQclear(r);
    }
    pgw_conn_close(c);
    return 0;
}

Test(pg, prepared_statements, .timeout = 60)
{
    run_against_server(prepared_root);
}

static int errors_root(void *arg)
{
    (void)arg;
    pgw_conn *c = connect_or_fail();
    if (!c)
        return -1;
    static const struct {
        const char *sql, *param, *state;
    } bad[] = {
        {"SELEC 1", NULL, "42601"},           /* syntax */
        {"SELECT 1 / $1::int", "0", "22012"}, /* division by zero */
        {"SELECT $1::int", "abc", "22P02"},   /* not an integer */
        {"SELECT * FROM no_such_table", NULL, "42P01"},
        {"SELECT 1; SELECT 2", NULL, "42601"}, /* one statement per command */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *p[] = {bad[i].param};
        PGresult *r = (PGresult *)&r;
        int rc = pgw_query(c, bad[i].sql, bad[i].param ? 1 : 0, p, &r);
        CHECK_EQ(rc, -EREMOTEIO);
        CHECK(r == NULL);
        if (strcmp(pgw_conn_sqlstate(c), bad[i].state) != 0)
            check_fail(__FILE__, __LINE__, "%s: sqlstate %s, expected %s", bad[i].sql,
                       pgw_conn_sqlstate(c), bad[i].state);
        CHECK(pgw_conn_error(c)[0] != 0);
        CHECK_EQ(pgw_conn_broken(c), 0);
        /* And the connection answers the next one. */
        CHECK_EQ(value_of(c, "SELECT 5", 0, NULL), 5);
        CHECK(pgw_conn_sqlstate(c)[0] == 0);
    }
    /* An error inside a transaction leaves it aborted: the pool would close it, ROLLBACK
     * saves it. */
    CHECK_EQ(pgw_query(c, "BEGIN", 0, NULL, NULL), 0);
    CHECK_EQ(pgw_query(c, "SELEC", 0, NULL, NULL), -EREMOTEIO);
    CHECK_EQ(PQtransactionStatus(pgw_conn_pg(c)), PQTRANS_INERROR);
    CHECK_EQ(pgw_query(c, "SELECT 1", 0, NULL, NULL), -EREMOTEIO);
    CHECK(strcmp(pgw_conn_sqlstate(c), "25P02") == 0);
    CHECK_EQ(pgw_query(c, "ROLLBACK", 0, NULL, NULL), 0);
    CHECK_EQ(value_of(c, "SELECT 6", 0, NULL), 6);

    /* The server ends the connection (an administrator's pg_terminate_backend): the next
     * command says so, and the connection is closed, not retried. */
    pgw_conn *admin = connect_or_fail();
    if (admin) {
        CHECK_EQ(terminate_backend(admin, pgw_conn_backend_pid(c)), 1);
        CHECK_EQ(pgw_query(c, "SELECT 1", 0, NULL, NULL), -ECONNRESET);
        CHECK_EQ(pgw_conn_broken(c), 1);
        CHECK_EQ(pgw_query(c, "SELECT 1", 0, NULL, NULL), -ECONNRESET);
        pgw_conn_close(admin);
    }
    pgw_conn_close(c);

    /* A COPY has no way back to idle without its data: -EPROTO, and the connection is closed.
     * An empty statement is -EPROTO with the connection kept. */
    const char *copies[] = {"COPY (SELECT 1) TO STDOUT", "COPY pg_class FROM STDIN"};
    for (int i = 0; i < 2; i++) {
        if (!(c = connect_or_fail()))
            return -1;
        CHECK_EQ(pgw_query(c, copies[i], 0, NULL, NULL), -EPROTO);
        CHECK_EQ(pgw_conn_broken(c), 1);
        pgw_conn_close(c);
    }
    if (!(c = connect_or_fail()))
        return -1;
    CHECK_EQ(pgw_query(c, "", 0, NULL, NULL), -EPROTO);
    CHECK_EQ(pgw_conn_broken(c), 0);
    CHECK_EQ(value_of(c, "SELECT 4", 0, NULL), 4);
    pgw_conn_close(c);
    return 0;
}

Test(pg, server_errors_leave_the_connection_usable, .timeout = 60)
{
    run_against_server(errors_root);
}

/* ---- the pool and cancellation ----------------------------------------------------------- */

#define POOL 4
#define TASKS 12

typedef struct {
    pgw_pool *pool;
    atomic_int started;     /* tasks whose query was sent (they hold a connection) */
    atomic_int cancelled;   /* tasks that ended with the scope's code */
    atomic_int other;       /* tasks that ended any other way */
    atomic_int pids[TASKS]; /* backends that ran a sleep */
    int code;               /* the code the scope's cancel gives */
} sleepers;

static int sleeper(void *arg)
{
    sleepers *s = arg;
    pgw_conn *c;
    int rc = pgw_pool_acquire(s->pool, &c);
    if (rc == 0) {
        int i = atomic_fetch_add(&s->started, 1);
        atomic_store(&s->pids[i], pgw_conn_backend_pid(c));
        rc = pgw_query(c, SLEEP_SQL, 0, NULL, NULL);
        if (rc == s->code) {
            CHECK_EQ(pgw_conn_broken(c), 0);
            CHECK(pgw_conn_cancels_sent(c) >= 1);
            /* The server's word that it cancelled the query. */
            if (strcmp(pgw_conn_sqlstate(c), "57014") != 0)
                check_fail(__FILE__, __LINE__, "sqlstate %s after the cancel",
                           pgw_conn_sqlstate(c));
        }
        pgw_pool_release(s->pool, c);
    }
    atomic_fetch_add(rc == s->code ? &s->cancelled : &s->other, 1);
    return 0;
}

/* Runs TASKS sleepers over a pool of POOL in one scope; once the server runs POOL sleeps, the
 * scope is cancelled, or given a deadline `timeout` ahead (when `timeout` is not 0). */
static int cancel_case(weft_time timeout)
{
    sleepers s = {.code = timeout ? -ETIMEDOUT : -ECANCELED};
    REQUIRE_EQ(pgw_pool_create(&s.pool, "", POOL), 0);
    pgw_conn *mon = connect_or_fail();
    if (!mon)
        return -1;
    weft_time t0 = weft_now();
    weft_scope *sc;
    weft_scope_opts o = {.policy = WEFT_COLLECT};
    REQUIRE_EQ(weft_scope_open(&sc, &o), 0);
    for (int i = 0; i < TASKS; i++)
        CHECK_EQ(weft_spawn(sc, sleeper, &s), 0);
    /* The server's own view: POOL sleeps running (the other tasks wait for a token). */
    long long running = 0;
    while ((running = running_sleeps(mon)) < POOL && running >= 0 &&
           weft_now() - t0 < 30 * WEFT_SEC)
        weft_yield();
    CHECK_EQ(running, POOL);
    weft_time cut = weft_now();
    /* The deadline is set once the queries run, however slow a loaded machine was to start
     * them. */
    if (timeout)
        CHECK_EQ(weft_scope_set_deadline(sc, weft_now() + timeout), 0);
    else
        weft_scope_cancel(sc);
    CHECK_EQ(weft_scope_close(sc), s.code);
    weft_time took = weft_now() - cut; /* far below the 10 s the queries would run */

    /* Every call returned once the server no longer ran its query: none is left. */
    CHECK_EQ(running_sleeps(mon), 0);
    CHECK_EQ(atomic_load(&s.cancelled), TASKS);
    CHECK_EQ(atomic_load(&s.other), 0);
    CHECK_EQ(atomic_load(&s.started), POOL);
    CHECK(took < 8 * WEFT_SEC);

    /* Every connection is back in the pool, idle, and the same backend as before: drained,
     * not replaced. */
    CHECK_EQ(pgw_pool_idle(s.pool), POOL);
    pgw_conn *held[POOL];
    int n = 0;
    for (; n < POOL; n++) {
        if (pgw_pool_acquire(s.pool, &held[n]) != 0)
            break;
        CHECK_EQ(value_of(held[n], "SELECT 7", 0, NULL), 7);
        int pid = pgw_conn_backend_pid(held[n]), known = 0;
        for (int i = 0; i < POOL; i++)
            known |= atomic_load(&s.pids[i]) == pid;
        CHECK(known);
    }
    CHECK_EQ(n, POOL);
    CHECK_EQ(pgw_pool_destroy(s.pool), -EBUSY); /* connections are out */
    for (int i = 0; i < n; i++)
        pgw_pool_release(s.pool, held[i]);
    CHECK_EQ(pgw_pool_destroy(s.pool), 0);
    pgw_conn_close(mon);
    return 0;
}

static int cancel_root(void *arg)
{
    (void)arg;
    return cancel_case(0);
}

Test(pg, cancel_reaches_the_server_and_the_pool_stays_usable, .timeout = 60)
{
    run_against_server(cancel_root);
}

static int deadline_root(void *arg)
{
    (void)arg;
    return cancel_case(50 * WEFT_MSEC);
}

Test(pg, deadline_reaches_the_server_and_the_pool_stays_usable, .timeout = 60)
{
    run_against_server(deadline_root);
}

/* A connection whose query is cut off by a failure the pool must not hide: released broken,
 * it is closed, and the pool makes a new one for the next task. */
static int broken_root(void *arg)
{
    (void)arg;
    pgw_pool *p;
    pgw_conn *c, *admin;
    if (pool_of_one_and_admin(&p, &admin) != 0)
        return -1;
    REQUIRE_EQ(pgw_pool_acquire(p, &c), 0);
    int pid = pgw_conn_backend_pid(c);
    CHECK_EQ(terminate_backend(admin, pid), 1);
    CHECK_EQ(pgw_query(c, "SELECT 1", 0, NULL, NULL), -ECONNRESET);
    pgw_pool_release(p, c);
    CHECK_EQ(pgw_pool_idle(p), 0);
    REQUIRE_EQ(pgw_pool_acquire(p, &c), 0);
    CHECK(pgw_conn_backend_pid(c) != pid);
    CHECK_EQ(value_of(c, "SELECT 8", 0, NULL), 8);
    pgw_pool_release(p, c);
    CHECK_EQ(pgw_pool_destroy(p), 0);
    pgw_conn_close(admin);
    CHECK_EQ(pgw_pool_create(NULL, "", 1), -EINVAL);
    CHECK_EQ(pgw_pool_create(&p, "", 0), -EINVAL);
    return 0;
}

Test(pg, a_broken_connection_is_replaced, .timeout = 60)
{
    run_against_server(broken_root);
}

/* A connection of no pool sends its own cancel request (PQcancel, on the blocking pool). */
static int lone_sleeper(void *arg)
{
    pgw_conn *c = arg;
    int rc = pgw_query(c, SLEEP_SQL, 0, NULL, NULL);
    CHECK_EQ(rc, -ETIMEDOUT);
    return rc;
}

static int lone_root(void *arg)
{
    (void)arg;
    pgw_conn *c = connect_or_fail(), *mon = connect_or_fail();
    if (!c || !mon)
        return -1;
    weft_time t0 = weft_now();
    weft_scope *s;
    REQUIRE_EQ(weft_scope_open(&s, NULL), 0);
    CHECK_EQ(weft_spawn(s, lone_sleeper, c), 0);
    while (running_sleeps(mon) == 0 && weft_now() - t0 < 30 * WEFT_SEC)
        weft_yield();
    weft_time cut = weft_now();
    CHECK_EQ(weft_scope_set_deadline(s, cut + 50 * WEFT_MSEC), 0);
    CHECK_EQ(weft_scope_close(s), -ETIMEDOUT);
    CHECK(weft_now() - cut < 8 * WEFT_SEC); /* far below the 10 s the query would run */
    CHECK_EQ(running_sleeps(mon), 0);
    CHECK_EQ(pgw_conn_cancels_sent(c), 1);
    CHECK(strcmp(pgw_conn_sqlstate(c), "57014") == 0);
    CHECK_EQ(pgw_conn_broken(c), 0);
    CHECK_EQ(value_of(c, "SELECT 9", 0, NULL), 9);
    pgw_conn_close(c);
    pgw_conn_close(mon);
    return 0;
}

Test(pg, a_lone_connection_cancels_on_its_own, .timeout = 60)
{
    run_against_server(lone_root);
}

/* ---- the pool misused ------------------------------------------------------------------------
 * A destroy from another thread, retried while it says -EBUSY, against the release of the last
 * connection out: it must not free the pool while the release still works in it (ASan sees a
 * use after free where it did). A connection given back twice is given back once. A fill by a
 * task that holds one of the pool's connections, and two fills at once, end (each waited for
 * tokens that the other held) and leave no more connections than the pool's size. */

#define DESTROY_ROUNDS 300

typedef struct destroy_race {
    pgw_pool *_Atomic pool; /* set while a round's destroy may go */
    atomic_int destroyed, stop;
} destroy_race;

static void *destroyer(void *arg)
{
    destroy_race *d = arg;
    while (!atomic_load(&d->stop)) {
        pgw_pool *p = atomic_exchange(&d->pool, NULL);
        if (!p)
            continue;
        int rc;
        while ((rc = pgw_pool_destroy(p)) == -EBUSY)
            ;
        atomic_store(&d->destroyed, rc == 0 ? 1 : rc);
    }
    return NULL;
}

static int fill_task(void *arg)
{
    return pgw_pool_fill(arg);
}

static int misuse_root(void *arg)
{
    (void)arg;
    destroy_race d = {0};
    pthread_t th;
    REQUIRE_EQ(pthread_create(&th, NULL, destroyer, &d), 0);
    for (int i = 0; i < DESTROY_ROUNDS; i++) {
        pgw_pool *p;
        REQUIRE_EQ(pgw_pool_create(&p, "", 1), 0);
        pgw_conn *c;
        REQUIRE_EQ(pgw_pool_acquire(p, &c), 0);
        atomic_store(&d.destroyed, 0);
        atomic_store(&d.pool, p); /* the destroyer now tries until the release is done */
        pgw_pool_release(p, c);
        while (atomic_load(&d.destroyed) == 0)
            weft_yield();
        CHECK_EQ(atomic_load(&d.destroyed), 1);
    }
    atomic_store(&d.stop, 1);
    pthread_join(th, NULL);

    pgw_pool *p;
    REQUIRE_EQ(pgw_pool_create(&p, "", 2), 0);
    pgw_conn *c;
    REQUIRE_EQ(pgw_pool_acquire(p, &c), 0);
    pgw_pool_release(p, c);
    pgw_pool_release(p, c); /* again: ignored */
    CHECK_EQ(pgw_pool_idle(p), 1);

    REQUIRE_EQ(pgw_pool_acquire(p, &c), 0);
    CHECK_EQ(pgw_pool_fill(p), 0); /* makes the one missing with the token left */
    CHECK_EQ(pgw_pool_idle(p), 1);
    pgw_pool_release(p, c);
    CHECK_EQ(pgw_pool_idle(p), 2);
    CHECK_EQ(pgw_pool_destroy(p), 0);

    REQUIRE_EQ(pgw_pool_create(&p, "", 4), 0);
    weft_scope *s;
    REQUIRE_EQ(weft_scope_open(&s, &(weft_scope_opts){.timeout_ns = 20 * WEFT_SEC}), 0);
    for (int i = 0; i < 2; i++)
        CHECK_EQ(weft_spawn(s, fill_task, p), 0);
    CHECK_EQ(weft_scope_close(s), 0);
    CHECK_EQ(pgw_pool_idle(p), 4);
    CHECK_EQ(pgw_pool_destroy(p), 0);
    return 0;
}

Test(pg, the_pool_misused, .timeout = 120)
{
    run_against_server(misuse_root);
}

/* ---- connections the server or the process took away --------------------------------------- */

/* Polls the server (a connection of its own) until no backend runs `sql`, for at most `limit`:
 * the server is another process, with no event to wait for. The count left. */
static long long wait_gone(pgw_conn *mon, const char *sql, weft_time limit)
{
    const char *p[] = {sql};
    weft_time end = weft_now() + limit;
    long long n;
    while ((n = value_of(mon, RUNNING_SQL, 1, p)) > 0 && weft_now() < end)
        weft_sleep_for(20 * WEFT_MSEC);
    return n;
}

/* An idle pooled connection whose backend the server ended is not handed out again. */
static int ended_idle_root(void *arg)
{
    (void)arg;
    pgw_pool *p;
    pgw_conn *c, *admin;
    if (pool_of_one_and_admin(&p, &admin) != 0)
        return -1;
    REQUIRE_EQ(pgw_pool_acquire(p, &c), 0);
    int pid = pgw_conn_backend_pid(c);
    CHECK_EQ(value_of(c, "SELECT 4", 0, NULL), 4);
    pgw_pool_release(p, c);
    CHECK_EQ(terminate_backend(admin, pid), 1);
    REQUIRE_EQ(pgw_pool_acquire(p, &c), 0);
    CHECK(pgw_conn_backend_pid(c) != pid);
    CHECK_EQ(value_of(c, "SELECT 5", 0, NULL), 5);
    pgw_pool_release(p, c);
    CHECK_EQ(pgw_pool_destroy(p), 0);
    pgw_conn_close(admin);
    return 0;
}

Test(pg, an_idle_connection_whose_backend_ended_is_not_handed_out, .timeout = 60)
{
    run_against_server(ended_idle_root);
}

/* A pool made outside the runtimes serves one runtime after another with its connections. */
static int one_run_root(void *arg)
{
    pgw_pool *p = arg;
    pgw_conn *c;
    REQUIRE_EQ(pgw_pool_acquire(p, &c), 0);
    CHECK_EQ(value_of(c, "SELECT 6", 0, NULL), 6);
    CHECK_EQ(pgw_conn_broken(c), 0);
    pgw_pool_release(p, c);
    return 0;
}

Test(pg, a_pool_serves_one_runtime_after_another, .timeout = 60)
{
    require_server();
    pgw_pool *p;
    cr_assert_eq(pgw_pool_create(&p, "", 1), 0);
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(run_on(2, one_run_root, p), 0);
        ASSERT_CHECKS();
        cr_assert_eq(pgw_pool_idle(p), 1, "run %d closed the pool's connection", i);
    }
    cr_assert_eq(pgw_pool_destroy(p), 0);
}

/* A cancel request that cannot go out at first (no descriptor left for its connection) goes
 * out again once one is: the query ends, the connection stays usable. */
typedef struct nofile_case {
    pgw_conn *c;
    weft_scope *_Atomic q; /* the query's scope, cancelled by the root */
    struct rlimit saved;
    int rc;
} nofile_case;

static int nofile_query(void *arg)
{
    nofile_case *n = arg;
    weft_scope *q;
    REQUIRE_EQ(weft_scope_open(&q, NULL), 0);
    atomic_store(&n->q, q);
    n->rc = pgw_query(n->c, SLEEP_SQL, 0, NULL, NULL);
    return weft_scope_close(q) == -ECANCELED ? 0 : -EPROTO;
}

static int nofile_root(void *arg)
{
    nofile_case *n = arg;
    pgw_conn *mon = connect_or_fail();
    n->c = connect_or_fail();
    if (!mon || !n->c)
        return -1;
    weft_scope *s;
    REQUIRE_EQ(weft_scope_open(&s, NULL), 0);
    CHECK_EQ(weft_spawn(s, nofile_query, n), 0);
    while (running_sleeps(mon) == 0)
        weft_yield();
    /* No descriptor left: the cancel request's connection cannot be made. */
    REQUIRE_EQ(getrlimit(RLIMIT_NOFILE, &n->saved), 0);
    int fd = dup(0);
    REQUIRE_EQ(fd >= 0, 1);
    close(fd);
    struct rlimit none = {.rlim_cur = (rlim_t)fd, .rlim_max = n->saved.rlim_max};
    REQUIRE_EQ(setrlimit(RLIMIT_NOFILE, &none), 0);
    CHECK_EQ(weft_scope_cancel(atomic_load(&n->q)), 0);
    weft_sleep_for(300 * WEFT_MSEC); /* a request or two fail meanwhile */
    CHECK_EQ(pgw_conn_cancels_sent(n->c), 0);
    REQUIRE_EQ(setrlimit(RLIMIT_NOFILE, &n->saved), 0);
    CHECK_EQ(weft_scope_close(s), 0);
    CHECK_EQ(n->rc, -ECANCELED);
    CHECK_EQ(pgw_conn_broken(n->c), 0);
    CHECK(pgw_conn_cancels_sent(n->c) >= 1);
    CHECK_EQ(running_sleeps(mon), 0);
    CHECK_EQ(value_of(n->c, "SELECT 7", 0, NULL), 7);
    pgw_conn_close(n->c);
    pgw_conn_close(mon);
    return 0;
}

Test(pg, a_cancel_request_that_could_not_go_out_goes_again, .timeout = 60)
{
    require_server();
    nofile_case n = {0};
    cr_assert_eq(run_on(2, nofile_root, &n), 0);
    ASSERT_CHECKS();
}

/* A batch of cancels cut off after its query may have reached the server: the aside
 * connection's backend is stopped (a server too loaded to answer it), two pooled queries are
 * cancelled and join one batch, the second task's drain a second behind the first's (a task
 * that computes between them, on the one worker). The batch is given up at the first drain's
 * limit; the second task sends its own request and drains. Its connection must not go back to
 * the pool: the server, once the aside backend runs again, signals the backends the batch
 * named, and would cancel the query of whichever task held that connection then. */
typedef struct stale_case {
    pgw_pool *pool;
    pgw_conn *held[2];
    int rc[2], cancelled;
} stale_case;

static int stale_sleeper(void *arg)
{
    stale_case *sc = ((void **)arg)[0];
    int i = (int)(intptr_t)((void **)arg)[1];
    sc->rc[i] = pgw_query(sc->held[i], SLEEP_SQL, 0, NULL, NULL);
    pgw_pool_release(sc->pool, sc->held[i]);
    return 0;
}

static int stale_computer(void *arg)
{
    (void)arg;
    weft_sleep_for(60 * WEFT_SEC); /* until the cancel, which wakes it between the two */
    weft_time end = weft_now() + WEFT_SEC;
    while (weft_now() < end)
        ; /* no suspension point: the second task's drain starts a second late */
    return 0;
}

static int stale_query(void *arg)
{
    stale_case *sc = arg;
    pgw_conn *c;
    int rc = pgw_pool_acquire(sc->pool, &c);
    if (rc)
        return rc;
    rc = pgw_query(c, "SELECT pg_sleep(1)", 0, NULL, NULL);
    sc->cancelled = rc == -EREMOTEIO && strcmp(pgw_conn_sqlstate(c), "57014") == 0;
    pgw_pool_release(sc->pool, c);
    return rc;
}

static int stale_root(void *arg)
{
    stale_case *sc = arg;
    pgw_conn *admin = connect_or_fail();
    if (!admin)
        return -1;
    REQUIRE_EQ(pgw_pool_create(&sc->pool, "", 2), 0);
    REQUIRE_EQ(pgw_pool_fill(sc->pool), 0); /* the two, and the one aside for batches */
    REQUIRE_EQ(pgw_pool_acquire(sc->pool, &sc->held[0]), 0);
    REQUIRE_EQ(pgw_pool_acquire(sc->pool, &sc->held[1]), 0);
    char a[16], b[16];
    snprintf(a, sizeof a, "%d", pgw_conn_backend_pid(sc->held[0]));
    snprintf(b, sizeof b, "%d", pgw_conn_backend_pid(sc->held[1]));
    const char *p[] = {a, b};
    long long aside = value_of(admin,
                               "SELECT pid FROM pg_stat_activity WHERE backend_type = 'client "
                               "backend' AND pid NOT IN ($1::int, $2::int, pg_backend_pid())",
                               2, p);
    REQUIRE_EQ(aside > 0, 1);
    REQUIRE_EQ(kill((pid_t)aside, SIGSTOP), 0);
    /* From here on no early return: the aside backend is continued whatever happens. */
    weft_scope *s;
    CHECK_EQ(weft_scope_open(&s, &(weft_scope_opts){.policy = WEFT_COLLECT}), 0);
    void *args[2][2] = {{sc, (void *)0}, {sc, (void *)1}};
    CHECK_EQ(weft_spawn(s, stale_sleeper, args[0]), 0);
    CHECK_EQ(weft_spawn(s, stale_computer, NULL), 0);
    CHECK_EQ(weft_spawn(s, stale_sleeper, args[1]), 0);
    weft_time t0 = weft_now();
    while (running_sleeps(admin) < 2 && weft_now() - t0 < 30 * WEFT_SEC)
        weft_yield();
    CHECK_EQ(weft_scope_cancel(s), 0);
    CHECK_EQ(weft_scope_close(s), -ECANCELED);
    CHECK_EQ(sc->rc[0], -ECANCELED);
    CHECK_EQ(sc->rc[1], -ECANCELED);
    /* Neither connection is pooled: the first was given up, the second's batch may come. */
    CHECK_EQ(pgw_pool_idle(sc->pool), 0);
    /* A task that is never cancelled, on whatever connection the pool gives it, while the
     * aside backend runs what it was sent. */
    CHECK_EQ(weft_scope_open(&s, NULL), 0);
    CHECK_EQ(weft_spawn(s, stale_query, sc), 0);
    CHECK_EQ(weft_sleep_for(300 * WEFT_MSEC), 0); /* its query runs */
    kill((pid_t)aside, SIGCONT);
    CHECK_EQ(weft_scope_close(s), 0);
    CHECK_EQ(sc->cancelled, 0);
    CHECK_EQ(pgw_pool_destroy(sc->pool), 0);
    pgw_conn_close(admin);
    return 0;
}

Test(pg, a_cancel_batch_cut_off_reaches_no_later_query, .timeout = 60)
{
    require_server();
    static stale_case sc;
    /* One worker, no watchdog: the computing task holds the worker a second on purpose. */
    weft_config cfg = {.workers = 1, .watchdog_ns = -1};
    cr_assert_eq(weft_run(&cfg, stale_root, &sc), 0);
    ASSERT_CHECKS();
}

/* A pooled query that its backend goes on running after the first request (the backend
 * stopped here; one that took the signal before the query reached it does the same) is asked
 * again with the pool's next batch, not with a request of its own: on a server slow to end a
 * thousand cancelled statements, a request each would be a connection and a process each, and
 * the statements would end later for them. Once the backend runs again it ends the query, and
 * the connection is idle. */
typedef struct stubborn_case {
    pgw_pool *pool;
    pgw_conn *c;
    int rc;
} stubborn_case;

static int stubborn_query(void *arg)
{
    stubborn_case *k = arg;
    k->rc = pgw_query(k->c, SLEEP_SQL, 0, NULL, NULL);
    return 0;
}

static int stubborn_root(void *arg)
{
    (void)arg;
    stubborn_case k = {0};
    pgw_conn *mon = connect_or_fail();
    if (!mon)
        return -1;
    REQUIRE_EQ(pgw_pool_create(&k.pool, "", 1), 0);
    REQUIRE_EQ(pgw_pool_fill(k.pool), 0); /* the one, and the one aside for batches */
    REQUIRE_EQ(pgw_pool_acquire(k.pool, &k.c), 0);
    pid_t backend = (pid_t)pgw_conn_backend_pid(k.c);
    weft_scope *s;
    REQUIRE_EQ(weft_scope_open(&s, NULL), 0);
    CHECK_EQ(weft_spawn(s, stubborn_query, &k), 0);
    weft_time t0 = weft_now();
    while (running_sleeps(mon) < 1 && weft_now() - t0 < 30 * WEFT_SEC)
        weft_yield();
    REQUIRE_EQ(kill(backend, SIGSTOP), 0);
    /* From here on no early return: the backend is continued whatever happens. */
    CHECK_EQ(weft_scope_cancel(s), 0);
    /* The first batch, and one more once the query has run on CANCEL_AGAIN after it. The cancel
     * reaches this task too, as the scope's owner, whose yields would return at once: it waits
     * in a shield. */
    weft_scope *shield;
    CHECK_EQ(weft_scope_open(&shield, &(weft_scope_opts){.shield = 1}), 0);
    t0 = weft_now();
    while (pgw_pool_cancel_batches(k.pool) < 2 && weft_now() - t0 < 4 * WEFT_SEC)
        CHECK_EQ(weft_yield(), 0);
    CHECK_EQ(weft_scope_close(shield), 0);
    unsigned batches = pgw_pool_cancel_batches(k.pool);
    kill(backend, SIGCONT);
    CHECK_EQ(weft_scope_close(s), -ECANCELED);
    CHECK(batches >= 2);
    CHECK_EQ(k.rc, -ECANCELED);
    CHECK_EQ(pgw_conn_broken(k.c), 0);
    /* Every request it sent went in a batch. */
    CHECK_EQ(pgw_conn_cancels_sent(k.c), pgw_pool_cancel_batches(k.pool));
    CHECK_EQ(running_sleeps(mon), 0);
    CHECK_EQ(value_of(k.c, "SELECT 7", 0, NULL), 7);
    pgw_pool_release(k.pool, k.c);
    CHECK_EQ(pgw_pool_idle(k.pool), 1);
    CHECK_EQ(pgw_pool_destroy(k.pool), 0);
    pgw_conn_close(mon);
    return 0;
}

Test(pg, a_cancel_asked_again_goes_with_the_next_batch, .timeout = 60)
{
    run_against_server(stubborn_root);
}

/* A drain that asks again may end before the batch it joined goes out: it began before the
 * drain of the task that sends the batches, whose batch hangs (the aside backend stopped). Its
 * connection is then closed, and a new one takes its place in the pool; when that one's query
 * is cancelled too, it joins the same batch, still filling. The drain that ended took its
 * backend out of the batch, or the batch would name more backends than the pool has
 * connections (room for which is all it has). Pool of 3: two stubborn queries (backends
 * stopped), one whose task sends the hanging batch, and two more tasks that wait for the
 * stubborn ones' places and are cancelled by a 50 ms deadline. */
#define LEFT_POOL 3
typedef struct left_case {
    pgw_pool *pool;
    atomic_int pids[LEFT_POOL - 1]; /* the stubborn queries' backends */
    int stubborn_rc[LEFT_POOL - 1], sender_rc, late_rc[LEFT_POOL - 1];
} left_case;

static int left_stubborn(void *arg)
{
    left_case *k = ((void **)arg)[0];
    int i = (int)(intptr_t)((void **)arg)[1];
    pgw_conn *c;
    REQUIRE_EQ(pgw_pool_acquire(k->pool, &c), 0);
    atomic_store(&k->pids[i], pgw_conn_backend_pid(c));
    k->stubborn_rc[i] = pgw_query(c, SLEEP_SQL, 0, NULL, NULL);
    pgw_pool_release(k->pool, c);
    return 0;
}

static int left_sender(void *arg)
{
    left_case *k = arg;
    pgw_conn *c;
    REQUIRE_EQ(pgw_pool_acquire(k->pool, &c), 0);
    k->sender_rc = pgw_query(c, SLEEP_SQL, 0, NULL, NULL);
    pgw_pool_release(k->pool, c);
    return 0;
}

static int left_late(void *arg)
{
    left_case *k = ((void **)arg)[0];
    int i = (int)(intptr_t)((void **)arg)[1];
    pgw_conn *c;
    REQUIRE_EQ(pgw_pool_acquire(k->pool, &c), 0);
    weft_scope *s;
    REQUIRE_EQ(weft_scope_open(&s, &(weft_scope_opts){.timeout_ns = 50 * WEFT_MSEC}), 0);
    k->late_rc[i] = pgw_query(c, SLEEP_SQL, 0, NULL, NULL);
    CHECK_EQ(weft_scope_close(s), -ETIMEDOUT);
    pgw_pool_release(k->pool, c);
    return 0;
}

static int left_root(void *arg)
{
    (void)arg;
    left_case k = {0};
    pgw_conn *admin = connect_or_fail();
    if (!admin)
        return -1;
    REQUIRE_EQ(pgw_pool_create(&k.pool, "", LEFT_POOL), 0);
    REQUIRE_EQ(pgw_pool_fill(k.pool), 0); /* the three, and the one aside for batches */
    /* The aside backend: the client backend that is neither the admin's nor the pool's. */
    pgw_conn *held[LEFT_POOL];
    char list[LEFT_POOL * 12 + 3];
    size_t at = 0;
    list[at++] = '{';
    for (int i = 0; i < LEFT_POOL; i++) {
        REQUIRE_EQ(pgw_pool_acquire(k.pool, &held[i]), 0);
        at += (size_t)snprintf(list + at, sizeof list - at, i ? ",%d" : "%d",
                               pgw_conn_backend_pid(held[i]));
    }
    snprintf(list + at, sizeof list - at, "}");
    for (int i = 0; i < LEFT_POOL; i++)
        pgw_pool_release(k.pool, held[i]);
    const char *p[] = {list};
    long long aside = value_of(admin,
                               "SELECT pid FROM pg_stat_activity WHERE backend_type = 'client "
                               "backend' AND pid <> pg_backend_pid() AND NOT pid = ANY($1::int4[])",
                               1, p);
    REQUIRE_EQ(aside > 0, 1);

    /* Three scopes, nested, each cancelled alone (a cancel reaches the scopes inside it): the
     * late tasks', the sender's, the stubborn queries'. */
    weft_scope *late, *sender, *stubborn;
    REQUIRE_EQ(weft_scope_open(&late, &(weft_scope_opts){.policy = WEFT_COLLECT}), 0);
    REQUIRE_EQ(weft_scope_open(&sender, &(weft_scope_opts){.policy = WEFT_COLLECT}), 0);
    REQUIRE_EQ(weft_scope_open(&stubborn, &(weft_scope_opts){.policy = WEFT_COLLECT}), 0);
    void *args[LEFT_POOL - 1][2];
    for (int i = 0; i < LEFT_POOL - 1; i++) {
        args[i][0] = &k;
        args[i][1] = (void *)(intptr_t)i;
        CHECK_EQ(weft_spawn(stubborn, left_stubborn, args[i]), 0);
    }
    weft_time t0 = weft_now();
    while (running_sleeps(admin) < LEFT_POOL - 1 && weft_now() - t0 < 30 * WEFT_SEC)
        weft_yield();
    for (int i = 0; i < LEFT_POOL - 1; i++)
        REQUIRE_EQ(kill((pid_t)atomic_load(&k.pids[i]), SIGSTOP), 0);
    /* From here on no early return: the stopped backends are continued whatever happens. */
    CHECK_EQ(weft_spawn(sender, left_sender, &k), 0);
    while (running_sleeps(admin) < LEFT_POOL && weft_now() - t0 < 30 * WEFT_SEC)
        weft_yield();
    for (int i = 0; i < LEFT_POOL - 1; i++)
        CHECK_EQ(weft_spawn(late, left_late, args[i]), 0); /* they wait for a connection */
    CHECK_EQ(weft_scope_cancel(stubborn), 0);
    /* The first batch and four asked again go out while the aside backend runs: the late
     * tasks will have the time between this cancel and the sender's, a second or so, to take
     * their places (a connection to make) and join the batch still filling. */
    weft_scope *shield;
    CHECK_EQ(weft_scope_open(&shield, &(weft_scope_opts){.shield = 1}), 0);
    while (pgw_pool_cancel_batches(k.pool) < 5 && weft_now() - t0 < 30 * WEFT_SEC)
        CHECK_EQ(weft_yield(), 0);
    CHECK_EQ(weft_scope_close(shield), 0);
    CHECK_EQ(kill((pid_t)aside, SIGSTOP), 0);
    CHECK_EQ(weft_scope_cancel(sender), 0); /* its task leads the batch that hangs */
    /* The stubborn drains give up at their limit and close their connections; the late tasks
     * take their places, and are cancelled into the batch still filling, before the sender's
     * drain gives up in turn. */
    CHECK_EQ(weft_scope_close(stubborn), -ECANCELED);
    CHECK_EQ(weft_scope_close(sender), -ECANCELED);
    kill((pid_t)aside, SIGCONT);
    for (int i = 0; i < LEFT_POOL - 1; i++)
        kill((pid_t)atomic_load(&k.pids[i]), SIGCONT);
    CHECK_EQ(weft_scope_close(late), 0);
    for (int i = 0; i < LEFT_POOL - 1; i++) {
        CHECK_EQ(k.stubborn_rc[i], -ECANCELED);
        CHECK_EQ(k.late_rc[i], -ETIMEDOUT);
    }
    CHECK_EQ(k.sender_rc, -ECANCELED);
    /* What the pool kept answers; the server ends what the closed connections left running
     * (client_connection_check_interval). */
    pgw_conn *c;
    CHECK_EQ(pgw_pool_acquire(k.pool, &c), 0);
    CHECK_EQ(value_of(c, "SELECT 7", 0, NULL), 7);
    pgw_pool_release(k.pool, c);
    CHECK_EQ(wait_gone(admin, SLEEP_SQL, 10 * WEFT_SEC), 0);
    CHECK_EQ(pgw_pool_destroy(k.pool), 0);
    pgw_conn_close(admin);
    return 0;
}

Test(pg, a_drain_that_ends_first_leaves_the_batch_it_joined, .timeout = 60)
{
    run_against_server(left_root);
}

/* No descriptor left for a connection: pgw_connect and the pool's acquire say so (-EMFILE),
 * where libpq says it only in words. */
static int emfile_root(void *arg)
{
    (void)arg;
    pgw_pool *p;
    REQUIRE_EQ(pgw_pool_create(&p, "", 1), 0);
    struct rlimit saved;
    REQUIRE_EQ(getrlimit(RLIMIT_NOFILE, &saved), 0);
    int fd = dup(0);
    REQUIRE_EQ(fd >= 0, 1);
    close(fd);
    struct rlimit none = {.rlim_cur = (rlim_t)fd, .rlim_max = saved.rlim_max};
    REQUIRE_EQ(setrlimit(RLIMIT_NOFILE, &none), 0);
    pgw_conn *c = (pgw_conn *)&c;
    int connect_rc = pgw_connect("", &c);
    int acquire_rc = pgw_pool_acquire(p, &c);
    REQUIRE_EQ(setrlimit(RLIMIT_NOFILE, &saved), 0);
    CHECK_EQ(connect_rc, -EMFILE);
    CHECK_EQ(acquire_rc, -EMFILE);
    /* With descriptors back, the pool works (the token came back). */
    REQUIRE_EQ(pgw_pool_acquire(p, &c), 0);
    CHECK_EQ(value_of(c, "SELECT 3", 0, NULL), 3);
    pgw_pool_release(p, c);
    CHECK_EQ(pgw_pool_destroy(p), 0);
    return 0;
}

Test(pg, no_descriptor_left_is_emfile, .timeout = 60)
{
    run_against_server(emfile_root);
}

/* The server stops answering (every process of it stopped, as a hung machine or a partition
 * leaves it) as a pooled query's deadline passes: the drain, and the drain of the batch that
 * carries its cancel request, give up within the drain limit and close the connection; once
 * the server runs again, it ends the query of the client gone. A thread resumes the server
 * after 20 s whatever happens, so that a drain that does not give up ends the test. */
static pid_t parent_of(pid_t pid)
{
    char path[64], stat[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    size_t n = fread(stat, 1, sizeof stat - 1, f);
    fclose(f);
    stat[n] = 0;
    const char *end = strrchr(stat, ')');
    int ppid = 0;
    return end && sscanf(end + 1, " %*c %d", &ppid) == 1 ? (pid_t)ppid : 0;
}

/* Sends `sig` to the postmaster `pm` and every process it started. */
static void signal_server(pid_t pm, int sig)
{
    kill(pm, sig);
    DIR *d = opendir("/proc");
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        pid_t pid = (pid_t)atoi(e->d_name);
        if (pid > 0 && parent_of(pid) == pm)
            kill(pid, sig);
    }
    closedir(d);
}

typedef struct stopped_case {
    pid_t pm;
    pthread_mutex_t lock;
    pthread_cond_t resumed_cond;
    int resumed;
} stopped_case;

/* Resumes the server, once: the test does when its call has returned, or the safety net. */
static void resume_server(stopped_case *sc)
{
    pthread_mutex_lock(&sc->lock);
    if (!sc->resumed)
        signal_server(sc->pm, SIGCONT);
    sc->resumed = 1;
    pthread_cond_broadcast(&sc->resumed_cond);
    pthread_mutex_unlock(&sc->lock);
}

/* The safety net: waits for the test to resume the server, for 20 s at most. */
static void *resume_later(void *arg)
{
    stopped_case *sc = arg;
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 20;
    pthread_mutex_lock(&sc->lock);
    while (!sc->resumed && pthread_cond_timedwait(&sc->resumed_cond, &sc->lock, &until) == 0)
        ;
    pthread_mutex_unlock(&sc->lock);
    resume_server(sc);
    return NULL;
}

static int stopped_root(void *arg)
{
    (void)arg;
    pgw_pool *p;
    REQUIRE_EQ(pgw_pool_create(&p, "", 1), 0);
    REQUIRE_EQ(pgw_pool_fill(p), 0); /* the batch's connection too */
    pgw_conn *c, *mon = connect_or_fail();
    if (!mon)
        return -1;
    REQUIRE_EQ(pgw_pool_acquire(p, &c), 0);
    stopped_case sc = {.pm = parent_of(pgw_conn_backend_pid(c)),
                       .lock = PTHREAD_MUTEX_INITIALIZER,
                       .resumed_cond = PTHREAD_COND_INITIALIZER};
    REQUIRE_EQ(sc.pm > 1, 1);
    pthread_t th;
    REQUIRE_EQ(pthread_create(&th, NULL, resume_later, &sc), 0);
    signal_server(sc.pm, SIGSTOP);
    weft_scope *s;
    REQUIRE_EQ(weft_scope_open(&s, &(weft_scope_opts){.timeout_ns = 300 * WEFT_MSEC}), 0);
    weft_time t0 = weft_now();
    int rc = pgw_query(c, SLEEP_SQL, 0, NULL, NULL);
    weft_time took = weft_now() - t0;
    CHECK_EQ(weft_scope_close(s), -ETIMEDOUT);
    resume_server(&sc);
    pthread_join(th, NULL);
    CHECK_EQ(rc, -ETIMEDOUT);
    CHECK(took < 3 * PGW_DRAIN_LIMIT); /* given up, not waited out: 20 s unless it gives up */
    CHECK_EQ(pgw_conn_broken(c), 1);
    pgw_pool_release(p, c);
    CHECK_EQ(wait_gone(mon, SLEEP_SQL, 10 * WEFT_SEC), 0);
    CHECK_EQ(pgw_pool_destroy(p), 0);
    pgw_conn_close(mon);
    return 0;
}

Test(pg, a_stopped_server_does_not_hold_a_drain_past_its_limit, .timeout = 60)
{
    run_against_server(stopped_root);
}

/* An idle pooled connection that LISTENs while another session floods it with notifications
 * until its socket is full: the next query on it is answered (the pool reads all that came,
 * which no readiness edge announces again, before the server can send the reply). */
static int flood_root(void *arg)
{
    (void)arg;
    pgw_pool *p;
    pgw_conn *c, *admin;
    if (pool_of_one_and_admin(&p, &admin) != 0)
        return -1;
    REQUIRE_EQ(pgw_pool_acquire(p, &c), 0);
    CHECK_EQ(pgw_query(c, "LISTEN ch", 0, NULL, NULL), 0);
    int sock = PQsocket(pgw_conn_pg(c));
    pgw_pool_release(p, c);
    CHECK_EQ(pgw_query(admin,
                       "SELECT count(pg_notify('ch', i || repeat('x', 100))) "
                       "FROM generate_series(1, 2000) i", /* alike ones are sent once */
                       0, NULL, NULL),
             0);
    /* The listening backend sends them as it can, until its client's socket is full: wait
     * until what is queued there stops growing (another process: nothing to wait on but its
     * effect), so that no more comes to announce itself. */
    int queued = 0, before = -1, still = 0;
    weft_time end = weft_now() + 10 * WEFT_SEC;
    while (still < 5 && weft_now() < end) {
        weft_sleep_for(100 * WEFT_MSEC);
        if (ioctl(sock, FIONREAD, &queued) != 0)
            break;
        still = queued == before && queued > 0 ? still + 1 : 0;
        before = queued;
    }
    if (queued < 64 * 1024)
        check_fail(__FILE__, __LINE__, "%d bytes queued on the idle connection", queued);
    weft_scope *s;
    REQUIRE_EQ(weft_scope_open(&s, &(weft_scope_opts){.timeout_ns = 10 * WEFT_SEC}), 0);
    REQUIRE_EQ(pgw_pool_acquire(p, &c), 0);
    CHECK_EQ(value_of(c, "SELECT 42", 0, NULL), 42);
    int n = 0;
    for (PGnotify *e; (e = PQnotifies(pgw_conn_pg(c))) != NULL; n++)
        PQfreemem(e);
    CHECK_EQ(n, 2000);
    pgw_pool_release(p, c);
    CHECK_EQ(weft_scope_close(s), 0);
    CHECK_EQ(pgw_pool_destroy(p), 0);
    pgw_conn_close(admin);
    return 0;
}

Test(pg, notifications_that_fill_an_idle_connection_do_not_hold_its_next_query, .timeout = 60)
{
    run_against_server(flood_root);
}
