// SPDX-License-Identifier: MIT
/*
 * The HTTP/1.1 client of the examples (http_client.h).
 *
 * A request runs in a scope of its own whose timeout is the request's: every wait inside it
 * (the pool's token, the connect, each read and write) parks on weft's waits and ends with
 * -ETIMEDOUT when that timeout or an enclosing deadline passes, or -ECANCELED when the caller
 * is cancelled. Nothing here polls the clock.
 *
 * The pool: a semaphore of `max_conns` tokens bounds the connections in use, and a stack of
 * idle descriptors holds the ones given back. The stack's lock is a plain mutex, held for a few
 * instructions and never across a suspension point, so a task takes and drops it on the same
 * OS thread.
 */
#include "http_client.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

struct http_client {
    struct sockaddr_in addr;
    char host[64]; /* the Host header's value */
    weft_sem *tokens;
    pthread_mutex_t lock; /* guards idle[] and n_idle */
    int *idle;
    unsigned n_idle;
    atomic_ulong opened;
};

int http_client_create(http_client **out, const char *host, int port, unsigned max_conns)
{
    if (out == NULL || host == NULL || port <= 0 || port > 65535 || max_conns == 0 ||
        max_conns > 1024)
        return -EINVAL;
    http_client *c = calloc(1, sizeof *c);
    if (c == NULL)
        return -ENOMEM;
    c->addr.sin_family = AF_INET;
    c->addr.sin_port = htons((unsigned short)port);
    if (inet_pton(AF_INET, host, &c->addr.sin_addr) != 1) {
        free(c);
        return -EINVAL;
    }
    snprintf(c->host, sizeof c->host, "%s:%d", host, port);
    c->idle = calloc(max_conns, sizeof *c->idle);
    int rc = c->idle ? weft_sem_create(&c->tokens, max_conns) : -ENOMEM;
    if (rc != 0) {
        free(c->idle);
        free(c);
        return rc;
    }
    pthread_mutex_init(&c->lock, NULL);
    *out = c;
    return 0;
}

void http_client_destroy(http_client *c)
{
    if (c == NULL)
        return;
    for (unsigned i = 0; i < c->n_idle; i++)
        weft_close(c->idle[i]);
    pthread_mutex_destroy(&c->lock);
    weft_sem_destroy(c->tokens);
    free(c->idle);
    free(c);
}

unsigned long http_client_connections_opened(const http_client *c)
{
    return atomic_load(&c->opened);
}

void http_response_free(http_response *resp)
{
    if (resp == NULL)
        return;
    free(resp->body);
    memset(resp, 0, sizeof *resp);
}

/* ------------------------------------------------------------------------------------------ */
/* The pool                                                                                    */
/* ------------------------------------------------------------------------------------------ */

/* What an idle connection holds, seen without waiting: nothing (it can carry a request), the
 * end of the stream or an error (the server closed it), or bytes nobody asked for. */
enum idle_state { IDLE_OPEN, IDLE_CLOSED, IDLE_UNASKED };

static enum idle_state idle_state(int fd)
{
    char byte;
    ssize_t n = recv(fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n > 0)
        return IDLE_UNASKED;
    return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) ? IDLE_OPEN : IDLE_CLOSED;
}

/* An idle connection, or -1. */
static int pool_take(http_client *c)
{
    for (;;) {
        int fd = -1;
        pthread_mutex_lock(&c->lock);
        if (c->n_idle > 0)
            fd = c->idle[--c->n_idle];
        pthread_mutex_unlock(&c->lock);
        if (fd < 0 || idle_state(fd) == IDLE_OPEN)
            return fd;
        weft_close(fd);
    }
}

/* The caller holds a token, so there is room: at most max_conns connections exist. */
static void pool_put(http_client *c, int fd)
{
    pthread_mutex_lock(&c->lock);
    c->idle[c->n_idle++] = fd;
    pthread_mutex_unlock(&c->lock);
}

static int connect_new(http_client *c)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int one = 1;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    int rc = weft_connect(fd, (const struct sockaddr *)&c->addr, sizeof c->addr);
    if (rc != 0) {
        weft_close(fd);
        return rc;
    }
    atomic_fetch_add(&c->opened, 1);
    return fd;
}

