// SPDX-License-Identifier: MIT
/*
 * Parallel loops: every index of a range visited exactly once, in pieces no longer than the
 * grain, whatever the range (empty, one index, odd lengths, ten million, negative or extreme
 * bounds) and the worker count; reduces equal to the serial fold, also for operations that are
 * associative but not commutative; a failing piece stops the loop, and so does a cancel or a
 * deadline from outside, with the pieces that had not started left unstarted; nested loops.
 *
 * Tasks never call Criterion's assertions: they record what they saw (support_criterion.h), and
 * the test's thread asserts after the runtime has ended.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "support_criterion.h"
#include "weft.h"

/* ---- every index once ---------------------------------------------------------------------- */

typedef struct cover {
    int64_t begin, end, grain;
    atomic_uchar *seen; /* end - begin entries */
    atomic_long pieces;
    atomic_int bad_pieces; /* empty, outside the range, or longer than the grain */
    int rc;
} cover;

static int cover_piece(int64_t b, int64_t e, void *arg)
{
    cover *c = arg;
    if (b >= e || b < c->begin || e > c->end || (c->grain > 0 && e - b > c->grain)) {
        atomic_fetch_add(&c->bad_pieces, 1);
        return 0;
    }
    for (int64_t i = b; i < e; i++)
        atomic_fetch_add_explicit(&c->seen[i - c->begin], 1, memory_order_relaxed);
    atomic_fetch_add(&c->pieces, 1);
    return 0;
}

static int cover_root(void *arg)
{
    cover *c = arg;
    c->rc = weft_parallel_for(c->begin, c->end, c->grain, cover_piece, c);
    return 0;
}

static void check_cover(unsigned workers, int64_t begin, int64_t n, int64_t grain)
{
    cover c = {.begin = begin, .end = begin + n, .grain = grain};
    c.seen = calloc(n ? (size_t)n : 1, 1);
    cr_assert_not_null(c.seen);
    cr_assert_eq(run_on(workers, cover_root, &c), 0);
    cr_assert_eq(c.rc, 0, "[%lld, +%lld) grain %lld on %u: returned %d", (long long)begin,
                 (long long)n, (long long)grain, workers, c.rc);
    cr_assert_eq(atomic_load(&c.bad_pieces), 0, "[%lld, +%lld) grain %lld on %u: a bad piece",
                 (long long)begin, (long long)n, (long long)grain, workers);
    for (int64_t i = 0; i < n; i++)
        if (c.seen[i] != 1)
            cr_assert_fail("[%lld, +%lld) grain %lld on %u: index %lld visited %d times",
                           (long long)begin, (long long)n, (long long)grain, workers,
                           (long long)(begin + i), c.seen[i]);
    if (grain > 0)
        cr_assert_geq(atomic_load(&c.pieces), (n + grain - 1) / grain);
    if (n == 0)
        cr_assert_eq(atomic_load(&c.pieces), 0, "an empty range ran a piece");
    free(c.seen);
}

Test(pfor, every_index_once_small_ranges, .timeout = 120)
{
    static const int64_t sizes[] = {0, 1, 2, 7, 1001, 65537};
    static const int64_t begins[] = {0, -5000, -3, 1};
    static const int64_t grains[] = {0, 1, 3, 64, 1 << 20};
    for (unsigned workers = 1; workers <= 2; workers++)
        for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++)
            for (size_t b = 0; b < sizeof(begins) / sizeof(begins[0]); b++)
                for (size_t g = 0; g < sizeof(grains) / sizeof(grains[0]); g++)
                    check_cover(workers, begins[b], sizes[s], grains[g]);
}

Test(pfor, every_index_once_ten_million, .timeout = 120)
{
    for (unsigned workers = 1; workers <= 2; workers++) {
        check_cover(workers, 0, 10000000, 0);
        check_cover(workers, -5000001, 10000000, 1000);
        check_cover(workers, -123, 10000001, 1 << 21);
    }
}

Test(pfor, extreme_bounds, .timeout = 60)
{
    for (unsigned workers = 1; workers <= 2; workers++) {
        check_cover(workers, INT64_MAX - 1001, 1001, 1);
        check_cover(workers, INT64_MAX - 1001, 1001, 0);
        check_cover(workers, INT64_MIN, 1001, 1);
        check_cover(workers, INT64_MIN, 1001, 0);
    }
}

/* The whole of int64 but one index: more indices than an int64 counts. The pieces are
 * recorded, not walked, and must tile the range. */
