// SPDX-License-Identifier: MIT
/*
 * A small HTTP/1.1 client on weft's socket calls, for the examples (not part of the library).
 *
 * One client talks to one origin (host:port) and keeps a pool of at most `max_conns`
 * connections to it: a request takes a token of the pool (parking while all are in use), reuses
 * an idle keep-alive connection or opens a new one, and gives the connection back only when the
 * response was read whole and the server did not ask to close. Any number of tasks may share a
 * client (tasks of one runtime: a descriptor is waited on by one runtime only, weft.h's
 * weft_fd_wait, so a task of another runtime handed a pooled connection gets -EINVAL); at most
 * `max_conns` of them talk to the server at once.
 *
 * Every wait of a request (for a token, the connect, the writes and reads) is bounded by the
 * request's timeout and by the caller's scope: a cancel of the calling task ends the request
 * with -ECANCELED, its deadline or the request's timeout with -ETIMEDOUT. A connection whose
 * request failed is closed, never given back to the pool half-read; so is one the server
 * closed or sent unasked bytes on, as far as the client can see it: bytes that arrive only
 * after the connection was taken for the next request are read as that request's answer (no
 * HTTP/1.1 client can tell them apart). A request that finds its reused connection closed by
 * the server before any byte of the answer goes again, once, over a new connection (GET is
 * idempotent). Lines may end with CRLF or a bare LF (RFC 9112, 2.2).
 */
#ifndef HTTP_CLIENT_H
#define HTTP_CLIENT_H

#include "weft.h"

#include <stddef.h>

typedef struct http_client http_client;

typedef struct http_response {
    int status;            /* 200..599 (interim 1xx answers are skipped) */
    char *body;            /* body_len bytes and a terminating NUL (malloc'd) */
    size_t body_len;       /* decoded length (chunked bodies are joined) */
    char reason[64];       /* the status line's reason phrase, truncated */
    char content_type[64]; /* the Content-Type header's value, truncated; "" if none */
} http_response;

/* The largest body a response may have (-EMSGSIZE beyond), and the largest head. */
#define HTTP_CLIENT_BODY_MAX ((size_t)1 << 20)
#define HTTP_CLIENT_HEAD_MAX 8192

/* Creates a client of http://host:port (host: a dotted IPv4 address) holding at most
 * `max_conns` connections (1..1024). 0; -EINVAL; -ENOMEM. Any thread. */
int http_client_create(http_client **out, const char *host, int port, unsigned max_conns);

/* Closes the idle connections and frees the client. No request may be in progress (join the
 * tasks that use it first). Any thread; does not suspend. */
void http_client_destroy(http_client *c);

/*
 * GET `path` (it starts with '/'), waiting at most `timeout` nanoseconds (0: no timeout of its
 * own) for the whole request: the token, the connection, the response. On 0 *resp holds the
 * response (free it with http_response_free), whatever its status. Otherwise *resp is left
 * empty and the result says why:
 *   -ECONNREFUSED, -ENETUNREACH, ...   the connect failed (what the socket reported)
 *   -ECONNRESET   the server closed the connection before the response was complete (in the
 *                 head, or with fewer body bytes than Content-Length or the chunks announced)
 *   -EBADMSG      not an HTTP/1.x response: a garbage status line, header or trailer, a
 *                 control character (a tab aside) in a header's value or the reason, a bad
 *                 chunk, a Transfer-Encoding other than one chunked alone, or chunked beside a
 *                 Content-Length or in HTTP/1.0 (framing another reader could take otherwise)
 *   -EPROTO       the server sent bytes after the response it was asked for (a body longer
 *                 than its Content-Length), or switched protocols unasked (101)
 *   -EMSGSIZE     a line or the head (with the interim 1xx answers before it) is longer than
 *                 HTTP_CLIENT_HEAD_MAX, the trailer too, or the body than HTTP_CLIENT_BODY_MAX
 *   -ETIMEDOUT    the request's timeout or the caller's deadline passed
 *   -ECANCELED    the caller was cancelled
 *   -EINVAL       bad arguments (a path with a space or a control character, or too long
 *                 for a request head of HTTP_CLIENT_HEAD_MAX bytes); -ENOMEM; -EPERM outside
 *                 a task.
 * Task-only; suspends.
 */
int http_get(http_client *c, const char *path, weft_time timeout, http_response *resp);

/* Frees the body of a response and empties it. */
void http_response_free(http_response *resp);

/* Connections the client opened since it was created (for tests of reuse). */
unsigned long http_client_connections_opened(const http_client *c);

#endif