/* ------------------------------------------------------------------------------------------ */
/* Reading a response                                                                          */
/* ------------------------------------------------------------------------------------------ */

#define READ_BUF (2 * HTTP_CLIENT_HEAD_MAX)

typedef struct reader {
    int fd;
    size_t pos, len; /* unread bytes are buf[pos, len) */
    size_t received; /* bytes read from the connection in all */
    char buf[READ_BUF];
} reader;

/* Reads more bytes after the unread ones. 0; -ECONNRESET at the end of the stream. */
static int fill(reader *r)
{
    if (r->pos > 0) {
        memmove(r->buf, r->buf + r->pos, r->len - r->pos);
        r->len -= r->pos;
        r->pos = 0;
    }
    ssize_t n = weft_read(r->fd, r->buf + r->len, sizeof r->buf - r->len);
    if (n < 0)
        return (int)n;
    if (n == 0)
        return -ECONNRESET; /* the server closed before the response was complete */
    r->len += (size_t)n;
    r->received += (size_t)n;
    return 0;
}

/* The next line, without its end, at *line (valid until the next read); *taken: the bytes it
 * took from the stream, its end included. A line ends with CRLF, or a bare LF, which a
 * recipient may take for one (RFC 9112, 2.2). -EMSGSIZE for a line longer than
 * HTTP_CLIENT_HEAD_MAX, however its bytes arrive. */
static int read_line(reader *r, char **line, size_t *n, size_t *taken)
{
    for (;;) {
        char *start = r->buf + r->pos;
        char *lf = memchr(start, '\n', r->len - r->pos);
        if (lf != NULL) {
            *taken = (size_t)(lf - start) + 1;
            if (*taken > HTTP_CLIENT_HEAD_MAX)
                return -EMSGSIZE;
            *line = start;
            *n = (size_t)(lf - start) - (lf > start && lf[-1] == '\r');
            r->pos += *taken;
            return 0;
        }
        if (r->len - r->pos >= HTTP_CLIENT_HEAD_MAX)
            return -EMSGSIZE;
        int rc = fill(r);
        if (rc != 0)
            return rc;
    }
}

/* Appends `n` body bytes to resp->body. */
static int read_body(reader *r, http_response *resp, size_t *cap, size_t n)
{
    if (n > HTTP_CLIENT_BODY_MAX - resp->body_len)
        return -EMSGSIZE;
    if (resp->body_len + n + 1 > *cap) {
        size_t want = *cap ? *cap : 256;
        while (want < resp->body_len + n + 1)
            want *= 2;
        char *grown = realloc(resp->body, want);
        if (grown == NULL)
            return -ENOMEM;
        resp->body = grown;
        *cap = want;
    }
    while (n > 0) {
        if (r->pos == r->len) {
            int rc = fill(r);
            if (rc != 0)
                return rc;
        }
        size_t k = r->len - r->pos < n ? r->len - r->pos : n;
        memcpy(resp->body + resp->body_len, r->buf + r->pos, k);
        resp->body_len += k;
        r->pos += k;
        n -= k;
    }
    return 0;
}

/* A body that runs to the end of the stream (no length given; the server then closes). */
static int read_to_eof(reader *r, http_response *resp, size_t *cap)
{
    for (;;) {
        size_t k = r->len - r->pos;
        if (k > 0) {
            int rc = read_body(r, resp, cap, k);
            if (rc != 0)
                return rc;
        }
        ssize_t n = weft_read(r->fd, r->buf, sizeof r->buf);
        if (n <= 0)
            return (int)n;
        r->pos = 0;
        r->len = (size_t)n;
        r->received += (size_t)n;
    }
}

/* The syntax of a field line (name ":" value): 0, or -EBADMSG; *name_len: the name's length. */
static int field_syntax(const char *line, size_t n, size_t *name_len)
{
    const char *colon = memchr(line, ':', n);
    if (colon == NULL || colon == line)
        return -EBADMSG;
    for (const char *p = line; p < colon; p++)
        if (!isgraph((unsigned char)*p))
            return -EBADMSG; /* no spaces in a field name */
    *name_len = (size_t)(colon - line);
    return 0;
}

