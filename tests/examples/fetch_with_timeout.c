// SPDX-License-Identifier: MIT
/*
 * A list under one overall timeout, keeping what finished:
 *
 *     done, pending = await asyncio.wait(tasks, timeout=0.3)
 *     for t in pending:
 *         t.cancel()
 *
 * One scope holds a task per item and carries the timeout; it collects (WEFT_COLLECT), so an
 * item that fails does not stop the others. When the timeout passes, the items still running
 * are cancelled (their waits return -ETIMEDOUT) and the join returns -ETIMEDOUT; every item
 * that finished before has its answer in its slot. A missing item is no failure of its task:
 * the task stores what happened and returns 0.
 */
#include "example.h"
#include "http_client.h"
#include "weft.h"

#include <errno.h>
#include <string.h>

#define ITEMS 8
#define OVERALL (300 * WEFT_MSEC)

typedef struct item {
    http_client *client;
    char path[64];
    int rc; /* 0 with resp filled; else why it is missing */
    http_response resp;
} item;

static int fetch_item(void *arg)
{
    item *it = arg;
    it->rc = http_get(it->client, it->path, 0, &it->resp);
    return 0;
}

static int main_task(void *arg)
{
    (void)arg;
    http_client *client;
    EXPECT(http_client_create(&client, "127.0.0.1", example_server_port(), ITEMS) == 0);

    /* Items 3 and 6 come from a backend that takes ten seconds. */
    item items[ITEMS];
    for (int i = 0; i < ITEMS; i++) {
        items[i] = (item){.client = client, .rc = 1};
        if (i == 3 || i == 6)
            snprintf(items[i].path, sizeof items[i].path, "/slow/10000");
        else
            snprintf(items[i].path, sizeof items[i].path, "/users/%d/summary", i);
    }

    weft_scope *batch;
    weft_scope_opts opts = {.name = "list", .policy = WEFT_COLLECT, .timeout_ns = OVERALL};
    weft_time t0 = weft_now();
    EXPECT(weft_scope_open(&batch, &opts) == 0);
    for (int i = 0; i < ITEMS; i++)
        EXPECT(weft_spawn(batch, fetch_item, &items[i]) == 0);
    int rc = weft_scope_join(batch);
    int expired = weft_scope_expired(batch);
    weft_scope_release(batch);
    weft_time took = weft_now() - t0;

    printf("the list: join %d (%s) after %lld ms\n", rc, expired ? "timed out" : "complete",
           (long long)(took / WEFT_MSEC));
    int kept = 0;
    for (int i = 0; i < ITEMS; i++) {
        if (items[i].rc == 0) {
            printf("  %-20s %s\n", items[i].path, items[i].resp.body);
            kept++;
        } else {
            printf("  %-20s missing: %s\n", items[i].path, strerror(-items[i].rc));
        }
    }
    EXPECT(rc == -ETIMEDOUT && expired);
    EXPECT(kept == ITEMS - 2);
    EXPECT(items[3].rc == -ETIMEDOUT && items[6].rc == -ETIMEDOUT);
    EXPECT(strcmp(items[5].resp.body, "summary of user 5") == 0);
    EXPECT(took >= OVERALL && took < OVERALL + 2 * WEFT_SEC);

    for (int i = 0; i < ITEMS; i++)
        http_response_free(&items[i].resp);
    http_client_destroy(client);
    return 0;
}

int main(void)
{
    EXPECT(weft_run(NULL, main_task, NULL) == 0);
    printf("fetch_with_timeout: ok\n");
    return 0;
}
