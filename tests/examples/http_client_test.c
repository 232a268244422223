// SPDX-License-Identifier: MIT
/*
 * The examples' HTTP client against real servers, run by with_servers: weft_http (WEFT_HTTP_PORT,
 * the benchmark server), nginx when it is installed (NGINX_PORT) and example_server
 * (EXAMPLE_SERVER_PORT, which also misbehaves on request).
 *
 * Checked: answers and bodies (Content-Length and chunked); keep-alive reuse (one connection for
 * many sequential requests) and the pool's bound (N tasks never open more than M connections);
 * each hostile server and each misuse gives its own negative code (refused, garbage status line,
 * close in the head, body shorter or longer than its Content-Length, a deadline passing
 * mid-read or while waiting for the pool, a cancel, a head or body too large, a bad chunk, a
 * forged path, interim answers or a trailer without end, a status line too long, a coding the
 * client does not speak, a chunk longer than its size, an unasked protocol switch); bare LF
 * line ends; a retry over a new connection when every pooled one went stale; the client works again
 * after them; no descriptor is left open at the end (ASan checks the memory).
 */
#include "http_client.h"

#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int failures;

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);                        \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
            failures++;                                                                            \
        }                                                                                          \
    } while (0)

static int port_of(const char *var)
{
    const char *v = getenv(var);
    return v ? atoi(v) : 0;
}

static int open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    int n = 0;
    if (d == NULL)
        return -1;
    while (readdir(d) != NULL)
        n++;
    closedir(d);
    return n;
}

/* GET `path`, checking the code and, on success, the status and the body. */
static void expect(http_client *c, const char *path, weft_time timeout, int want_rc,
                   int want_status, const char *want_body)
{
    http_response r;
    weft_time t0 = weft_now();
    int rc = http_get(c, path, timeout, &r);
    CHECK(rc == want_rc, "GET %s: %d (%s), expected %d", path, rc, strerror(-rc), want_rc);
    if (rc == 0 && want_rc == 0) {
        CHECK(r.status == want_status, "GET %s: status %d", path, r.status);
        CHECK(want_body == NULL || strcmp(r.body, want_body) == 0, "GET %s: body '%s'", path,
              r.body);
        CHECK(strlen(r.body) == r.body_len, "GET %s: body_len %zu", path, r.body_len);
    }
    if (rc != 0)
        CHECK(r.body == NULL && r.status == 0, "GET %s: a failed response is not empty", path);
    if (timeout > 0 && rc == -ETIMEDOUT) {
        weft_time took = weft_now() - t0;
        CHECK(took >= timeout && took < timeout + 2 * WEFT_SEC, "GET %s: timed out after %lld ms",
              path, (long long)(took / WEFT_MSEC));
    }
    http_response_free(&r);
}

/* ---- many tasks on one pool ---- */

typedef struct shared {
    http_client *c;
    const char *path;
    const char *body;
    int per_task;
    atomic_int ok;
} shared;

static int worker(void *arg)
{
    shared *sh = arg;
    for (int i = 0; i < sh->per_task; i++) {
        http_response r;
        int rc = http_get(sh->c, sh->path, 5 * WEFT_SEC, &r);
        if (rc != 0)
            return weft_fail(rc, "GET %s: %s", sh->path, strerror(-rc));
        if (r.status == 200 && strcmp(r.body, sh->body) == 0)
            atomic_fetch_add(&sh->ok, 1);
        http_response_free(&r);
    }
    return 0;
}

static void many_tasks(const char *name, int port, const char *path, const char *body,
                       unsigned conns, int tasks, int per_task)
{
    http_client *c;
    CHECK(http_client_create(&c, "127.0.0.1", port, conns) == 0, "%s: create", name);
    shared sh = {.c = c, .path = path, .body = body, .per_task = per_task};
    weft_scope *s;
    int rc = weft_scope_open(&s, NULL);
    for (int i = 0; rc == 0 && i < tasks; i++)
        rc = weft_spawn(s, worker, &sh);
    int jrc = weft_scope_close(s);
    CHECK(rc == 0 && jrc == 0, "%s: %d tasks: spawn %d, join %d", name, tasks, rc, jrc);
    CHECK(atomic_load(&sh.ok) == tasks * per_task, "%s: %d of %d answers right", name,
          atomic_load(&sh.ok), tasks * per_task);
    unsigned long opened = http_client_connections_opened(c);
    CHECK(opened >= 1 && opened <= conns, "%s: %lu connections for a pool of %u", name, opened,
          conns);
    printf("%s: %d tasks x %d GET %s over %lu connection(s)\n", name, tasks, per_task, path,
           opened);
    http_client_destroy(c);
}