static int read_chunked(reader *r, http_response *resp, size_t *cap)
{
    size_t taken;
    for (;;) {
        char *line;
        size_t n;
        int rc = read_line(r, &line, &n, &taken);
        if (rc != 0)
            return rc == -EMSGSIZE ? -EBADMSG : rc; /* a chunk-size line that never ends */
        size_t size = 0, digits = 0;
        for (; digits < n && isxdigit((unsigned char)line[digits]); digits++) {
            if (size > HTTP_CLIENT_BODY_MAX)
                return -EMSGSIZE;
            int d = line[digits];
            size = size * 16 + (size_t)(isdigit(d) ? d - '0' : (tolower(d) - 'a' + 10));
        }
        if (digits == 0 || (digits < n && line[digits] != ';' && line[digits] != ' '))
            return -EBADMSG;
        if (size == 0)
            break;
        rc = read_body(r, resp, cap, size);
        if (rc == 0) {
            rc = read_line(r, &line, &n, &taken);
            if (rc == -EMSGSIZE || (rc == 0 && n != 0))
                rc = -EBADMSG; /* the chunk was longer than its size said */
        }
        if (rc != 0)
            return rc;
    }
    /* Trailer fields, up to the blank line: checked, not kept, and as bounded as a head. */
    for (size_t trailer_len = 0;;) {
        char *line;
        size_t n, name_len;
        int rc = read_line(r, &line, &n, &taken);
        if (rc != 0)
            return rc;
        if (n == 0)
            return 0;
        trailer_len += taken;
        if (trailer_len > HTTP_CLIENT_HEAD_MAX)
            return -EMSGSIZE;
        if (field_syntax(line, n, &name_len) != 0)
            return -EBADMSG;
    }
}

/* Copies a header value into a fixed field, truncated. */
static void copy_value(char *dst, size_t cap, const char *v, size_t n)
{
    if (n >= cap)
        n = cap - 1;
    memcpy(dst, v, n);
    dst[n] = '\0';
}

/* Whether a list value (`a, b`: commas, with spaces or tabs around them) holds `tok`. */
static int has_token(const char *v, size_t n, const char *tok)
{
    size_t k = strlen(tok);
    for (size_t i = 0; i + k <= n; i++)
        if (strncasecmp(v + i, tok, k) == 0 &&
            (i == 0 || v[i - 1] == ',' || v[i - 1] == ' ' || v[i - 1] == '\t') &&
            (i + k == n || v[i + k] == ',' || v[i + k] == ' ' || v[i + k] == '\t'))
            return 1;
    return 0;
}

/* Whether text from the server holds a control character (a tab aside): NUL, a bare CR, ...
 * A value holding one is malformed (RFC 9110, 5.5), and copied into a C string a NUL would cut
 * it short unseen. */
static int has_control(const char *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (((unsigned char)v[i] < 0x20 && v[i] != '\t') || v[i] == 0x7f)
            return 1;
    return 0;
}

typedef struct head {
    int http11;
    int keep_alive;
    int close; /* a Connection field said close: no other field takes it back */
    int chunked;
    long long length; /* -1: not given */
} head;

/* The status line: HTTP/1.x SP 3DIGIT [SP reason]. */
static int parse_status(const char *line, size_t n, http_response *resp, head *h)
{
    if (n < 12 || memcmp(line, "HTTP/1.", 7) != 0 || (line[7] != '0' && line[7] != '1') ||
        line[8] != ' ' || !isdigit((unsigned char)line[9]) || !isdigit((unsigned char)line[10]) ||
        !isdigit((unsigned char)line[11]) || (n > 12 && line[12] != ' '))
        return -EBADMSG;
    resp->status = (line[9] - '0') * 100 + (line[10] - '0') * 10 + (line[11] - '0');
    if (resp->status < 100 || resp->status > 599)
        return -EBADMSG;
    h->http11 = line[7] == '1';
    if (has_control(line + 12, n - 12))
        return -EBADMSG;
    if (n > 13)
        copy_value(resp->reason, sizeof resp->reason, line + 13, n - 13);
    return 0;
}