#define TILE_MAX 4096

typedef struct tiling {
    int64_t grain;
    atomic_int n;
    int64_t b[TILE_MAX], e[TILE_MAX];
    int rc;
} tiling;

static int tile_piece(int64_t b, int64_t e, void *arg)
{
    tiling *t = arg;
    int i = atomic_fetch_add(&t->n, 1);
    if (i < TILE_MAX) {
        t->b[i] = b;
        t->e[i] = e;
    }
    return 0;
}

static int tile_root(void *arg)
{
    tiling *t = arg;
    t->rc = weft_parallel_for(INT64_MIN, INT64_MAX, t->grain, tile_piece, t);
    return 0;
}

static int by_begin(const void *a, const void *b)
{
    const int64_t *x = a, *y = b;
    return *x < *y ? -1 : *x > *y;
}

Test(pfor, whole_int64_range_tiles, .timeout = 60)
{
    static const int64_t grains[] = {0, INT64_MAX, INT64_MAX / 100};
    for (unsigned workers = 1; workers <= 2; workers++)
        for (size_t g = 0; g < sizeof(grains) / sizeof(grains[0]); g++) {
            static tiling t;
            memset(&t, 0, sizeof(t));
            t.grain = grains[g];
            cr_assert_eq(run_on(workers, tile_root, &t), 0);
            cr_assert_eq(t.rc, 0);
            int n = atomic_load(&t.n);
            cr_assert(n > 1 && n <= TILE_MAX, "%d pieces", n);
            int64_t pairs[TILE_MAX][2];
            for (int i = 0; i < n; i++) {
                pairs[i][0] = t.b[i];
                pairs[i][1] = t.e[i];
                cr_assert_lt(t.b[i], t.e[i]);
                if (t.grain > 0)
                    cr_assert_leq((uint64_t)t.e[i] - (uint64_t)t.b[i], (uint64_t)t.grain);
            }
            qsort(pairs, (size_t)n, sizeof(pairs[0]), by_begin);
            cr_assert_eq(pairs[0][0], INT64_MIN);
            for (int i = 1; i < n; i++)
                cr_assert_eq(pairs[i][0], pairs[i - 1][1], "a gap or an overlap at piece %d", i);
            cr_assert_eq(pairs[n - 1][1], INT64_MAX);
        }
}

/* ---- nested loops -------------------------------------------------------------------------- */

#define ROWS 64
#define COLS 1000

typedef struct grid {
    atomic_uchar seen[ROWS][COLS];
    atomic_int inner_failed;
    int rc;
} grid;

typedef struct row_arg {
    grid *g;
    int64_t row;
} row_arg;

static int grid_cell(int64_t b, int64_t e, void *arg)
{
    row_arg *r = arg;
    for (int64_t c = b; c < e; c++)
        atomic_fetch_add(&r->g->seen[r->row][c], 1);
    return 0;
}

static int grid_rows(int64_t b, int64_t e, void *arg)
{
    for (int64_t i = b; i < e; i++) {
        row_arg r = {.g = arg, .row = i};
        int rc = weft_parallel_for(0, COLS, 0, grid_cell, &r);
        if (rc) {
            atomic_fetch_add(&r.g->inner_failed, 1);
            return rc;
        }
    }
    return 0;
}

static int grid_root(void *arg)
{
    grid *g = arg;
    g->rc = weft_parallel_for(0, ROWS, 1, grid_rows, g);
    return 0;
}

Test(pfor, nested_loops, .timeout = 60)
{
    for (unsigned workers = 1; workers <= 2; workers++) {
        static grid g;
        memset(&g, 0, sizeof(g));
        cr_assert_eq(run_on(workers, grid_root, &g), 0);
        cr_assert_eq(g.rc, 0);
        cr_assert_eq(atomic_load(&g.inner_failed), 0);
        for (int r = 0; r < ROWS; r++)
            for (int c = 0; c < COLS; c++)
                cr_assert_eq(g.seen[r][c], 1, "cell %d,%d visited %d times", r, c, g.seen[r][c]);
    }
}

/* ---- reduce ---------------------------------------------------------------------------------- */

typedef struct reduce_case {
    int64_t begin, end, grain;
    int rc;
    alignas(max_align_t) unsigned char result[4096];
} reduce_case;

static int sum_map(int64_t b, int64_t e, void *partial, void *arg)
{
    (void)arg;
    uint64_t s = 0;
    for (int64_t i = b; i < e; i++)
        s += (uint64_t)i;
    *(uint64_t *)partial += s;
    return 0;
}

