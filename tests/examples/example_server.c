// SPDX-License-Identifier: MIT
/*
 * example_server [--port P] [--threads T] — the HTTP server the examples talk to, on the
 * skeleton of the benchmark servers (benchmarks/weft_serve.c: prints port=P, stops cleanly on
 * SIGTERM). weft_http answers one resource, as its benchmark needs; the examples need several,
 * a slow one and failing ones, and the client's tests need a server that misbehaves:
 *
 *   GET /users/ID/WHAT   200, "WHAT of user ID"
 *   GET /slow/MS         200 after MS milliseconds (at most an hour), "slept MS ms"
 *   GET /status/CODE     that status, "status CODE"
 *   GET /chunked         200, "Hello, chunked World!" in three chunks
 *   GET /bad/garbage     a line that is no status line, then close
 *   GET /bad/close-head  half a head, then close
 *   GET /bad/short-close Content-Length 100, ten bytes, then close
 *   GET /bad/short-stall Content-Length 100, ten bytes, then nothing until the client closes
 *   GET /bad/long        Content-Length 5 and more bytes than that, connection kept
 *   GET /bad/huge-head   a head of 12 KiB, then nothing until the client closes
 *   GET /bad/huge-body   Content-Length 2000000 (more than the examples' client takes)
 *   GET /bad/bad-chunk   a chunk size that is no number, then close
 *   GET /bad/close-after 200 with keep-alive, then close all the same
 *   GET /bad/close-next  200 with keep-alive, then close on the next request, unanswered (as a
 *                        server does that closes an idle connection just as it is reused)
 *   GET /bad/close-pair  as close-next, answered only once a second such request is waiting
 *                        (so a client holds two connections that go stale together)
 *   GET /bad/interim     interim 100 answers without end, then nothing until the client closes
 *   GET /bad/trailer     a chunked body whose trailer never ends, likewise
 *   GET /bad/long-status a status line of 12 KiB and no header, in one write, likewise
 *   GET /bad/gzip        200 with Transfer-Encoding: gzip, chunked
 *   GET /bad/overrun     a chunk of 3 bytes followed by 9 KiB without a line end, likewise
 *   GET /bad/switch      101 Switching Protocols, connection kept
 *   GET /bad/close-keep  200 with "Connection: close" then "Connection: keep-alive", connection
 *                        kept (the first field is the one that counts)
 *   GET /bad/close-tab   200 with "Connection: x,<TAB>close", connection kept
 *   GET /bad/te-twice    a body chunked twice, announced by two Transfer-Encoding fields
 *   GET /bad/te-length   a chunked body with a Content-Length as well
 *   GET /bad/te-http10   a chunked body in an HTTP/1.0 response
 *   GET /bad/nul         200 with a NUL inside the Content-Type's value
 *   GET /bare-lf         a 100 and a 200 without reason phrase, lines ending in a bare LF,
 *                        "ok"
 *   anything else        404
 *
 * Every good answer keeps the connection alive; the server reads the next request on it.
 */
#include "weft_serve.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct conn {
    int fd;
    int close_next; /* close when the next request comes, without an answer */
    size_t len;     /* bytes of `in` */
    char in[8192];
    char out[512];
} conn;

static int reply(conn *c, int status, const char *body)
{
    int n = snprintf(c->out, sizeof c->out,
                     "HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\n\r\n%s",
                     status, status < 400 ? "OK" : "Error", strlen(body), body);
    ssize_t w = weft_write_all(c->fd, c->out, (size_t)n, NULL);
    return w < 0 ? (int)w : 0;
}

static int raw_n(conn *c, const char *bytes, size_t n)
{
    ssize_t w = weft_write_all(c->fd, bytes, n, NULL);
    return w < 0 ? (int)w : 0;
}

static int raw(conn *c, const char *bytes)
{
    return raw_n(c, bytes, strlen(bytes));
}

/* Writes `bytes` `times` times, then waits for the client to give up and close. */
static int flood(conn *c, const char *bytes, int times)
{
    int rc = 0;
    for (int i = 0; rc == 0 && i < times; i++)
        rc = raw(c, bytes);
    while (rc == 0 && weft_serve_read(c->fd, c->in, sizeof c->in) > 0)
        ;
    return -EPROTO;
}

