// SPDX-License-Identifier: MIT
/*
 * A client that never has more than 10 requests in flight, however many tasks want one:
 *
 *     limit = asyncio.Semaphore(10)
 *     async def get_limited(path):
 *         async with limit:
 *             return await get(path)
 *
 * A weft semaphore of 10 tokens: a task takes one before its request and gives it back after;
 * the eleventh parks (its worker runs other tasks) until a token comes back, in FIFO order.
 * The example counts the requests in flight and checks that the count never passes 10 (on an
 * idle machine it reaches 10; on a loaded one the first requests may end before the last begin),
 * that requests overlapped, and that the server never saw more than 10 connections.
 *
 * When the limit is per batch rather than per client, a scope does the same with no semaphore:
 * weft_scope_opts.max_concurrency = 10 starts at most 10 of its children at once.
 */
#include "example.h"
#include "http_client.h"
#include "weft.h"

#include <errno.h>
#include <stdatomic.h>
#include <string.h>

#define REQUESTS 60
#define LIMIT 10

typedef struct limited_client {
    http_client *http;
    weft_sem *limit;
    atomic_int in_flight;
    atomic_int peak;
    atomic_int answered;
} limited_client;

static int get_limited(limited_client *lc, const char *path, http_response *resp)
{
    int rc = weft_sem_acquire(lc->limit);
    if (rc != 0)
        return rc; /* cancelled while waiting: no token is held */
    int now = atomic_fetch_add(&lc->in_flight, 1) + 1;
    int peak = atomic_load(&lc->peak);
    while (now > peak && !atomic_compare_exchange_weak(&lc->peak, &peak, now)) {
    }
    rc = http_get(lc->http, path, 5 * WEFT_SEC, resp);
    atomic_fetch_sub(&lc->in_flight, 1);
    weft_sem_release(lc->limit);
    return rc;
}

static int one_request(void *arg)
{
    limited_client *lc = arg;
    http_response resp;
    /* Each request takes the server 20 ms, so that requests overlap. */
    int rc = get_limited(lc, "/slow/20", &resp);
    if (rc != 0)
        return weft_fail(rc, "GET /slow/20: %s", strerror(-rc));
    if (resp.status == 200 && strcmp(resp.body, "slept 20 ms") == 0)
        atomic_fetch_add(&lc->answered, 1);
    http_response_free(&resp);
    return 0;
}

static int main_task(void *arg)
{
    (void)arg;
    limited_client lc = {0};
    /* The pool could hold more connections than the limit: the semaphore is what bounds. */
    EXPECT(http_client_create(&lc.http, "127.0.0.1", example_server_port(), 32) == 0);
    EXPECT(weft_sem_create(&lc.limit, LIMIT) == 0);

    weft_scope *s;
    EXPECT(weft_scope_open(&s, NULL) == 0);
    for (int i = 0; i < REQUESTS; i++)
        EXPECT(weft_spawn(s, one_request, &lc) == 0);
    int rc = weft_scope_close(s);

    unsigned long conns = http_client_connections_opened(lc.http);
    printf("%d requests, %d answered, at most %d in flight, over %lu connections\n", REQUESTS,
           atomic_load(&lc.answered), atomic_load(&lc.peak), conns);
    EXPECT(rc == 0);
    EXPECT(atomic_load(&lc.answered) == REQUESTS);
    EXPECT(atomic_load(&lc.peak) <= LIMIT && atomic_load(&lc.peak) > 1);
    EXPECT(conns <= LIMIT);

    EXPECT(weft_sem_destroy(lc.limit) == 0);
    http_client_destroy(lc.http);
    return 0;
}

int main(void)
{
    EXPECT(weft_run(NULL, main_task, NULL) == 0);
    printf("rate_limit: ok\n");
    return 0;
}