static void sum_combine(void *acc, const void *partial, void *arg)
{
    (void)arg;
    *(uint64_t *)acc += *(const uint64_t *)partial;
}

static int sum_root(void *arg)
{
    reduce_case *c = arg;
    uint64_t zero = 0;
    c->rc = weft_parallel_reduce(c->begin, c->end, c->grain, sizeof(uint64_t), &zero, sum_map,
                                 sum_combine, NULL, c->result);
    return 0;
}

Test(pfor, reduce_sum_equals_serial, .timeout = 120)
{
    static const int64_t ranges[][2] = {{0, 0}, {0, 1}, {-7, 8}, {0, 100001}, {-4000000, 6000001}};
    static const int64_t grains[] = {0, 1, 1000, INT64_MAX};
    for (unsigned workers = 1; workers <= 2; workers++)
        for (size_t r = 0; r < sizeof(ranges) / sizeof(ranges[0]); r++)
            for (size_t g = 0; g < sizeof(grains) / sizeof(grains[0]); g++) {
                if (grains[g] == 1 && ranges[r][1] - ranges[r][0] > 200000)
                    continue; /* a task per index: millions of them say nothing more */
                static reduce_case c;
                memset(&c, 0xA5, sizeof(c.result));
                c.begin = ranges[r][0];
                c.end = ranges[r][1];
                c.grain = grains[g];
                cr_assert_eq(run_on(workers, sum_root, &c), 0);
                cr_assert_eq(c.rc, 0);
                uint64_t want = 0, got;
                for (int64_t i = c.begin; i < c.end; i++)
                    want += (uint64_t)i;
                memcpy(&got, c.result, sizeof(got));
                cr_assert_eq(got, want, "[%lld, %lld) grain %lld on %u", (long long)c.begin,
                             (long long)c.end, (long long)c.grain, workers);
            }
}

/* 2x2 matrices mod a prime, M_i = [[i mod P, 1], [2, 0]]: the product M_b ... M_(e-1) depends on
 * the order of its factors (and, the matrices not being symmetric, the reversed product is not
 * merely its transpose). */
#define P 1000003ull

typedef struct mat {
    uint64_t a, b, c, d;
} mat;

static mat mat_mul(mat x, mat y)
{
    return (mat){(x.a * y.a + x.b * y.c) % P, (x.a * y.b + x.b * y.d) % P,
                 (x.c * y.a + x.d * y.c) % P, (x.c * y.b + x.d * y.d) % P};
}

static mat mat_of(int64_t i)
{
    return (mat){(uint64_t)(((i % (int64_t)P) + (int64_t)P) % (int64_t)P), 1, 2, 0};
}

static int mat_map(int64_t b, int64_t e, void *partial, void *arg)
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

static int mat_root(void *arg)
{
    reduce_case *c = arg;
    mat one = {1, 0, 0, 1};
    c->rc = weft_parallel_reduce(c->begin, c->end, c->grain, sizeof(mat), &one, mat_map,
                                 mat_combine, NULL, c->result);
    return 0;
}

Test(pfor, reduce_matrix_product_in_index_order, .timeout = 120)
{
    static const int64_t ranges[][2] = {{0, 2}, {-50, 77}, {0, 100001}, {-2000000, 1000000}};
    static const int64_t grains[] = {0, 1, 17, 4096};
    for (size_t r = 0; r < sizeof(ranges) / sizeof(ranges[0]); r++) {
        mat want = {1, 0, 0, 1}, backwards = {1, 0, 0, 1};
        for (int64_t i = ranges[r][0]; i < ranges[r][1]; i++)
            want = mat_mul(want, mat_of(i));
        for (int64_t i = ranges[r][1] - 1; i >= ranges[r][0]; i--)
            backwards = mat_mul(backwards, mat_of(i));
        /* The test means something only if the order shows. */
        cr_assert(memcmp(&want, &backwards, sizeof(mat)) != 0, "the product commutes here");
        for (unsigned workers = 1; workers <= 2; workers++)
            for (size_t g = 0; g < sizeof(grains) / sizeof(grains[0]); g++) {
                if (grains[g] == 1 && ranges[r][1] - ranges[r][0] > 200000)
                    continue;
                static reduce_case c;
                c.begin = ranges[r][0];
                c.end = ranges[r][1];
                c.grain = grains[g];
                cr_assert_eq(run_on(workers, mat_root, &c), 0);
                cr_assert_eq(c.rc, 0);
                mat got;
                memcpy(&got, c.result, sizeof(got));
                cr_assert(memcmp(&got, &want, sizeof(mat)) == 0,
                          "[%lld, %lld) grain %lld on %u: the product differs from the serial one",
                          (long long)c.begin, (long long)c.end, (long long)c.grain, workers);
            }
    }
}

