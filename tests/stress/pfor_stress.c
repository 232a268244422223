// SPDX-License-Identifier: MIT
/*
 * Parallel-loop stress: random loops on four workers, several at once, nested, failing and
 * cancelled, so that halves are stolen, joined inline and stopped in every order.
 *
 * Each round a root task runs a few cases at once, each in a scope of its own:
 *   cover     weft_parallel_for over a random range and grain: every index exactly once, and it
 *             returns 0;
 *   product   weft_parallel_reduce of 2x2 matrices mod a prime (associative, not commutative),
 *             each piece perhaps folding its indices through an inner reduce: the result equals
 *             the serial product;
 *   fail      either loop with one piece, chosen at random, failing with a code of its own: the
 *             loop returns that code and a reduce leaves its result alone;
 *   cancel    a loop whose pieces yield, its scope cancelled from outside once some have run: it
 *             returns -ECANCELED (or 0 if it had finished), and afterwards no piece starts but,
 *             at most, one per other worker that passed its check just before the cancel.
 *
 * Usage: pfor_stress [rounds [seed]]
 */
#define STRESS_NAME "pfor_stress"
#define STRESS_SEEDED

#include <errno.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../support.h"
#include "weft.h"

#define WORKERS 4
#define CASES 4 /* loops running at once in a round */

/* Under TSan every task that gets a stack of its own costs a millisecond or more: smaller
 * ranges and fewer rounds keep the default run within its time budget. */
#ifdef UNDER_TSAN
#define DEFAULT_ROUNDS 100
#define MAX_N 2000
#else
#define DEFAULT_ROUNDS 150
#define MAX_N 60000
#endif

#define P 1000003ull

typedef struct mat {
    uint64_t a, b, c, d;
} mat;

static const mat one = {1, 0, 0, 1};

static mat mat_mul(mat x, mat y)
{
    return (mat){(x.a * y.a + x.b * y.c) % P, (x.a * y.b + x.b * y.d) % P,
                 (x.c * y.a + x.d * y.c) % P, (x.c * y.b + x.d * y.d) % P};
}

static mat mat_of(int64_t i)
{
    return (mat){(uint64_t)(((i % (int64_t)P) + (int64_t)P) % (int64_t)P), 1, 2, 0};
}

static int mat_eq(mat x, mat y)
{
    return x.a == y.a && x.b == y.b && x.c == y.c && x.d == y.d;
}

enum { COVER, PRODUCT, FAIL_FOR, FAIL_REDUCE, CANCEL, KINDS };
static const char *const kind_name[KINDS] = {"cover", "product", "fail-for", "fail-reduce",
                                             "cancel"};

typedef struct loop_case {
    int kind;
    int64_t begin, n, grain;
    int64_t fail_at; /* the index whose piece fails */
    int nested;      /* product: pieces fold through an inner reduce of this grain (0: none) */
    int code;        /* the failing piece's code */
    atomic_uchar *seen;
    atomic_int failed, started, after; /* after: pieces started after the failure or cancel */
    atomic_int cancelled;
    atomic_int done;   /* the cancel case's loop returned */
    weft_scope *scope; /* the cancel case's loop runs in it */
    int rc;
    mat result;
} loop_case;

static struct {
    atomic_long loops, pieces, failed_loops, cancelled_loops, finished_before_cancel;
} stats;

static int piece_start(loop_case *c)
{
    atomic_fetch_add(&stats.pieces, 1);
    atomic_fetch_add(&c->started, 1);
    if (atomic_load(&c->failed) || atomic_load(&c->cancelled))
        atomic_fetch_add(&c->after, 1);
    return 0;
}

static int cover_piece(int64_t b, int64_t e, void *arg)
{
    loop_case *c = arg;
    piece_start(c);
    CHECK(b < e && b >= c->begin && e <= c->begin + c->n && (c->grain == 0 || e - b <= c->grain),
          "%s: piece [%lld, %lld) of [%lld, +%lld) grain %lld", kind_name[c->kind], (long long)b,
          (long long)e, (long long)c->begin, (long long)c->n, (long long)c->grain);
    for (int64_t i = b; i < e; i++)
        if (c->seen)
            atomic_fetch_add_explicit(&c->seen[i - c->begin], 1, memory_order_relaxed);
    if (c->kind == FAIL_FOR && b <= c->fail_at && c->fail_at < e) {
        atomic_store(&c->failed, 1);
        return c->code;
    }
    return 0;
}