/* /bad/close-pair: the first of two requests waits for the second, which lets it go. */
static weft_sem *pair_gate;
static atomic_uint pair_arrivals;

static int close_pair(conn *c)
{
    int rc = 0;
    if (atomic_fetch_add(&pair_arrivals, 1) % 2 == 0)
        rc = weft_sem_acquire(pair_gate);
    else
        weft_sem_release(pair_gate);
    if (rc != 0)
        return rc; /* shutdown */
    c->close_next = 1;
    return reply(c, 200, "pair");
}

/* Answers one request for `path`. 0 to read the next request, anything else to close. */
static int route(conn *c, const char *path)
{
    char body[256];
    char id[64], what[64];
    long n;
    if (sscanf(path, "/users/%63[^/]/%63s", id, what) == 2) {
        snprintf(body, sizeof body, "%s of user %s", what, id);
        return reply(c, 200, body);
    }
    /* At most an hour: more would overflow the sleep's nanoseconds (and no example waits so). */
    if (sscanf(path, "/slow/%ld", &n) == 1 && n >= 0 && n <= 3600 * 1000L) {
        int rc = weft_sleep_for(n * WEFT_MSEC);
        if (rc != 0)
            return rc; /* shutdown */
        snprintf(body, sizeof body, "slept %ld ms", n);
        return reply(c, 200, body);
    }
    if (sscanf(path, "/status/%ld", &n) == 1 && n >= 200 && n <= 599) {
        snprintf(body, sizeof body, "status %ld", n);
        return reply(c, (int)n, body);
    }
    if (strcmp(path, "/chunked") == 0)
        return raw(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                      "7\r\nHello, \r\n8\r\nchunked \r\n6;ext=1\r\nWorld!\r\n0\r\n\r\n");
    if (strcmp(path, "/bad/garbage") == 0) {
        raw(c, "HELLO THERE 200\r\n\r\n");
        return -EPROTO;
    }
    if (strcmp(path, "/bad/close-head") == 0) {
        raw(c, "HTTP/1.1 200 OK\r\nContent-Le");
        return -EPROTO;
    }
    if (strcmp(path, "/bad/short-close") == 0) {
        raw(c, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten b");
        return -EPROTO;
    }
    if (strcmp(path, "/bad/short-stall") == 0) {
        int rc = raw(c, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten b");
        while (rc == 0 && weft_serve_read(c->fd, c->in, sizeof c->in) > 0)
            ; /* the rest never comes: wait for the client to give up */
        return -EPROTO;
    }
    if (strcmp(path, "/bad/close-after") == 0) {
        reply(c, 200, "bye");
        return -EPROTO;
    }
    if (strcmp(path, "/bad/close-next") == 0) {
        c->close_next = 1;
        return reply(c, 200, "once");
    }
    if (strcmp(path, "/bad/huge-head") == 0) {
        int rc = raw(c, "HTTP/1.1 200 OK\r\n");
        for (int i = 0; rc == 0 && i < 200; i++)
            rc = raw(c, "X-Padding: 0123456789012345678901234567890123456789012345\r\n");
        while (rc == 0 && weft_serve_read(c->fd, c->in, sizeof c->in) > 0)
            ;
        return -EPROTO;
    }
    if (strcmp(path, "/bad/huge-body") == 0)
        return raw(c, "HTTP/1.1 200 OK\r\nContent-Length: 2000000\r\n\r\n");
    if (strcmp(path, "/bad/bad-chunk") == 0) {
        raw(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nHello\r\n0\r\n\r\n");
        return -EPROTO;
    }
    if (strcmp(path, "/bad/long") == 0)
        return raw(c, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nHello, and more");
    if (strcmp(path, "/bad/close-pair") == 0)
        return close_pair(c);
    if (strcmp(path, "/bad/interim") == 0)
        return flood(c, "HTTP/1.1 100 Continue\r\n\r\n", 1000);
    if (strcmp(path, "/bad/trailer") == 0) {
        if (raw(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n") != 0)
            return -EPROTO;
        return flood(c, "X-Trailer: 0123456789\r\n", 1000);
    }
    if (strcmp(path, "/bad/long-status") == 0) {
        size_t size = 12 * 1024;
        char *line = malloc(size + 32);
        if (line == NULL)
            return -ENOMEM;
        int n = snprintf(line, 32, "HTTP/1.1 200 ");
        memset(line + n, 'a', size);
        memcpy(line + n + size, "\r\n\r\n", 5);
        int rc = flood(c, line, 1);
        free(line);
        return rc;
    }
    if (strcmp(path, "/bad/gzip") == 0) {
        raw(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
               "3\r\n\x1f\x8b\x08\r\n0\r\n\r\n");
        return -EPROTO;
    }
    if (strcmp(path, "/bad/overrun") == 0) {
        if (raw(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n") != 0)
            return -EPROTO;
        return flood(c, "0123456789abcdef", 9 * 64);
    }
    if (strcmp(path, "/bad/switch") == 0)
        return raw(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: nothing\r\n\r\n");
    if (strcmp(path, "/bad/close-keep") == 0)
        return raw(c, "HTTP/1.1 200 OK\r\nConnection: close\r\nConnection: keep-alive\r\n"
                      "Content-Length: 3\r\n\r\nbye");
    if (strcmp(path, "/bad/close-tab") == 0)
        return raw(c, "HTTP/1.1 200 OK\r\nConnection: x,\tclose\r\nContent-Length: 3\r\n\r\nbye");
    if (strcmp(path, "/bad/te-twice") == 0) {
        raw(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n"
               "\r\nd\r\n3\r\nabc\r\n0\r\n\r\n\r\n0\r\n\r\n");
        return -EPROTO;
    }
    if (strcmp(path, "/bad/te-length") == 0) {
        raw(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n"
               "3\r\nabc\r\n0\r\n\r\n");
        return -EPROTO;
    }
    if (strcmp(path, "/bad/te-http10") == 0) {
        raw(c, "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n"
               "3\r\nabc\r\n0\r\n\r\n");
        return -EPROTO;
    }
    if (strcmp(path, "/bad/nul") == 0) {
        static const char nul[] = "HTTP/1.1 200 OK\r\nContent-Type: te\0xt\r\nContent-Length: 2"
                                  "\r\n\r\nok";
        raw_n(c, nul, sizeof nul - 1);
        return -EPROTO;
    }
    if (strcmp(path, "/bare-lf") == 0)
        return raw(c, "HTTP/1.1 100 Continue\n\nHTTP/1.1 200\nContent-Length: 2\n\nok");
    return reply(c, 404, "not found");
}

static int connection(void *arg)
{
    conn *c = malloc(sizeof *c);
    if (c == NULL) {
        weft_close((int)(intptr_t)arg);
        return 0;
    }
    c->fd = (int)(intptr_t)arg;
    c->len = 0;
    c->close_next = 0;
    for (;;) {
        char *end = memmem(c->in, c->len, "\r\n\r\n", 4);
        if (end == NULL) {
            if (c->len == sizeof c->in - 1)
                break; /* a head too long: not worth an answer here */
            ssize_t n = weft_serve_read(c->fd, c->in + c->len, sizeof c->in - 1 - c->len);
            if (n <= 0)
                break;
            c->len += (size_t)n;
            continue;
        }
        if (c->close_next)
            break;
        size_t head = (size_t)(end - c->in) + 4;
        char path[1024];
        c->in[c->len] = '\0';
        if (sscanf(c->in, "GET %1023s HTTP/1.", path) != 1 || route(c, path) != 0)
            break;
        memmove(c->in, c->in + head, c->len - head);
        c->len -= head;
    }
    weft_close(c->fd);
    free(c);
    return 0;
}

int main(int argc, char **argv)
{
    if (weft_sem_create_max(&pair_gate, 0, 1) != 0)
        return 1;
    return weft_serve(argc, argv, "example_server", connection);
}