/* The largest result (4,096 bytes): a run of indices that must come in order. Its fill must
 * come through every copy and fold intact. */
typedef struct run {
    int64_t first, last, count;
    int64_t broken;
    unsigned char fill[4096 - 4 * sizeof(int64_t)];
} run;

static int run_map(int64_t b, int64_t e, void *partial, void *arg)
{
    (void)arg;
    run *r = partial;
    for (int64_t i = b; i < e; i++) {
        if (r->count == 0)
            r->first = i;
        else if (r->last + 1 != i)
            r->broken++;
        r->last = i;
        r->count++;
    }
    return 0;
}

static void run_combine(void *acc, const void *partial, void *arg)
{
    (void)arg;
    run *a = acc;
    const run *p = partial;
    if (memcmp(a->fill, p->fill, sizeof(a->fill)) != 0)
        a->broken++;
    if (p->count == 0)
        return;
    if (a->count == 0) {
        memcpy(a, p, sizeof(*a));
        return;
    }
    if (a->last + 1 != p->first)
        a->broken++;
    a->last = p->last;
    a->count += p->count;
    a->broken += p->broken;
}

static int run_root(void *arg)
{
    reduce_case *c = arg;
    static run empty;
    memset(&empty, 0, sizeof(empty));
    for (size_t i = 0; i < sizeof(empty.fill); i++)
        empty.fill[i] = (unsigned char)(i * 7 + 3);
    c->rc = weft_parallel_reduce(c->begin, c->end, c->grain, sizeof(run), &empty, run_map,
                                 run_combine, NULL, c->result);
    return 0;
}

Test(pfor, reduce_large_result_in_index_order, .timeout = 120)
{
    _Static_assert(sizeof(run) == 4096, "the largest result weft.h allows");
    static const int64_t grains[] = {0, 1, 5, 1000};
    for (unsigned workers = 1; workers <= 2; workers++)
        for (size_t g = 0; g < sizeof(grains) / sizeof(grains[0]); g++) {
            static reduce_case c;
            c.begin = -30001;
            c.end = 40000;
            c.grain = grains[g];
            cr_assert_eq(run_on(workers, run_root, &c), 0);
            cr_assert_eq(c.rc, 0);
            run *r = (run *)c.result;
            cr_assert_eq(r->broken, 0, "grain %lld on %u: out of order or torn", (long long)c.grain,
                         workers);
            cr_assert_eq(r->first, c.begin);
            cr_assert_eq(r->last, c.end - 1);
            cr_assert_eq(r->count, c.end - c.begin);
            for (size_t i = 0; i < sizeof(r->fill); i++)
                cr_assert_eq(r->fill[i], (unsigned char)(i * 7 + 3));
        }
}

/* ---- failures -------------------------------------------------------------------------------- */

/* A piece fails: the one holding index `fail_at`, or with FIRST the first piece to start. */
#define FIRST INT64_MIN

typedef struct failing {
    int64_t n, fail_at;
    int spin_ns;
    atomic_long started, after; /* pieces started; of those, started after the failure */
    atomic_int failed;
    int rc;
    uint64_t result; /* reduce: must stay untouched */
} failing;

static void spin_for(int ns)
{
    weft_time until = weft_now() + ns;
    while (weft_now() < until) {
    }
}

static int failing_piece(int64_t b, int64_t e, void *arg)
{
    failing *f = arg;
    int first = atomic_fetch_add(&f->started, 1) == 0;
    if (atomic_load(&f->failed))
        atomic_fetch_add(&f->after, 1);
    if (f->spin_ns)
        spin_for(f->spin_ns);
    if (f->fail_at == FIRST ? first : b <= f->fail_at && f->fail_at < e) {
        atomic_store(&f->failed, 1);
        return -EIO;
    }
    return 0;
}

static int failing_map(int64_t b, int64_t e, void *partial, void *arg)
{
    *(uint64_t *)partial += (uint64_t)(e - b);
    return failing_piece(b, e, arg);
}

static int failing_for_root(void *arg)
{
    failing *f = arg;
    f->rc = weft_parallel_for(0, f->n, 1, failing_piece, f);
    return 0;
}