static int parse_field(const char *line, size_t n, http_response *resp, head *h)
{
    size_t name;
    if (field_syntax(line, n, &name) != 0)
        return -EBADMSG;
    const char *v = line + name + 1, *end = line + n;
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    while (end > v && (end[-1] == ' ' || end[-1] == '\t'))
        end--;
    size_t vn = (size_t)(end - v);
    if (has_control(v, vn))
        return -EBADMSG;
    if (name == 14 && strncasecmp(line, "content-length", 14) == 0) {
        if (vn == 0)
            return -EBADMSG;
        long long len = 0;
        for (const char *p = v; p < end; p++) {
            if (!isdigit((unsigned char)*p))
                return -EBADMSG;
            if (len > (long long)HTTP_CLIENT_BODY_MAX)
                return -EMSGSIZE;
            len = len * 10 + (*p - '0');
        }
        if (h->length >= 0 && h->length != len)
            return -EBADMSG; /* two lengths that disagree */
        h->length = len;
    } else if (name == 17 && strncasecmp(line, "transfer-encoding", 17) == 0) {
        if (vn != 7 || strncasecmp(v, "chunked", 7) != 0 || h->chunked)
            return -EBADMSG; /* no other coding is spoken here, alone, before or after chunked */
        h->chunked = 1;
    } else if (name == 10 && strncasecmp(line, "connection", 10) == 0) {
        if (has_token(v, vn, "close"))
            h->close = 1;
        else if (has_token(v, vn, "keep-alive"))
            h->keep_alive = 1;
    } else if (name == 12 && strncasecmp(line, "content-type", 12) == 0) {
        copy_value(resp->content_type, sizeof resp->content_type, v, vn);
    }
    return 0;
}