/* The benchmark servers: a keep-alive connection carries every sequential request. */
static void against_hello_server(const char *name, int port)
{
    http_client *c;
    CHECK(http_client_create(&c, "127.0.0.1", port, 4) == 0, "%s: create", name);
    for (int i = 0; i < 20; i++)
        expect(c, "/", WEFT_SEC, 0, 200, "Hello, World!");
    expect(c, "/nothing-here", WEFT_SEC, 0, 404, NULL);
    CHECK(http_client_connections_opened(c) == 1, "%s: %lu connections for sequential requests",
          name, http_client_connections_opened(c));
    http_client_destroy(c);
    many_tasks(name, port, "/", "Hello, World!", 4, 64, 5);
}

/* ---- a cancel, a deadline of the caller's scope, a wait for the pool ---- */

typedef struct one_get {
    http_client *c;
    const char *path;
    weft_time timeout;
    int rc;
} one_get;

static int get_task(void *arg)
{
    one_get *g = arg;
    http_response r;
    g->rc = http_get(g->c, g->path, g->timeout, &r);
    http_response_free(&r);
    return 0;
}

static void cancel_and_deadlines(http_client *c)
{
    /* A cancel of the caller's scope, wherever the request is when it comes. */
    for (int round = 0; round < 3; round++) {
        one_get g = {.c = c, .path = "/slow/5000", .rc = 1};
        weft_scope *s;
        CHECK(weft_scope_open(&s, NULL) == 0, "open");
        CHECK(weft_spawn(s, get_task, &g) == 0, "spawn");
        for (int i = 0; i < round; i++)
            weft_yield();
        weft_scope_cancel(s);
        weft_time t0 = weft_now();
        weft_scope_close(s);
        CHECK(g.rc == -ECANCELED, "cancelled GET: %d", g.rc);
        CHECK(weft_now() - t0 < WEFT_SEC, "the cancel took %lld ms",
              (long long)((weft_now() - t0) / WEFT_MSEC));
    }
    /* The caller's deadline, with no timeout of the request's own. */
    weft_scope *s;
    CHECK(weft_scope_open(&s, &(weft_scope_opts){.timeout_ns = 100 * WEFT_MSEC}) == 0, "open");
    expect(c, "/slow/5000", 0, -ETIMEDOUT, 0, NULL);
    weft_scope_close(s);

    /* A pool of one held by a slow request: the next request's timeout passes in the queue. */
    http_client *one;
    CHECK(http_client_create(&one, "127.0.0.1", port_of("EXAMPLE_SERVER_PORT"), 1) == 0, "one");
    one_get slow = {.c = one, .path = "/slow/400", .timeout = 5 * WEFT_SEC, .rc = 1};
    CHECK(weft_scope_open(&s, NULL) == 0, "open");
    CHECK(weft_spawn(s, get_task, &slow) == 0, "spawn");
    while (http_client_connections_opened(one) == 0)
        weft_yield(); /* the slow request holds the only connection */
    expect(one, "/users/1/queued", 50 * WEFT_MSEC, -ETIMEDOUT, 0, NULL);
    weft_scope_close(s);
    CHECK(slow.rc == 0, "the slow request: %d", slow.rc);
    http_client_destroy(one);
}

typedef struct pair_case {
    http_client *c;
    atomic_int ok;
} pair_case;

static int pair_get(void *arg)
{
    pair_case *pc = arg;
    http_response resp;
    if (http_get(pc->c, "/bad/close-pair", 5 * WEFT_SEC, &resp) == 0 && resp.status == 200)
        atomic_fetch_add(&pc->ok, 1);
    http_response_free(&resp);
    return 0;
}