static int mat_fold(int64_t b, int64_t e, void *partial, void *arg)
{
    (void)arg;
    mat *m = partial;
    for (int64_t i = b; i < e; i++)
        *m = mat_mul(*m, mat_of(i));
    return 0;
}

static void mat_combine(void *acc, const void *partial, void *arg)
{
    (void)arg;
    *(mat *)acc = mat_mul(*(mat *)acc, *(const mat *)partial);
}

static int product_piece(int64_t b, int64_t e, void *partial, void *arg)
{
    loop_case *c = arg;
    piece_start(c);
    if (c->nested) {
        mat inner;
        int rc = weft_parallel_reduce(b, e, c->nested, sizeof(mat), &one, mat_fold, mat_combine,
                                      NULL, &inner);
        if (rc != 0)
            return rc;
        *(mat *)partial = mat_mul(*(mat *)partial, inner);
    } else {
        mat_fold(b, e, partial, NULL);
    }
    if (c->kind == FAIL_REDUCE && b <= c->fail_at && c->fail_at < e) {
        atomic_store(&c->failed, 1);
        return c->code;
    }
    return 0;
}

static int cancel_piece(int64_t b, int64_t e, void *arg)
{
    (void)b;
    (void)e;
    loop_case *c = arg;
    piece_start(c);
    return weft_yield(); /* the cancel's code once it came */
}

static int run_loop(loop_case *c)
{
    switch (c->kind) {
    case COVER:
    case FAIL_FOR:
        return weft_parallel_for(c->begin, c->begin + c->n, c->grain, cover_piece, c);
    case PRODUCT:
    case FAIL_REDUCE:
        return weft_parallel_reduce(c->begin, c->begin + c->n, c->grain, sizeof(mat), &one,
                                    product_piece, mat_combine, c, &c->result);
    default:
        return weft_parallel_for(c->begin, c->begin + c->n, c->grain, cancel_piece, c);
    }
}

static int loop_task(void *arg)
{
    loop_case *c = arg;
    c->rc = run_loop(c);
    atomic_store(&c->done, 1);
    return 0;
}

static void check_case(loop_case *c)
{
    const char *k = kind_name[c->kind];
    switch (c->kind) {
    case COVER:
        CHECK(c->rc == 0, "%s: returned %d", k, c->rc);
        for (int64_t i = 0; i < c->n; i++)
            if (c->seen[i] != 1) {
                CHECK(c->seen[i] == 1, "%s: index %lld of [%lld, +%lld) grain %lld seen %d times",
                      k, (long long)(c->begin + i), (long long)c->begin, (long long)c->n,
                      (long long)c->grain, c->seen[i]);
                break;
            }
        break;
    case PRODUCT: {
        mat want = one;
        for (int64_t i = c->begin; i < c->begin + c->n; i++)
            want = mat_mul(want, mat_of(i));
        CHECK(c->rc == 0, "%s: returned %d", k, c->rc);
        CHECK(mat_eq(c->result, want),
              "%s: [%lld, +%lld) grain %lld nested %d: not the serial "
              "product",
              k, (long long)c->begin, (long long)c->n, (long long)c->grain, c->nested);
        break;
    }
    case FAIL_FOR:
    case FAIL_REDUCE:
        CHECK(c->rc == c->code, "%s: returned %d, the failing piece %d", k, c->rc, c->code);
        if (c->kind == FAIL_REDUCE)
            CHECK(mat_eq(c->result, (mat){7, 7, 7, 7}), "%s: a failed reduce wrote its result", k);
        atomic_fetch_add(&stats.failed_loops, 1);
        break;
    default:
        if (c->rc == 0) {
            atomic_fetch_add(&stats.finished_before_cancel, 1);
            CHECK(atomic_load(&c->started) >= c->n / (c->grain ? c->grain : 1),
                  "%s: returned 0 after %d pieces", k, atomic_load(&c->started));
        } else {
            atomic_fetch_add(&stats.cancelled_loops, 1);
            CHECK(c->rc == -ECANCELED, "%s: returned %d", k, c->rc);
        }
        CHECK(atomic_load(&c->after) <= WORKERS - 1, "%s: %d piece(s) started after the cancel", k,
              atomic_load(&c->after));
    }
}