/* Reads one whole response. *keep says whether the connection may carry another request. */
static int read_response(reader *r, http_response *resp, int *keep)
{
    head h;
    char *line;
    size_t n, taken;
    int rc;
    /* Interim 1xx answers are skipped; with them, the head may hold HTTP_CLIENT_HEAD_MAX bytes
     * in all (many short lines, or many interim answers, are as long a head as one long line). */
    size_t head_len = 0;
    do {
        memset(&h, 0, sizeof h);
        h.length = -1;
        resp->content_type[0] = '\0';
        resp->reason[0] = '\0';
        if ((rc = read_line(r, &line, &n, &taken)) != 0)
            return rc;
        if ((head_len += taken) > HTTP_CLIENT_HEAD_MAX)
            return -EMSGSIZE;
        if ((rc = parse_status(line, n, resp, &h)) != 0)
            return rc;
        if (resp->status == 101)
            return -EPROTO; /* a switch of protocols nobody asked for */
        h.keep_alive = h.http11;
        for (;;) {
            if ((rc = read_line(r, &line, &n, &taken)) != 0)
                return rc;
            if ((head_len += taken) > HTTP_CLIENT_HEAD_MAX)
                return -EMSGSIZE;
            if (n == 0)
                break;
            if ((rc = parse_field(line, n, resp, &h)) != 0)
                return rc;
        }
    } while (resp->status < 200);
    if (h.close)
        h.keep_alive = 0;
    /* Framing the two ends may read differently, the way responses are smuggled: chunks and a
     * length at once, or chunks in HTTP/1.0, which has none (RFC 9112, 6.1 and 6.3). */
    if (h.chunked && (h.length >= 0 || !h.http11))
        return -EBADMSG;

    size_t cap = 0;
    rc = read_body(r, resp, &cap, 0); /* a body of 0 bytes is still a string */
    if (rc == 0) {
        if (resp->status == 204 || resp->status == 304)
            ;
        else if (h.chunked)
            rc = read_chunked(r, resp, &cap);
        else if (h.length >= 0)
            rc = read_body(r, resp, &cap, (size_t)h.length);
        else {
            h.keep_alive = 0;
            rc = read_to_eof(r, resp, &cap);
        }
    }
    if (rc != 0)
        return rc;
    resp->body[resp->body_len] = '\0';
    /* One request, one response: anything more is a server that sent more than it said. A
     * server may close a connection after any response, said or not: then it is not reused. */
    enum idle_state after = h.keep_alive ? idle_state(r->fd) : IDLE_CLOSED;
    if (r->pos != r->len || after == IDLE_UNASKED)
        return -EPROTO;
    *keep = after == IDLE_OPEN;
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* A request                                                                                   */
/* ------------------------------------------------------------------------------------------ */

/* The request head for `path`, as exchange writes it. */
#define REQUEST_FORMAT "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n"

/* The length of that head; at least HTTP_CLIENT_HEAD_MAX when too long to send. */
static size_t request_length(const http_client *c, const char *path)
{
    size_t n = strnlen(path, HTTP_CLIENT_HEAD_MAX);
    return n + strlen(c->host) + sizeof REQUEST_FORMAT - 1 - 4; /* less the two %s */
}

/* One request on `fd`. *received: response bytes read (0 tells a stale keep-alive connection,
 * which the server closed while it was idle, from a failure worth reporting). */
static int exchange(http_client *c, int fd, const char *path, http_response *resp, int *keep,
                    size_t *received)
{
    char req[HTTP_CLIENT_HEAD_MAX];
    int n = snprintf(req, sizeof req, REQUEST_FORMAT, path, c->host);
    if (n < 0 || (size_t)n >= sizeof req)
        return -EINVAL;
    ssize_t w = weft_send_all(fd, req, (size_t)n, 0, NULL);
    if (w < 0)
        return (int)w;
    reader *r = malloc(sizeof *r);
    if (r == NULL)
        return -ENOMEM;
    r->fd = fd;
    r->pos = r->len = r->received = 0;
    int rc = read_response(r, resp, keep);
    *received = r->received;
    free(r);
    return rc;
}

static int get_with_token(http_client *c, const char *path, http_response *resp)
{
    for (int attempt = 0;; attempt++) {
        /* A retry goes over a new connection: the other idle ones may be as stale. */
        int fd = attempt == 0 ? pool_take(c) : -1;
        int reused = fd >= 0;
        if (fd < 0 && (fd = connect_new(c)) < 0)
            return fd;
        int keep = 0;
        size_t received = 0;
        int rc = exchange(c, fd, path, resp, &keep, &received);
        if (rc == 0 && keep) {
            pool_put(c, fd);
            return 0;
        }
        weft_close(fd);
        if (rc == 0)
            return 0;
        http_response_free(resp);
        /* A keep-alive connection the server closed just as it was reused: GET is idempotent,
         * so once more on a new connection. */
        if (reused && received == 0 && attempt == 0 && (rc == -ECONNRESET || rc == -EPIPE))
            continue;
        return rc;
    }
}

int http_get(http_client *c, const char *path, weft_time timeout, http_response *resp)
{
    if (resp != NULL)
        memset(resp, 0, sizeof *resp);
    if (c == NULL || path == NULL || path[0] != '/' || resp == NULL || timeout < 0)
        return -EINVAL;
    for (const char *p = path; *p; p++)
        if (!isgraph((unsigned char)*p))
            return -EINVAL; /* a space or a CR in the target would forge the request */
    if (request_length(c, path) >= HTTP_CLIENT_HEAD_MAX)
        return -EINVAL; /* refused before it takes a token or a connection */

    /* The request's own scope: its timeout bounds every wait below, and an enclosing deadline
     * or cancel still reaches them. */
    weft_scope *s;
    int rc = weft_scope_open(&s, &(weft_scope_opts){.name = "http_get", .timeout_ns = timeout});
    if (rc != 0)
        return rc;
    rc = weft_sem_acquire(c->tokens);
    if (rc == 0) {
        rc = get_with_token(c, path, resp);
        weft_sem_release(c->tokens);
    }
    /* The scope has no children: its join reports only its own timeout or a cancel, which the
     * waits above have seen already. A response read whole is kept even if the timeout passed
     * just after. */
    (void)weft_scope_close(s);
    return rc;
}
