// SPDX-License-Identifier: MIT
/*
 * The request parser the project's HTTP servers share (benchmarks/io_common.h: weft_http and its
 * epoll and io_uring peers): heads it must answer, heads it must refuse because their framing
 * is not sure (each of those, parsed loosely, let a body be answered as the next request), and
 * the keep-alive answer of an HTTP/1.0 client.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "../benchmarks/io_common.h"

typedef struct head_case {
    const char *what, *head;
    int status, keep_alive;
} head_case;

static const head_case cases[] = {
    {"a plain GET", "GET / HTTP/1.1\r\nHost: x\r\n\r\n", 200, 1},
    {"HTTP/1.0 without keep-alive", "GET / HTTP/1.0\r\n\r\n", 200, 0},
    {"HTTP/1.0 keep-alive", "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", 200, 1},
    {"Connection: close", "GET / HTTP/1.1\r\nConnection: close\r\n\r\n", 200, 0},
    {"Connection: close and a tab", "GET / HTTP/1.1\r\nConnection: close\t\r\n\r\n", 200, 0},
    {"Connection: a list with tabs", "GET / HTTP/1.1\r\nConnection: x,\tclose\r\n\r\n", 200, 0},
    {"an empty line first", "\r\nGET / HTTP/1.1\r\n\r\n", 200, 1},
    {"two empty lines first", "\r\n\r\nGET / HTTP/1.1\r\n\r\n", 200, 1},
    {"Content-Length: 0", "GET / HTTP/1.1\r\nContent-Length: 0\r\n\r\n", 200, 1},
    {"an unknown path", "GET /x HTTP/1.1\r\n\r\n", 404, 1},
    {"POST", "POST / HTTP/1.1\r\n\r\n", 405, 1},
    {"a body", "GET / HTTP/1.1\r\nContent-Length: 20\r\n\r\n", 400, 0},
    {"chunked", "GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 400, 0},
    {"a space before the colon", "GET / HTTP/1.1\r\nContent-Length : 20\r\n\r\n", 400, 0},
    {"a tab before the colon", "GET / HTTP/1.1\r\nTransfer-Encoding\t: chunked\r\n\r\n", 400, 0},
    {"a bare CR", "GET / HTTP/1.1\r\nX: a\rContent-Length: 20\r\n\r\n", 400, 0},
    {"a bare LF", "GET / HTTP/1.1\r\nX: a\nContent-Length: 20\r\n\r\n", 400, 0},
    {"a folded line", "GET / HTTP/1.1\r\nX: a\r\n Content-Length: 20\r\n\r\n", 400, 0},
    {"an empty field name", "GET / HTTP/1.1\r\n: x\r\n\r\n", 400, 0},
    {"a bare LF first", "\nGET / HTTP/1.1\r\n\r\n", 400, 0},
    {"no version", "GET /\r\n\r\n", 400, 0},
};

Test(http_parse, each_head_gets_its_answer)
{
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const head_case *c = &cases[i];
        http_req req;
        memset(&req, 0xff, sizeof(req));
        long n = http_scan(c->head, strlen(c->head), &req);
        cr_expect_eq(n, (long)strlen(c->head), "%s: head of %ld bytes, want %zu", c->what, n,
                     strlen(c->head));
        cr_expect_eq(req.status, c->status, "%s: status %d, want %d", c->what, req.status,
                     c->status);
        cr_expect_eq(req.keep_alive, c->keep_alive, "%s: keep-alive %d, want %d", c->what,
                     req.keep_alive, c->keep_alive);
    }
}

Test(http_parse, a_head_and_the_next_request_split_where_the_head_ends)
{
    const char *two = "GET / HTTP/1.1\r\n\r\nGET /x HTTP/1.1\r\n\r\n";
    http_req req;
    long n = http_scan(two, strlen(two), &req);
    cr_assert_eq(n, 18);
    cr_assert_eq(req.status, 200);
    n = http_scan(two + 18, strlen(two) - 18, &req);
    cr_assert_eq(n, (long)strlen(two) - 18);
    cr_assert_eq(req.status, 404);
    /* Incomplete: nothing yet, also when only empty lines came. */
    cr_assert_eq(http_scan("GET / HTTP/1.1\r\n", 16, &req), 0);
    cr_assert_eq(http_scan("\r\n\r\n", 4, &req), 0);
}

static const char *answer_to(const char *head, char *out)
{
    http_req req;
    cr_assert_gt(http_scan(head, strlen(head), &req), 0);
    size_t n = http_respond(out, &req);
    cr_assert_lt(n, (size_t)HTTP_RESPONSE_MAX);
    out[n] = 0;
    return out;
}

Test(http_parse, an_http_1_0_client_is_told_whether_the_connection_stays)
{
    char out[HTTP_RESPONSE_MAX + 1];
    cr_assert_not_null(strstr(answer_to("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", out),
                              "\r\nConnection: keep-alive\r\n"));
    cr_assert_not_null(
        strstr(answer_to("GET / HTTP/1.0\r\n\r\n", out), "\r\nConnection: close\r\n"));
    cr_assert_null(strstr(answer_to("GET / HTTP/1.1\r\n\r\n", out), "Connection:"));
    cr_assert_not_null(strstr(answer_to("GET /x HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", out),
                              "\r\nConnection: keep-alive\r\n"));
}
