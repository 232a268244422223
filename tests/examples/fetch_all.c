// SPDX-License-Identifier: MIT
/*
 * All or nothing: fetch a user's profile, orders and friends at once; if one fails, the other
 * two are cancelled and the caller gets the failure.
 *
 *     async with asyncio.TaskGroup() as tg:
 *         profile = tg.create_task(get(f"/users/{uid}/profile"))
 *         orders = tg.create_task(get(f"/users/{uid}/orders"))
 *         friends = tg.create_task(get(f"/users/{uid}/friends"))
 *
 * The TaskGroup is a fail-fast scope (the default policy): the first child that fails cancels
 * its siblings, and the join returns that child's code. Run twice against example_server: once
 * where all three answer, once where "orders" fails (a 500) while the other two are stuck on a
 * slow backend, so that they are cancelled in flight.
 */
#include "example.h"
#include "http_client.h"
#include "weft.h"

#include <errno.h>
#include <string.h>

typedef struct fetch {
    http_client *client;
    const char *path;
    int rc;             /* what http_get returned */
    http_response resp; /* the response, when rc is 0 */
} fetch;

static int fetch_one(void *arg)
{
    fetch *f = arg;
    f->rc = http_get(f->client, f->path, 0, &f->resp);
    if (f->rc != 0)
        return weft_fail(f->rc, "GET %s: %s", f->path, strerror(-f->rc));
    if (f->resp.status != 200)
        return weft_fail(-EIO, "GET %s: status %d", f->path, f->resp.status);
    return 0;
}

/* Fetches the three paths at once. 0 when all three succeeded; else the first failure's code,
 * and its message in `why`. The whole fetch may take at most 5 s. */
static int fetch_user(http_client *client, const char *const paths[3], fetch out[3], char *why,
                      size_t why_len)
{
    weft_scope *tg;
    weft_scope_opts opts = {
        .name = "fetch_user", .policy = WEFT_FAIL_FAST, .timeout_ns = 5 * WEFT_SEC};
    int rc = weft_scope_open(&tg, &opts);
    if (rc != 0)
        return rc;
    for (int i = 0; i < 3; i++)
        out[i] = (fetch){.client = client, .path = paths[i], .rc = -ECANCELED};
    for (int i = 0; i < 3 && rc == 0; i++)
        rc = weft_spawn(tg, fetch_one, &out[i]);
    if (rc != 0)
        weft_scope_cancel(tg); /* could not start them all: stop the ones that did */
    int joined = weft_scope_join(tg);
    if (weft_scope_error_count(tg) > 0)
        snprintf(why, why_len, "%s", weft_scope_error(tg, 0)->message);
    weft_scope_release(tg);
    return rc != 0 ? rc : joined;
}

static int main_task(void *arg)
{
    (void)arg;
    http_client *client;
    EXPECT(http_client_create(&client, "127.0.0.1", example_server_port(), 8) == 0);
    char why[WEFT_ERROR_MESSAGE_MAX] = "";

    /* User 42: three answers. */
    const char *const ok[3] = {"/users/42/profile", "/users/42/orders", "/users/42/friends"};
    fetch got[3];
    int rc = fetch_user(client, ok, got, why, sizeof why);
    printf("user 42: %s\n", rc == 0 ? "fetched" : why);
    EXPECT(rc == 0);
    for (int i = 0; i < 3; i++) {
        printf("  %s -> %s\n", got[i].path, got[i].resp.body);
        EXPECT(got[i].resp.status == 200);
        http_response_free(&got[i].resp);
    }

    /* User 13: "orders" fails at once; profile and friends wait on a slow backend and are
     * cancelled, long before the backend would have answered. */
    const char *const bad[3] = {"/slow/10000", "/status/500", "/slow/10000"};
    weft_time t0 = weft_now();
    rc = fetch_user(client, bad, got, why, sizeof why);
    weft_time took = weft_now() - t0;
    printf("user 13: failed with %d after %lld ms: %s\n", rc, (long long)(took / WEFT_MSEC), why);
    EXPECT(rc == -EIO);
    EXPECT(strcmp(why, "GET /status/500: status 500") == 0);
    EXPECT(got[0].rc == -ECANCELED && got[2].rc == -ECANCELED);
    EXPECT(took < 2 * WEFT_SEC);
    for (int i = 0; i < 3; i++)
        http_response_free(&got[i].resp);

    http_client_destroy(client);
    return 0;
}

int main(void)
{
    int rc = weft_run(NULL, main_task, NULL);
    EXPECT(rc == 0);
    printf("fetch_all: ok\n");
    return 0;
}