static int failing_reduce_root(void *arg)
{
    failing *f = arg;
    uint64_t zero = 0;
    f->rc = weft_parallel_reduce(0, f->n, 1, sizeof(uint64_t), &zero, failing_map, sum_combine, f,
                                 &f->result);
    return 0;
}

static void run_failing(failing *f, unsigned workers, weft_fn root, int64_t n, int64_t fail_at,
                        int spin_ns)
{
    memset(f, 0, sizeof(*f));
    f->n = n;
    f->fail_at = fail_at;
    f->spin_ns = spin_ns;
    f->result = 12345;
    cr_assert_eq(run_on(workers, root, f), 0);
    cr_assert_eq(f->rc, -EIO);
    cr_assert_eq(f->result, 12345, "a failed reduce wrote its result");
}

/* On one worker nothing runs between the failing piece's return and the loop's stop: no piece
 * may start after it. */
Test(pfor, failure_stops_the_loop_one_worker, .timeout = 60)
{
    weft_fn roots[] = {failing_for_root, failing_reduce_root};
    for (int k = 0; k < 2; k++) {
        static failing f;
        /* 512 is the first piece of the upper half; the piece after it is a task of its own,
         * spawned before 512 ran. */
        run_failing(&f, 1, roots[k], 1024, 512, 0);
        cr_assert_eq(atomic_load(&f.after), 0, "%ld piece(s) started after the failure",
                     atomic_load(&f.after));
        run_failing(&f, 1, roots[k], 1024, FIRST, 0);
        cr_assert_eq(atomic_load(&f.started), 1, "%ld pieces started after the first failed",
                     atomic_load(&f.started) - 1);
    }
}

/* On two workers the other one may start a piece or so while the failure is on its way; each
 * piece takes 20 us, so a loop that did not stop would run for a fifth of a second. */
Test(pfor, failure_stops_the_loop_two_workers, .timeout = 60)
{
    weft_fn roots[] = {failing_for_root, failing_reduce_root};
    for (int k = 0; k < 2; k++) {
        static failing f;
        run_failing(&f, 2, roots[k], 20000, FIRST, 20000);
        cr_assert_lt(atomic_load(&f.after), f.n / 4, "%ld piece(s) started after the failure",
                     atomic_load(&f.after));
        cr_assert_lt(atomic_load(&f.started), f.n / 2, "%ld pieces started",
                     atomic_load(&f.started));
    }
}

/* A piece parked in a sleep when another piece, in another branch of the halving, fails: the
 * sleep ends cancelled, and the loop returns the failure's code. The failing piece waits
 * (yielding) until the sleeper is under way: at two workers the other worker may reach it first,
 * and a loop that failed already starts no more pieces. The wait gives up after a bound, so that
 * a loop that never starts the sleeper still ends. */
typedef struct parked {
    atomic_int sleeping;   /* piece 0 is about to sleep */
    atomic_int sleep_rc;   /* 1 until the sleeper's sleep returns */
    atomic_int not_set_up; /* piece 63 failed without piece 0 under way */
    int rc;
} parked;

static int parked_piece(int64_t b, int64_t e, void *arg)
{
    parked *p = arg;
    (void)e;
    if (b == 0) {
        atomic_store(&p->sleeping, 1);
        int rc = weft_sleep_for(HOUR);
        atomic_store(&p->sleep_rc, rc);
        return rc;
    }
    if (b == 63) {
        weft_time until = weft_now() + 10 * WEFT_SEC;
        while (!atomic_load(&p->sleeping))
            if (weft_yield() != 0 || weft_now() > until) {
                atomic_store(&p->not_set_up, 1);
                break;
            }
        return -EIO;
    }
    return 0;
}

static int parked_root(void *arg)
{
    parked *p = arg;
    atomic_store(&p->sleeping, 0);
    atomic_store(&p->not_set_up, 0);
    atomic_store(&p->sleep_rc, 1);
    p->rc = weft_parallel_for(0, 64, 1, parked_piece, p);
    return 0;
}

Test(pfor, failure_cancels_running_pieces, .timeout = 60)
{
    for (unsigned workers = 1; workers <= 2; workers++) {
        static parked p;
        cr_assert_eq(run_on(workers, parked_root, &p), 0);
        cr_assert_eq(atomic_load(&p.not_set_up), 0, "%u workers: piece 0 did not start", workers);
        cr_assert_eq(p.rc, -EIO);
        cr_assert_eq(atomic_load(&p.sleep_rc), -ECANCELED, "%u workers", workers);
    }
}

