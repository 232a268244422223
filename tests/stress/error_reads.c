// SPDX-License-Identifier: MIT
/*
 * Reading an error group while children still fail into it.
 *
 * Each round the root opens a collect scope "reads" and spawns many children into it that each
 * fail once with a code of their own (so the group grows, and reallocated while it was one
 * array), while reader tasks (in a scope of their own) and a plain thread read the group in a
 * loop with weft_scope_error_count, weft_scope_error and weft_scope_error_count_code. Each
 * reader checks:
 *   - the count never decreases and never exceeds the number of children;
 *   - every record below the count is complete: its code, message, task name and scope name are
 *     the ones the failing child wrote (the message and the task name both encode the child's
 *     index, the code is derived from it);
 *   - the count of a record's code is 1 once the record is seen (each code is unique);
 *   - a record read earlier still reads the same through the pointer the reader kept (records
 *     are valid until the scope is released, whatever fails meanwhile);
 *   - the index of the group past the count gives NULL;
 *   - at the end every child is recorded exactly once, and the join returns the first record's
 *     code.
 * A torn record shows as bad data or a crash; a record read from a freed array as an ASan
 * report (or bad data without ASan); an unsynchronised read as a TSan report.
 *
 * Usage: error_reads [rounds [children]]
 */
#define STRESS_NAME "error_reads"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../support.h"
#include "weft.h"

#ifdef UNDER_TSAN
#define DEFAULT_ROUNDS 10
#define DEFAULT_CHILDREN 500
#else
#define DEFAULT_ROUNDS 40
#define DEFAULT_CHILDREN 2000
#endif
#define MAX_CHILDREN 100000
#define READER_TASKS 2

static int rounds, nchildren;

static int code_of(int child)
{
    return -(1000 + child);
}

/* What one reader saw of the current round's group. */
typedef struct reader {
    size_t seen;                 /* records checked: [0, seen) */
    const weft_error **held;     /* the pointer each was read through */
    int *marks;                  /* times each child was found */
    unsigned long passes, reads; /* for the summary */
} reader;

static void reader_init(reader *r)
{
    r->held = calloc((size_t)nchildren, sizeof(*r->held));
    r->marks = calloc((size_t)nchildren, sizeof(*r->marks));
    CHECK(r->held && r->marks, "out of memory");
}

static void reader_reset(reader *r)
{
    r->seen = 0;
    memset(r->marks, 0, (size_t)nchildren * sizeof(*r->marks));
}

static void reader_fini(reader *r)
{
    free(r->held);
    free(r->marks);
}

/* The child a record belongs to if it is complete and consistent, else -1. */
static int check_record(const weft_error *e, size_t i, int round, const char *who)
{
    int child = -1, rnd = -1, tchild = -1;
    if (!e) {
        CHECK(0, "%s: record %zu below the count is NULL", who, i);
        return -1;
    }
    if (!e->message || sscanf(e->message, "child %d round %d", &child, &rnd) != 2 || child < 0 ||
        child >= nchildren || rnd != round) {
        CHECK(0, "%s: record %zu: message '%s'", who, i, e->message ? e->message : "(null)");
        return -1;
    }
    CHECK(e->code == code_of(child), "%s: record %zu (child %d): code %d", who, i, child, e->code);
    CHECK(e->task && sscanf(e->task, "t%d", &tchild) == 1 && tchild == child,
          "%s: record %zu (child %d): task '%s'", who, i, child, e->task ? e->task : "(null)");
    CHECK(e->scope && strcmp(e->scope, "reads") == 0, "%s: record %zu: scope '%s'", who, i,
          e->scope ? e->scope : "(null)");
    return e->code == code_of(child) ? child : -1;
}

/* One look at the group: the records that appeared since the last pass, and a few of the older
 * ones again, through the pointers kept. */
static void read_pass(reader *r, const weft_scope *s, int round, const char *who)
{
    size_t n = weft_scope_error_count(s);
    CHECK(n >= r->seen, "%s: the count went down from %zu to %zu", who, r->seen, n);
    CHECK(n <= (size_t)nchildren, "%s: count %zu of %d children", who, n, nchildren);
    if (n > (size_t)nchildren)
        n = (size_t)nchildren;
    for (size_t i = r->seen; i < n; i++) {
        const weft_error *e = weft_scope_error(s, i);
        int child = check_record(e, i, round, who);
        r->held[i] = e;
        r->reads++;
        if (child < 0)
            continue;
        r->marks[child]++;
        CHECK(r->marks[child] == 1, "%s: child %d found %d times", who, child, r->marks[child]);
        size_t c = weft_scope_error_count_code(s, code_of(child));
        CHECK(c == 1, "%s: record %zu there, but %zu of its code", who, i, c);
    }
    if (n > r->seen)
        r->seen = n;
    if (r->seen) {
        size_t again[3] = {0, r->seen - 1, r->passes % r->seen};
        for (int k = 0; k < 3; k++)
            check_record(r->held[again[k]], again[k], round, who);
    }
    CHECK(weft_scope_error(s, (size_t)nchildren) == NULL, "%s: a record past the children", who);
    r->passes++;
}

/* After the scope's join: the whole group, each child once. */
static void final_pass(reader *r, const weft_scope *s, int round, const char *who)
{
    read_pass(r, s, round, who);
    CHECK(r->seen == (size_t)nchildren, "%s: %zu records of %d failures", who, r->seen, nchildren);
    for (int c = 0; c < nchildren; c++)
        CHECK(r->marks[c] == 1, "%s: child %d recorded %d times", who, c, r->marks[c]);
    for (size_t i = 0; i < r->seen; i++)
        check_record(r->held[i], i, round, who);
}