static int case_task(void *arg)
{
    loop_case *c = arg;
    atomic_fetch_add(&stats.loops, 1);
    if (c->kind != CANCEL) {
        c->rc = run_loop(c);
        return 0;
    }
    int rc = weft_scope_open(&c->scope, NULL);
    CHECK(rc == 0, "weft_scope_open: %d", rc);
    if (rc)
        return 0;
    rc = weft_spawn(c->scope, loop_task, c);
    CHECK(rc == 0, "weft_spawn: %d", rc);
    /* Some pieces in, or the loop done. */
    int want = (int)(c->n / 4 + 1);
    while (atomic_load(&c->started) < want && !atomic_load(&c->done))
        weft_yield();
    weft_scope_cancel(c->scope);
    atomic_store(&c->cancelled, 1);
    rc = weft_scope_close(c->scope);
    CHECK(rc == -ECANCELED, "the cancelled scope's close: %d", rc);
    return 0;
}

typedef struct round_arg {
    uint64_t seed;
    int rounds;
} round_arg;

static void make_case(loop_case *c, uint64_t *s)
{
    memset(c, 0, sizeof(*c));
    c->kind = (int)below(s, KINDS);
    c->n = below(s, 8) == 0 ? below(s, 4) : 1 + below(s, MAX_N);
    c->begin = below(s, 4) == 0 ? INT64_MIN + below(s, 100) : (int64_t)below(s, 2000001) - 1000000;
    switch (below(s, 4)) {
    case 0:
        c->grain = 0;
        break;
    case 1:
        c->grain = 1 + below(s, 4);
        break;
    case 2:
        c->grain = 1 + below(s, 5000);
        break;
    default:
        c->grain = c->n + below(s, 10);
    }
    c->fail_at = c->n ? c->begin + below(s, (unsigned)c->n) : c->begin;
    c->code = -(int)(1000 + below(s, 1000));
    if (c->kind == PRODUCT && below(s, 2))
        c->nested = 1 + (int)below(s, 50);
    if (c->kind == CANCEL) {
        c->n = MAX_N / 2 + below(s, MAX_N / 2);
        c->grain = 1 + below(s, 3);
    }
    if (c->kind == FAIL_FOR || c->kind == FAIL_REDUCE) {
        if (c->n == 0)
            c->kind = COVER; /* nothing to fail */
    }
    if (c->kind == FAIL_REDUCE)
        c->result = (mat){7, 7, 7, 7};
    if (c->kind == COVER || c->kind == FAIL_FOR)
        c->seen = calloc(c->n ? (size_t)c->n : 1, 1);
}

static int root(void *arg)
{
    round_arg *a = arg;
    uint64_t s = a->seed;
    static loop_case cases[CASES];
    for (int r = 0; r < a->rounds && atomic_load(&failures) == 0; r++) {
        for (int i = 0; i < CASES; i++)
            make_case(&cases[i], &s);
        weft_scope *sc;
        int rc = weft_scope_open(&sc, &(weft_scope_opts){.policy = WEFT_COLLECT});
        CHECK(rc == 0, "weft_scope_open: %d", rc);
        if (rc)
            return 0;
        for (int i = 0; i < CASES; i++) {
            rc = weft_spawn(sc, case_task, &cases[i]);
            CHECK(rc == 0, "weft_spawn: %d", rc);
        }
        rc = weft_scope_close(sc);
        CHECK(rc == 0, "a round's scope: %d", rc);
        for (int i = 0; i < CASES; i++) {
            check_case(&cases[i]);
            free(cases[i].seen);
        }
    }
    return 0;
}

int main(int argc, char **argv)
{
    int rounds = argc > 1 ? atoi(argv[1]) : DEFAULT_ROUNDS;
    uint64_t seed = argc > 2 ? strtoull(argv[2], NULL, 0) : (uint64_t)weft_now();
    run_seed = (unsigned long long)seed;
    /* First, so that a run a sanitizer aborts can still be repeated with the same seed. */
    printf("pfor_stress: seed %llu\n", run_seed);
    fflush(stdout);
    round_arg a = {.seed = seed, .rounds = rounds};
    weft_config cfg = {.workers = WORKERS, .watchdog_ns = -1};
    int rc = weft_run(&cfg, root, &a);
    CHECK(rc == 0, "weft_run returned %d", rc);
    int bad = atomic_load(&failures);
    printf("pfor_stress: %s: %d rounds, %ld loops, %ld pieces, %ld loops failed, "
           "%ld loops cancelled (%ld finished first), %d failed checks, seed %llu\n",
           bad ? "FAIL" : "ok", rounds, atomic_load(&stats.loops), atomic_load(&stats.pieces),
           atomic_load(&stats.failed_loops), atomic_load(&stats.cancelled_loops),
           atomic_load(&stats.finished_before_cancel), bad, run_seed);
    return bad ? 1 : 0;
}