/* The failure must reach a branch of the loop at once, not only once it has climbed the joins
 * to the scope both branches share. Pieces of [0, 8), grain 1: the caller's own piece 0 sleeps;
 * piece 4 is the own piece of the task that holds [4, 8) and does not suspend until piece 0 has
 * woken; piece 6, below it, fails once both are under way. Climbing, the failure would wait at
 * the join of [4, 8) for piece 4, which waits for piece 0: only a cancel of the whole loop wakes
 * piece 0. Two workers: piece 4 holds one. The waits give up after a bound, so that a loop that
 * does not stop still ends. */
typedef struct branches {
    atomic_int sleeping, spinning; /* piece 0 is about to sleep, piece 4 spins */
    atomic_int woke;               /* piece 0's sleep returned */
    atomic_int gave_up;            /* piece 4 stopped waiting for it */
    atomic_int not_set_up;         /* piece 6 failed without the other two under way */
    atomic_int sleep_rc;
    int rc;
} branches;

static int branches_piece(int64_t b, int64_t e, void *arg)
{
    (void)e;
    branches *x = arg;
    weft_time until = weft_now() + 10 * WEFT_SEC;
    if (b == 0) {
        atomic_store(&x->sleeping, 1);
        int rc = weft_sleep_for(HOUR);
        atomic_store(&x->sleep_rc, rc);
        atomic_store(&x->woke, 1);
        return rc;
    }
    if (b == 4) {
        atomic_store(&x->spinning, 1);
        while (!atomic_load(&x->woke))
            if (weft_now() > until) {
                atomic_store(&x->gave_up, 1);
                break;
            }
        return 0;
    }
    if (b == 6) {
        while (!atomic_load(&x->sleeping) || !atomic_load(&x->spinning))
            if (weft_yield() != 0 || weft_now() > until) {
                atomic_store(&x->not_set_up, 1);
                break;
            }
        return -EIO;
    }
    return 0;
}

static int branches_root(void *arg)
{
    branches *x = arg;
    x->rc = weft_parallel_for(0, 8, 1, branches_piece, x);
    return 0;
}

Test(pfor, failure_reaches_other_branches_at_once, .timeout = 60)
{
    static branches x;
    cr_assert_eq(run_on(2, branches_root, &x), 0);
    cr_assert_eq(atomic_load(&x.not_set_up), 0, "pieces 0 and 4 did not both start");
    cr_assert_eq(x.rc, -EIO);
    cr_assert_eq(atomic_load(&x.sleep_rc), -ECANCELED);
    cr_assert_eq(atomic_load(&x.gave_up), 0,
                 "the sleeping piece woke only once the failure had climbed to the loop's scope");
}

/* ---- cancel and deadline from outside -------------------------------------------------------- */

typedef struct outside {
    unsigned workers;
    weft_sem *go;
    atomic_long started, after;
    atomic_int cancelled;
    int rc;
} outside;

static int outside_piece(int64_t b, int64_t e, void *arg)
{
    (void)b;
    (void)e;
    outside *o = arg;
    if (atomic_load(&o->cancelled))
        atomic_fetch_add(&o->after, 1);
    if (atomic_fetch_add(&o->started, 1) + 1 == 100)
        CHECK_EQ(weft_sem_release(o->go), 0);
    return weft_yield(); /* the cancel's code once it came */
}

static int outside_loop(void *arg)
{
    outside *o = arg;
    o->rc = weft_parallel_for(0, 1000000, 1, outside_piece, o);
    return 0;
}

static int outside_root(void *arg)
{
    outside *o = arg;
    weft_scope *s;
    /* The semaphore's one token is ours until the hundredth piece gives it back. */
    REQUIRE_EQ(weft_sem_try_acquire(o->go), 0);
    REQUIRE_EQ(weft_scope_open(&s, NULL), 0);
    REQUIRE_EQ(weft_spawn(s, outside_loop, o), 0);
    CHECK_EQ(weft_sem_acquire(o->go), 0);
    CHECK_EQ(weft_scope_cancel(s), 0);
    atomic_store(&o->cancelled, 1);
    CHECK_EQ(weft_scope_close(s), -ECANCELED);
    CHECK_EQ(weft_sem_release(o->go), 0);
    return 0;
}

