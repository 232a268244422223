// SPDX-License-Identifier: MIT
/*
 * A batch that keeps its successes and its failures, and handles the failures by kind:
 *
 *     try:
 *         async with asyncio.TaskGroup() as tg:   # (gather(..., return_exceptions=True))
 *             for r in records: tg.create_task(import_record(r))
 *     except* ValueError as eg:    skip the bad records
 *     except* TimeoutError as eg:  queue them for a retry
 *     # anything else propagates, with its origin
 *
 * A collecting scope (WEFT_COLLECT) lets every job run to its end and keeps each failure in
 * its error group: the code, the message of weft_fail, the task and scope it came from. After
 * the join, weft_scope_error_count_code splits the group by code (the except* clauses), and
 * weft_fail_group hands up what is left, so that the caller sees the unhandled failures with
 * their origin intact.
 */
#include "example.h"
#include "weft.h"

#include <errno.h>
#include <string.h>

#define RECORDS 12

typedef struct record {
    int id;
    const char *text;
    int imported; /* set on success */
} record;

/* Imports one record. Bad text is -EINVAL; a record whose backend does not answer in time is
 * -ETIMEDOUT (its own 20 ms budget); a record that refers to nothing is -ENOENT. */
static int import_record(void *arg)
{
    record *r = arg;
    if (strcmp(r->text, "garbage") == 0)
        return weft_fail(-EINVAL, "record %d: cannot parse '%s'", r->id, r->text);
    if (strcmp(r->text, "slow") == 0) {
        weft_scope *budget;
        int rc = weft_scope_open(&budget, &(weft_scope_opts){.timeout_ns = 20 * WEFT_MSEC});
        if (rc == 0) {
            rc = weft_sleep_for(10 * WEFT_SEC); /* a backend that does not answer */
            weft_scope_close(budget);
        }
        if (rc == -ETIMEDOUT)
            return weft_fail(rc, "record %d: backend timed out", r->id);
        if (rc != 0)
            return weft_fail(rc, "record %d: backend: %s", r->id, strerror(-rc));
        /* A backend that answered within the budget: the record goes in like the others. */
    }
    if (strcmp(r->text, "orphan") == 0)
        return weft_fail(-ENOENT, "record %d: its owner does not exist", r->id);
    r->imported = 1;
    return 0;
}

/* Imports every record; handles bad and slow records itself and hands up anything else. */
static int import_batch(void *arg)
{
    record *records = arg;
    weft_scope *batch;
    int rc = weft_scope_open(&batch, &(weft_scope_opts){.name = "batch", .policy = WEFT_COLLECT});
    if (rc != 0)
        return rc;
    for (int i = 0; i < RECORDS && rc == 0; i++)
        rc = weft_spawn(batch, import_record, &records[i]);
    weft_scope_join(batch);

    size_t bad = weft_scope_error_count_code(batch, -EINVAL);
    size_t slow = weft_scope_error_count_code(batch, -ETIMEDOUT);
    printf("batch: %zu failures: %zu bad (skipped), %zu slow (queued for a retry)\n",
           weft_scope_error_count(batch), bad, slow);
    for (size_t i = 0; i < weft_scope_error_count(batch); i++) {
        const weft_error *e = weft_scope_error(batch, i);
        if (e->code == -ETIMEDOUT)
            printf("  retry later: %s\n", e->message);
    }
    EXPECT(bad == 2 && slow == 2);

    /* except* ValueError, except* TimeoutError: everything else goes up. */
    static const int handled[] = {-EINVAL, -ETIMEDOUT};
    int left = weft_fail_group(batch, handled, 2);
    weft_scope_release(batch);
    return rc != 0 ? rc : left;
}

static int main_task(void *arg)
{
    (void)arg;
    static const char *const texts[RECORDS] = {"a", "b",      "garbage", "c",    "slow",    "d",
                                               "e", "orphan", "f",       "slow", "garbage", "g"};
    record records[RECORDS];
    for (int i = 0; i < RECORDS; i++)
        records[i] = (record){.id = i, .text = texts[i]};

    /* The caller: one level up, it sees only what the batch did not handle. */
    weft_scope *top;
    EXPECT(weft_scope_open(&top, &(weft_scope_opts){.name = "caller"}) == 0);
    EXPECT(weft_spawn_ex(top, import_batch, records, &(weft_spawn_opts){.name = "import_batch"}) ==
           0);
    int rc = weft_scope_join(top);

    int imported = 0;
    for (int i = 0; i < RECORDS; i++)
        imported += records[i].imported;
    printf("imported %d of %d records; the caller got %d with %zu failure(s)\n", imported, RECORDS,
           rc, weft_scope_error_count(top));
    EXPECT(imported == 7);
    EXPECT(rc == -ENOENT);
    EXPECT(weft_scope_error_count(top) == 1);
    const weft_error *e = weft_scope_error(top, 0);
    printf("  unhandled: %s (task %s, scope %s)\n", e->message, e->task, e->scope);
    /* The failure keeps its origin: the record's task in the batch scope. */
    EXPECT(e->code == -ENOENT);
    EXPECT(strcmp(e->message, "record 7: its owner does not exist") == 0);
    EXPECT(strcmp(e->scope, "batch") == 0);
    weft_scope_release(top);
    return 0;
}

int main(void)
{
    EXPECT(weft_run(NULL, main_task, NULL) == 0);
    printf("batch_errors: ok\n");
    return 0;
}