static int root(void *arg)
{
    (void)arg;
    int fds_before = open_fds();

    int weft_http = port_of("WEFT_HTTP_PORT");
    CHECK(weft_http > 0, "WEFT_HTTP_PORT is not set: run under with_servers");
    if (weft_http > 0)
        against_hello_server("weft_http", weft_http);
    int nginx = port_of("NGINX_PORT");
    if (nginx > 0)
        against_hello_server("nginx", nginx);
    else
        printf("nginx: not installed, skipped\n");

    int port = port_of("EXAMPLE_SERVER_PORT");
    CHECK(port > 0, "EXAMPLE_SERVER_PORT is not set: run under with_servers");
    if (port <= 0)
        return 1;
    http_client *c;
    CHECK(http_client_create(&c, "127.0.0.1", port, 8) == 0, "create");
    expect(c, "/users/7/profile", WEFT_SEC, 0, 200, "profile of user 7");
    expect(c, "/chunked", WEFT_SEC, 0, 200, "Hello, chunked World!");
    expect(c, "/status/503", WEFT_SEC, 0, 503, "status 503");

    /* Hostile servers: each a code of its own, and the pool goes on working after each. */
    expect(c, "/bad/garbage", WEFT_SEC, -EBADMSG, 0, NULL);
    expect(c, "/bad/close-head", WEFT_SEC, -ECONNRESET, 0, NULL);
    expect(c, "/bad/short-close", WEFT_SEC, -ECONNRESET, 0, NULL);
    expect(c, "/bad/short-stall", 100 * WEFT_MSEC, -ETIMEDOUT, 0, NULL);
    expect(c, "/slow/5000", 100 * WEFT_MSEC, -ETIMEDOUT, 0, NULL);
    expect(c, "/bad/long", WEFT_SEC, -EPROTO, 0, NULL);
    expect(c, "/bad/huge-head", WEFT_SEC, -EMSGSIZE, 0, NULL);
    expect(c, "/bad/huge-body", WEFT_SEC, -EMSGSIZE, 0, NULL);
    expect(c, "/bad/bad-chunk", WEFT_SEC, -EBADMSG, 0, NULL);
    expect(c, "/bad/interim", WEFT_SEC, -EMSGSIZE, 0, NULL);
    expect(c, "/bad/trailer", WEFT_SEC, -EMSGSIZE, 0, NULL);
    expect(c, "/bad/long-status", WEFT_SEC, -EMSGSIZE, 0, NULL);
    expect(c, "/bad/gzip", WEFT_SEC, -EBADMSG, 0, NULL);
    expect(c, "/bad/overrun", WEFT_SEC, -EBADMSG, 0, NULL);
    expect(c, "/bad/switch", WEFT_SEC, -EPROTO, 0, NULL);
    expect(c, "/bad/te-twice", WEFT_SEC, -EBADMSG, 0, NULL);
    expect(c, "/bad/te-length", WEFT_SEC, -EBADMSG, 0, NULL);
    expect(c, "/bad/te-http10", WEFT_SEC, -EBADMSG, 0, NULL);
    expect(c, "/bad/nul", WEFT_SEC, -EBADMSG, 0, NULL);
    expect(c, "/slow/9223372036854775807", WEFT_SEC, 0, 404, NULL); /* no overflow: refused */
    expect(c, "/users/7/again", WEFT_SEC, 0, 200, "again of user 7");

    /* Bare LF line ends are taken for CRLF; a status line without a reason phrase leaves none,
     * not the interim answer's. */
    http_response resp;
    int rc = http_get(c, "/bare-lf", WEFT_SEC, &resp);
    CHECK(rc == 0 && resp.status == 200 && strcmp(resp.body, "ok") == 0 && resp.reason[0] == 0,
          "/bare-lf: rc %d, status %d, reason '%s'", rc, resp.status, resp.reason);
    http_response_free(&resp);

    /* A server that closes a keep-alive connection after a response: the pool does not
     * hand it out again, and the next request goes over a new connection. */
    http_client *one;
    CHECK(http_client_create(&one, "127.0.0.1", port, 1) == 0, "create");
    for (int i = 0; i < 3; i++) {
        expect(one, "/bad/close-after", WEFT_SEC, 0, 200, "bye");
        expect(one, "/users/3/next", WEFT_SEC, 0, 200, "next of user 3");
    }
    /* The first request opens one; each /users request follows a close and opens one, which
     * the next /bad/close-after reuses. */
    CHECK(http_client_connections_opened(one) == 4, "%lu connections",
          http_client_connections_opened(one));
    http_client_destroy(one);

    /* A close said in a Connection field holds, whatever else the fields say: not pooled. */
    const char *closing[] = {"/bad/close-keep", "/bad/close-tab"};
    for (int i = 0; i < 2; i++) {
        CHECK(http_client_create(&one, "127.0.0.1", port, 1) == 0, "create");
        expect(one, closing[i], WEFT_SEC, 0, 200, "bye");
        expect(one, "/users/6/after", WEFT_SEC, 0, 200, "after of user 6");
        CHECK(http_client_connections_opened(one) == 2, "%s: %lu connections", closing[i],
              http_client_connections_opened(one));
        http_client_destroy(one);
    }

    /* A path too long for a request head is refused before the client takes a token or a
     * connection: the idle one stays pooled. */
    CHECK(http_client_create(&one, "127.0.0.1", port, 1) == 0, "create");
    expect(one, "/users/8/first", WEFT_SEC, 0, 200, "first of user 8");
    static char long_path[HTTP_CLIENT_HEAD_MAX + 16];
    memset(long_path, 'a', sizeof long_path - 1);
    long_path[0] = '/';
    expect(one, long_path, WEFT_SEC, -EINVAL, 0, NULL);
    expect(one, "/users/8/again", WEFT_SEC, 0, 200, "again of user 8");
    CHECK(http_client_connections_opened(one) == 1, "long path: %lu connections",
          http_client_connections_opened(one));
    http_client_destroy(one);

    /* A pooled connection that the server closes as the next request arrives: the request goes
     * again, once, over a new connection. */
    CHECK(http_client_create(&one, "127.0.0.1", port, 1) == 0, "create");
    expect(one, "/bad/close-next", WEFT_SEC, 0, 200, "once");
    expect(one, "/users/4/retried", WEFT_SEC, 0, 200, "retried of user 4");
    CHECK(http_client_connections_opened(one) == 2, "%lu connections",
          http_client_connections_opened(one));
    http_client_destroy(one);

    /* Two pooled connections that go stale together: the retry does not take the other one. */
    CHECK(http_client_create(&one, "127.0.0.1", port, 2) == 0, "create");
    pair_case pc = {.c = one};
    weft_scope *s;
    CHECK(weft_scope_open(&s, NULL) == 0, "open");
    for (int i = 0; i < 2; i++)
        CHECK(weft_spawn(s, pair_get, &pc) == 0, "spawn");
    CHECK(weft_scope_close(s) == 0, "close");
    CHECK(atomic_load(&pc.ok) == 2, "%d of 2 /bad/close-pair answered", atomic_load(&pc.ok));
    expect(one, "/users/5/retried", WEFT_SEC, 0, 200, "retried of user 5");
    CHECK(http_client_connections_opened(one) == 3, "%lu connections",
          http_client_connections_opened(one));
    http_client_destroy(one);

    /* Misuse. */
    expect(c, "no-slash", WEFT_SEC, -EINVAL, 0, NULL);
    expect(c, "/a b", WEFT_SEC, -EINVAL, 0, NULL);
    expect(c, "/a\r\nX-Forged: 1", WEFT_SEC, -EINVAL, 0, NULL);
    expect(c, "/", -1, -EINVAL, 0, NULL);
    http_client *bad;
    CHECK(http_client_create(&bad, "localhost", port, 1) == -EINVAL, "a name is not an address");
    CHECK(http_client_create(&bad, "127.0.0.1", 0, 1) == -EINVAL, "port 0");
    CHECK(http_client_create(&bad, "127.0.0.1", port, 0) == -EINVAL, "no connections");

    cancel_and_deadlines(c);
    many_tasks("example_server", port, "/slow/10", "slept 10 ms", 2, 32, 2);
    http_client_destroy(c);

    /* Nobody listens on a port just freed. */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof a;
    CHECK(bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
              getsockname(fd, (struct sockaddr *)&a, &alen) == 0,
          "a free port");
    close(fd);
    CHECK(http_client_create(&c, "127.0.0.1", ntohs(a.sin_port), 1) == 0, "create");
    expect(c, "/", WEFT_SEC, -ECONNREFUSED, 0, NULL);
    http_client_destroy(c);

    CHECK(open_fds() == fds_before, "descriptors: %d before, %d after", fds_before, open_fds());
    return 0;
}

int main(void)
{
    weft_config cfg = {.workers = 2};
    int rc = weft_run(&cfg, root, NULL);
    if (rc != 0 || failures != 0) {
        fprintf(stderr, "http_client_test: %d failure(s), run: %d\n", failures, rc);
        return 1;
    }
    printf("http_client_test: ok\n");
    return 0;
}