Test(pfor, cancel_from_outside_stops_the_loop, .timeout = 60)
{
    for (unsigned workers = 1; workers <= 2; workers++) {
        static outside o;
        memset(&o, 0, sizeof(o));
        o.workers = workers;
        cr_assert_eq(weft_sem_create(&o.go, 1), 0);
        cr_assert_eq(run_on(workers, outside_root, &o), 0);
        ASSERT_CHECKS();
        cr_assert_eq(o.rc, -ECANCELED);
        cr_assert_lt(atomic_load(&o.started), 1000000);
        /* A piece that passed its check just before the cancel may still begin on another
         * worker; none may begin on the canceller's. */
        cr_assert_leq(atomic_load(&o.after), workers - 1, "%ld piece(s) began after the cancel",
                      atomic_load(&o.after));
        cr_assert_eq(weft_sem_destroy(o.go), 0);
    }
}

static int sleeping_piece(int64_t b, int64_t e, void *arg)
{
    (void)b;
    (void)e;
    (void)arg;
    return weft_sleep_for(HOUR);
}

static int deadline_loop(void *arg)
{
    int *rc = arg;
    *rc = weft_parallel_for(0, 1000, 0, sleeping_piece, NULL);
    return 0;
}

static int deadline_root(void *arg)
{
    weft_scope *s;
    REQUIRE_EQ(weft_scope_open(&s, &(weft_scope_opts){.timeout_ns = 20 * WEFT_MSEC}), 0);
    REQUIRE_EQ(weft_spawn(s, deadline_loop, arg), 0);
    CHECK_EQ(weft_scope_close(s), -ETIMEDOUT);
    return 0;
}

Test(pfor, deadline_of_the_caller_stops_the_loop, .timeout = 60)
{
    for (unsigned workers = 1; workers <= 2; workers++) {
        static int rc;
        rc = 1;
        cr_assert_eq(run_on(workers, deadline_root, &rc), 0);
        ASSERT_CHECKS();
        cr_assert_eq(rc, -ETIMEDOUT);
    }
}

/* A caller already cancelled runs no piece. */
static atomic_int ran_anyway;

static int count_piece(int64_t b, int64_t e, void *arg)
{
    (void)b;
    (void)e;
    (void)arg;
    atomic_fetch_add(&ran_anyway, 1);
    return 0;
}

static int precancelled_loop(void *arg)
{
    int *rc = arg;
    CHECK_EQ(weft_scope_cancel(weft_current_scope()), 0);
    rc[0] = weft_parallel_for(0, 1000, 0, count_piece, NULL);
    rc[1] = weft_parallel_for(0, 1, 0, count_piece, NULL);
    return 0;
}

static int precancelled_root(void *arg)
{
    weft_scope *s;
    REQUIRE_EQ(weft_scope_open(&s, NULL), 0);
    REQUIRE_EQ(weft_spawn(s, precancelled_loop, arg), 0);
    CHECK_EQ(weft_scope_close(s), -ECANCELED);
    return 0;
}

Test(pfor, cancelled_caller_runs_nothing, .timeout = 60)
{
    static int rc[2];
    cr_assert_eq(run_on(2, precancelled_root, rc), 0);
    ASSERT_CHECKS();
    cr_assert_eq(rc[0], -ECANCELED);
    cr_assert_eq(rc[1], -ECANCELED);
    cr_assert_eq(atomic_load(&ran_anyway), 0);
}

/* ---- the failing piece's message ------------------------------------------------------------
 * A piece that fails with weft_fail records its message for the loop: it goes with the code the
 * loop returns, whichever task ran the piece, and never onto another code of the caller's. */

typedef struct msg_case {
    int64_t failing; /* the index whose piece fails */
    int handle;      /* the caller handles the loop's failure and returns -EPIPE instead */
    int loop_rc;
    char message[64]; /* what the outer scope recorded */
    int outer_code;
    size_t outer_count;
} msg_case;

static int msg_piece(int64_t b, int64_t e, void *arg)
{
    msg_case *m = arg;
    if (m->failing >= b && m->failing < e)
        return weft_fail(-EIO, "piece %lld failed", (long long)m->failing);
    return 0;
}

static int msg_caller(void *arg)
{
    msg_case *m = arg;
    m->loop_rc = weft_parallel_for(0, 64, 1, msg_piece, m);
    return m->handle && m->loop_rc == -EIO ? -EPIPE : m->loop_rc;
}