/* ---- the round --------------------------------------------------------------------------- */

static struct {
    weft_scope *_Atomic scope; /* the group being read, for the plain thread */
    atomic_int published;      /* round whose scope is in `scope` */
    atomic_int stop;           /* round whose children have all ended (its scope joined) */
    atomic_int thread_done;    /* round the plain thread has finished reading */
    atomic_int round_over;     /* set by the root when the program ends early */
} G;

static reader task_readers[READER_TASKS], thread_reader;
static atomic_ulong total_passes;

typedef struct reader_arg {
    reader *r;
    weft_scope *s;
    int round;
} reader_arg;

static int reader_task(void *p)
{
    reader_arg *a = p;
    reader_reset(a->r);
    while (atomic_load(&G.stop) < a->round) {
        read_pass(a->r, a->s, a->round, "reader task");
        if (weft_yield() != 0)
            break;
    }
    final_pass(a->r, a->s, a->round, "reader task");
    atomic_fetch_add(&total_passes, a->r->passes);
    a->r->passes = 0;
    return 0;
}

static int failing_child(void *p)
{
    int i = (int)(intptr_t)p;
    int round = atomic_load(&G.published);
    /* Some fail at once, some after others ran: the failures spread over the readers' passes. */
    for (int k = 0; k < i % 4; k++)
        if (weft_yield() != 0)
            break;
    return weft_fail(code_of(i), "child %d round %d", i, round);
}

static void run_round(int round)
{
    weft_scope *readers, *s;
    CHECK(weft_scope_open(&readers, NULL) == 0, "open readers");
    weft_scope_opts o = {.policy = WEFT_COLLECT, .name = "reads"};
    CHECK(weft_scope_open(&s, &o) == 0, "open");
    atomic_store(&G.scope, s);
    atomic_store(&G.published, round);
    reader_arg args[READER_TASKS];
    for (int k = 0; k < READER_TASKS; k++) {
        args[k] = (reader_arg){&task_readers[k], s, round};
        CHECK(weft_spawn(readers, reader_task, &args[k]) == 0, "spawn reader");
    }
    for (int i = 0; i < nchildren; i++) {
        char name[32];
        snprintf(name, sizeof(name), "t%d", i);
        weft_spawn_opts so = {.name = name};
        CHECK(weft_spawn_ex(s, failing_child, (void *)(intptr_t)i, &so) == 0, "spawn child");
    }
    int jr = weft_scope_join(s);
    atomic_store(&G.stop, round);
    /* The plain thread reads the group until it has seen the stop: the scope lives until then. */
    int rc = yield_until(&G.thread_done, round);
    CHECK(rc == 0, "waiting for the thread: %d", rc);
    CHECK(weft_scope_join(readers) == 0, "readers' join");
    size_t n = weft_scope_error_count(s);
    CHECK(n == (size_t)nchildren, "%zu failures recorded of %d", n, nchildren);
    const weft_error *first = weft_scope_error(s, 0);
    CHECK(first && jr == first->code, "join returned %d, the first record has %d", jr,
          first ? first->code : 0);
    atomic_store(&G.scope, NULL);
    CHECK(weft_scope_release(s) == 0, "release");
    CHECK(weft_scope_release(readers) == 0, "release readers");
}

static int root(void *p)
{
    (void)p;
    for (int r = 1; r <= rounds && atomic_load(&failures) == 0; r++)
        run_round(r);
    atomic_store(&G.round_over, 1);
    return 0;
}

/* The plain thread: for each round, reads from publication until the stop, then checks all. */
static void *thread_main(void *p)
{
    (void)p;
    for (int round = 1; round <= rounds; round++) {
        while (atomic_load(&G.published) < round && !atomic_load(&G.round_over))
            sched_yield();
        if (atomic_load(&G.published) < round)
            break;
        const weft_scope *s = atomic_load(&G.scope);
        reader_reset(&thread_reader);
        while (atomic_load(&G.stop) < round)
            read_pass(&thread_reader, s, round, "plain thread");
        final_pass(&thread_reader, s, round, "plain thread");
        atomic_fetch_add(&total_passes, thread_reader.passes);
        thread_reader.passes = 0;
        atomic_store(&G.thread_done, round);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    rounds = argc > 1 ? atoi(argv[1]) : DEFAULT_ROUNDS;
    nchildren = argc > 2 ? atoi(argv[2]) : DEFAULT_CHILDREN;
    if (rounds < 1 || nchildren < 1 || nchildren > MAX_CHILDREN) {
        fprintf(stderr, "usage: error_reads [rounds [children (1..%d)]]\n", MAX_CHILDREN);
        return 2;
    }
    for (int k = 0; k < READER_TASKS; k++)
        reader_init(&task_readers[k]);
    reader_init(&thread_reader);
    pthread_t th;
    CHECK(pthread_create(&th, NULL, thread_main, NULL) == 0, "pthread_create");
    weft_config cfg = {.workers = 4, .watchdog_ns = -1};
    int rc = weft_run(&cfg, root, NULL);
    CHECK(rc == 0, "weft_run returned %d", rc);
    atomic_store(&G.round_over, 1);
    pthread_join(th, NULL);
    for (int k = 0; k < READER_TASKS; k++)
        reader_fini(&task_readers[k]);
    reader_fini(&thread_reader);
    int bad = atomic_load(&failures);
    printf("error_reads: %s: %d rounds of %d failures; %lu passes over the groups while they "
           "grew; %d failed checks\n",
           bad ? "FAIL" : "ok", rounds, nchildren, atomic_load(&total_passes), bad);
    return bad ? 1 : 0;
}