static int msg_root(void *arg)
{
    msg_case *m = arg;
    weft_scope *s;
    REQUIRE_EQ(weft_scope_open(&s, &(weft_scope_opts){.policy = WEFT_COLLECT}), 0);
    REQUIRE_EQ(weft_spawn(s, msg_caller, m), 0);
    m->outer_code = weft_scope_join(s);
    m->outer_count = weft_scope_error_count(s);
    if (m->outer_count)
        snprintf(m->message, sizeof m->message, "%s", weft_scope_error(s, 0)->message);
    CHECK_EQ(weft_scope_release(s), 0);
    return 0;
}

Test(pfor, failing_piece_message_goes_with_the_loop_code, .timeout = 60)
{
    /* Index 0 is the caller's own piece; 63 is the last half, a task of its own. */
    const int64_t failing[] = {0, 63};
    for (unsigned workers = 1; workers <= 2; workers++)
        for (int i = 0; i < 2; i++) {
            msg_case m = {.failing = failing[i]};
            cr_assert_eq(run_on(workers, msg_root, &m), 0);
            ASSERT_CHECKS();
            cr_assert_eq(m.loop_rc, -EIO);
            cr_assert_eq(m.outer_code, -EIO);
            cr_assert_eq(m.outer_count, 1);
            char want[64];
            snprintf(want, sizeof want, "piece %lld failed", (long long)failing[i]);
            cr_assert_str_eq(m.message, want, "index %lld on %u workers", (long long)failing[i],
                             workers);
        }
}

Test(pfor, failing_piece_message_stays_off_another_code, .timeout = 60)
{
    const int64_t failing[] = {0, 63};
    for (int i = 0; i < 2; i++) {
        msg_case m = {.failing = failing[i], .handle = 1};
        cr_assert_eq(run_on(2, msg_root, &m), 0);
        ASSERT_CHECKS();
        cr_assert_eq(m.outer_code, -EPIPE);
        cr_assert_eq(m.outer_count, 1);
        cr_assert_str_eq(m.message, "", "the loop's message went with the caller's -EPIPE");
    }
}

/* ---- a piece that leaves a scope of its own open ---- */

typedef struct {
    atomic_int ended; /* children of the pieces' forgotten scopes that ran to their end */
    int64_t failing;  /* the index whose forgotten scope's child fails, or -1 */
    int loop_rc;
} forget_case;

typedef struct {
    forget_case *f;
    int fail;
} forgotten_child;

static int forgotten_child_fn(void *p)
{
    forgotten_child *c = p;
    for (int i = 0; i < 3; i++)
        weft_yield();
    atomic_fetch_add(&c->f->ended, 1);
    int fail = c->fail;
    free(c);
    return fail ? weft_fail(-ENOTCONN, "left behind") : 0;
}

static int forgetting_piece(int64_t begin, int64_t end, void *arg)
{
    forget_case *f = arg;
    for (int64_t i = begin; i < end; i++) {
        weft_scope *s;
        int rc = weft_scope_open(&s, NULL);
        if (rc)
            return rc;
        forgotten_child *c = malloc(sizeof(*c));
        if (!c)
            return -ENOMEM;
        *c = (forgotten_child){.f = f, .fail = i == f->failing};
        if ((rc = weft_spawn(s, forgotten_child_fn, c)) != 0) {
            free(c);
            return rc;
        }
    }
    return 0; /* neither joined nor released */
}

static int forget_root(void *p)
{
    forget_case *f = p;
    f->loop_rc = weft_parallel_for(0, 64, 1, forgetting_piece, f);
    return 0;
}

Test(pfor, a_piece_that_leaves_scopes_open_ends_with_them, .timeout = 60)
{
    for (unsigned workers = 1; workers <= 2; workers++) {
        forget_case f = {.failing = -1};
        cr_assert_eq(run_on(workers, forget_root, &f), 0);
        ASSERT_CHECKS();
        cr_assert_eq(f.loop_rc, 0, "%u workers: %d", workers, f.loop_rc);
        cr_assert_eq(atomic_load(&f.ended), 64, "%u workers: %d children ended", workers,
                     atomic_load(&f.ended));
    }
}

Test(pfor, a_failure_in_a_scope_a_piece_left_open_fails_the_loop, .timeout = 60)
{
    for (unsigned workers = 1; workers <= 2; workers++) {
        forget_case f = {.failing = 40};
        cr_assert_eq(run_on(workers, forget_root, &f), 0);
        ASSERT_CHECKS();
        cr_assert_eq(f.loop_rc, -ENOTCONN, "%u workers: %d", workers, f.loop_rc);
    }
}
