// SPDX-License-Identifier: MIT
/*
 * What the I/O benchmark programs share (benchmarks/README.md, workloads http and echo): the
 * command line of a server, the descriptor limit, the listening socket, and the subset of
 * HTTP/1.1 the http workload speaks. weft_http and the epoll peer parse and answer with this
 * same code, so that the two differ in how they wait for sockets and nothing else.
 *
 * Header-only (static functions): the peers are built outside CMake, by one compiler call each.
 */
#ifndef WEFT_IO_COMMON_H
#define WEFT_IO_COMMON_H

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------------------------------------ */
/* Command line of a server: NAME --port P --threads T [--idle-ms N]                           */
/* ------------------------------------------------------------------------------------------ */

typedef struct io_opts {
    int port;         /* 0: any free port, printed as port=P */
    unsigned threads; /* worker threads; 0: one per CPU */
    long idle_ms;     /* a connection silent this long is closed; 0: never */
} io_opts;

static inline void io_usage(const char *prog)
{
    fprintf(stderr, "usage: %s [--port P] [--threads T] [--idle-ms N]\n", prog);
    exit(2);
}

static inline long io_number(const char *prog, const char *text, long lo, long hi)
{
    char *end;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || v < lo || v > hi) {
        fprintf(stderr, "%s: bad number '%s' (%ld..%ld)\n", prog, text, lo, hi);
        exit(2);
    }
    return v;
}

static inline void io_parse(int argc, char **argv, io_opts *o)
{
    const char *prog = argv[0];
    memset(o, 0, sizeof *o);
    for (int i = 1; i < argc; i++) {
        if (i + 1 >= argc)
            io_usage(prog);
        if (strcmp(argv[i], "--port") == 0)
            o->port = (int)io_number(prog, argv[++i], 0, 65535);
        else if (strcmp(argv[i], "--threads") == 0)
            o->threads = (unsigned)io_number(prog, argv[++i], 1, 256);
        else if (strcmp(argv[i], "--idle-ms") == 0)
            o->idle_ms = io_number(prog, argv[++i], 0, 86400000L);
        else
            io_usage(prog);
    }
    if (o->threads == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        o->threads = n > 0 ? (unsigned)n : 1;
    }
}

/* A thousand connections do not fit under the usual soft limit of 1024 descriptors. */
static inline void io_raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
            perror("setrlimit(RLIMIT_NOFILE)");
    }
}

/* Blocks SIGINT and SIGTERM, the servers' stop signals, in the calling thread and so in every
 * thread it starts after this: only the one that waits for them (sigwait, a signalfd) takes
 * them. Sets *sigs to the two. Returns pthread_sigmask's result. */
static inline int io_block_stop_signals(sigset_t *sigs)
{
    sigemptyset(sigs);
    sigaddset(sigs, SIGINT);
    sigaddset(sigs, SIGTERM);
    return pthread_sigmask(SIG_BLOCK, sigs, NULL);
}

/* A non-blocking listening socket on 127.0.0.1:port (0: any free port), its port in *bound.
 * `reuseport` lets several sockets share the port (one per thread of the epoll peers).
 * Returns the descriptor or a negative errno value. */
static inline int io_listen(int port, int reuseport, int *bound)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int one = 1;
    struct sockaddr_in a;
    socklen_t alen = sizeof a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((unsigned short)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0) ||
        bind(fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(fd, SOMAXCONN) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &alen) != 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    *bound = ntohs(a.sin_port);
    return fd;
}

/* Small responses go out as soon as they are written: no Nagle delay behind a pipelined batch. */
static inline void io_nodelay(int fd)
{
    int one = 1;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

/* ------------------------------------------------------------------------------------------ */
/* HTTP/1.1, the subset of the http workload                                                   */
/* ------------------------------------------------------------------------------------------ */

/* A request head longer than this is refused (431) and the connection closed. */
#define HTTP_HEAD_MAX 8192
/* The longest response http_respond writes, with room to spare. */
#define HTTP_RESPONSE_MAX 192

typedef struct http_req {
    int status;     /* what to answer: 200, 404, 400, 405, 431 */
    int keep_alive; /* 0: close the connection after the response */
    int http10;     /* an HTTP/1.0 request: a kept connection is said so (Connection: keep-alive) */
} http_req;

static inline int http_name_is(const char *p, size_t n, const char *name)
{
    size_t k = strlen(name);
    return n == k && strncasecmp(p, name, k) == 0;
}

/* Whether `c` ends a token in a comma-separated header value: a comma or whitespace (OWS). */
static inline int http_token_edge(char c)
{
    return c == ',' || c == ' ' || c == '\t';
}

/* Whether the comma-separated header value [p, p+n) holds the token `tok`, case-insensitively. */
static inline int http_has_token(const char *p, size_t n, const char *tok)
{
    size_t k = strlen(tok);
    for (size_t i = 0; i + k <= n; i++)
        if (strncasecmp(p + i, tok, k) == 0 && (i == 0 || http_token_edge(p[i - 1])) &&
            (i + k == n || http_token_edge(p[i + k])))
            return 1;
    return 0;
}

/* Whether the header field name [p, p+n) is a token: not empty, no whitespace or control
 * character (RFC 9112 5.1: whitespace before the colon is refused, not trimmed, or a request's
 * framing headers would mean one thing here and another to the proxy in front). */
static inline int http_name_ok(const char *p, size_t n)
{
    if (n == 0)
        return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)p[i] <= ' ' || p[i] == 0x7f)
            return 0;
    return 1;
}

/*
 * Looks for one complete request head at the start of [buf, buf+len). Returns its length
 * (through the blank line, and with the empty lines before it, which RFC 9112 2.2 lets a server
 * skip) and fills *req; 0 while the head is incomplete (and shorter than HTTP_HEAD_MAX); -1 for
 * a head too long to wait for, with req->status = 431.
 * A request with a body is answered 400 and the connection closed: the workload sends none,
 * and skipping one is more than this server needs. So is a head this parser cannot frame for
 * sure: a line not ended by CRLF (a bare CR or LF), a folded line (obs-fold), a field name
 * that is no token. Each would let a body be read as the next request.
 */
static inline long http_scan(const char *buf, size_t len, http_req *req)
{
    size_t lead = 0;
    while (lead + 2 <= len && buf[lead] == '\r' && buf[lead + 1] == '\n')
        lead += 2;
    size_t scan = len < HTTP_HEAD_MAX ? len : HTTP_HEAD_MAX;
    const char *end = scan > lead ? memmem(buf + lead, scan - lead, "\r\n\r\n", 4) : NULL;
    if (end == NULL) {
        if (len < HTTP_HEAD_MAX)
            return 0;
        req->status = 431;
        req->keep_alive = 0;
        req->http10 = 0;
        return -1;
    }
    long head = (long)(end - buf) + 4;
    const char *start = buf + lead;
    req->status = 400;
    req->keep_alive = 0;
    req->http10 = 0;

    /* Every line ends in CRLF, and no CR or LF stands anywhere else. */
    for (const char *c = start; c < end; c++)
        if ((*c == '\r' && c[1] != '\n') || (*c == '\n' && (c == start || c[-1] != '\r')))
            return head;

    /* Request line: METHOD SP TARGET SP HTTP/1.x */
    const char *eol = memchr(start, '\r', (size_t)(end + 2 - start));
    const char *sp1 = memchr(start, ' ', (size_t)(eol - start));
    if (sp1 == NULL)
        return head;
    const char *sp2 = memchr(sp1 + 1, ' ', (size_t)(eol - sp1 - 1));
    if (sp2 == NULL || eol - sp2 - 1 != 8 || memcmp(sp2 + 1, "HTTP/1.", 7) != 0 ||
        (sp2[8] != '0' && sp2[8] != '1'))
        return head;
    int http11 = sp2[8] == '1';
    int keep_alive = http11;
    int body = 0;

    for (const char *line = eol + 2; line < end; line = eol + 2) {
        eol = memchr(line, '\r', (size_t)(end + 2 - line));
        const char *colon = memchr(line, ':', (size_t)(eol - line));
        if (colon == NULL || !http_name_ok(line, (size_t)(colon - line)))
            return head; /* also a folded line, which starts with whitespace */
        const char *v = colon + 1;
        while (v < eol && (*v == ' ' || *v == '\t'))
            v++;
        size_t name_len = (size_t)(colon - line), vlen = (size_t)(eol - v);
        if (http_name_is(line, name_len, "connection")) {
            if (http_has_token(v, vlen, "close"))
                keep_alive = 0;
            else if (http_has_token(v, vlen, "keep-alive"))
                keep_alive = 1;
        } else if (http_name_is(line, name_len, "content-length")) {
            for (const char *c = v; c < eol; c++)
                if (*c != '0' && *c != ' ' && *c != '\t')
                    body = 1;
        } else if (http_name_is(line, name_len, "transfer-encoding")) {
            body = 1;
        }
    }
    if (body)
        return head;
    req->keep_alive = keep_alive;
    req->http10 = !http11;
    if (sp1 - start != 3 || memcmp(start, "GET", 3) != 0)
        req->status = 405;
    else if (sp2 - sp1 - 1 != 1 || sp1[1] != '/')
        req->status = 404;
    else
        req->status = 200;
    return head;
}

/* "Sun, 06 Nov 1994 08:49:37 GMT" (RFC 9110's IMF-fixdate): 29 characters. */
#define HTTP_DATE_LEN 29

/* The Date header's value, formatted once per second per thread. A task may call it: the
 * thread-local cache is read and written without a suspension point in between, and the
 * function is not inlined, so no caller keeps the cache's address across one. */
__attribute__((noinline, unused)) static const char *http_date(void)
{
    static _Thread_local time_t cached_sec = -1;
    static _Thread_local char cached[HTTP_DATE_LEN + 1];
    struct timespec now;
    clock_gettime(CLOCK_REALTIME_COARSE, &now);
    if (now.tv_sec != cached_sec) {
        struct tm tm;
        gmtime_r(&now.tv_sec, &tm);
        strftime(cached, sizeof cached, "%a, %d %b %Y %H:%M:%S GMT", &tm);
        cached_sec = now.tv_sec;
    }
    return cached;
}

/* Appends the response to `req` at `out` (HTTP_RESPONSE_MAX bytes of room); returns its length. */
static inline size_t http_respond(char *out, const http_req *req)
{
    static const char ok_head[] = "HTTP/1.1 200 OK\r\nDate: ";
    static const char ok_tail[] =
        "\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\nHello, World!";
    if (req->status == 200 && req->keep_alive && !req->http10) {
        /* The workload's every request: no formatting beyond the cached date. */
        memcpy(out, ok_head, sizeof ok_head - 1);
        memcpy(out + sizeof ok_head - 1, http_date(), HTTP_DATE_LEN);
        memcpy(out + sizeof ok_head - 1 + HTTP_DATE_LEN, ok_tail, sizeof ok_tail - 1);
        return sizeof ok_head - 1 + HTTP_DATE_LEN + sizeof ok_tail - 1;
    }
    const char *reason, *body;
    switch (req->status) {
    case 200:
        reason = "OK";
        body = "Hello, World!";
        break;
    case 404:
        reason = "Not Found";
        body = "Not Found";
        break;
    case 405:
        reason = "Method Not Allowed";
        body = "Method Not Allowed";
        break;
    case 431:
        reason = "Request Header Fields Too Large";
        body = "Too Large";
        break;
    default:
        reason = "Bad Request";
        body = "Bad Request";
        break;
    }
    int n = snprintf(out, HTTP_RESPONSE_MAX,
                     "HTTP/1.1 %d %s\r\nDate: %s\r\nContent-Type: text/plain\r\n"
                     "Content-Length: %zu\r\n%s\r\n%s",
                     req->status, reason, http_date(), strlen(body),
                     !req->keep_alive ? "Connection: close\r\n"
                     : req->http10    ? "Connection: keep-alive\r\n"
                                      : "",
                     body);
    return n < HTTP_RESPONSE_MAX ? (size_t)n : HTTP_RESPONSE_MAX - 1;
}

/* A connection's bytes: requests read and not yet answered, responses not yet written. */
typedef struct http_buf {
    int closing;    /* the last response is in `out`: close once it is written */
    size_t in_len;  /* bytes of `in` not yet answered */
    size_t out_len; /* bytes of `out` filled */
    char in[16384]; /* at least twice HTTP_HEAD_MAX: a full buffer always holds a whole head,
                     * or the start of one too long to wait for */
    char out[16384];
} http_buf;

/*
 * Answers the complete requests at the start of `in`, in order, appending the responses to
 * `out`, and keeps the bytes of an incomplete one. Returns 1 when it stopped for lack of room
 * in `out` with requests left (write `out`, then call it again), else 0. Sets `closing` after a
 * response that ends the connection, and answers nothing after it.
 */
static inline int http_answer(http_buf *b)
{
    size_t off = 0;
    int more = 0;
    while (!b->closing) {
        if (sizeof b->out - b->out_len < HTTP_RESPONSE_MAX) {
            more = 1;
            break;
        }
        http_req req;
        long k = http_scan(b->in + off, b->in_len - off, &req);
        if (k == 0)
            break;
        b->out_len += http_respond(b->out + b->out_len, &req);
        if (k < 0 || !req.keep_alive) {
            b->closing = 1;
            break;
        }
        off += (size_t)k;
    }
    if (off > 0) {
        memmove(b->in, b->in + off, b->in_len - off);
        b->in_len -= off;
    }
    return more;
}

/* ---- connections driven by readiness (the epoll peers, io_uring's poll variant) ---------- */

/* Writes b->out from *off on. Returns 0 (all of it, or the socket is full: *off says how far)
 * or -1 (close). */
static inline int http_flush_ready(int fd, http_buf *b, size_t *off)
{
    while (*off < b->out_len) {
        ssize_t n = send(fd, b->out + *off, b->out_len - *off, MSG_NOSIGNAL);
        if (n > 0) {
            *off += (size_t)n;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else {
            return n < 0 && errno == EAGAIN ? 0 : -1;
        }
    }
    *off = b->out_len = 0;
    return 0;
}

/* Runs an HTTP connection as far as it goes without waiting: answer, write, read, until a read
 * or a write would block (the next edge calls it again). Returns 0, or -1 to close. */
static inline int http_run_ready(int fd, http_buf *b, size_t *off)
{
    for (;;) {
        int more = http_answer(b);
        if (http_flush_ready(fd, b, off) < 0)
            return -1;
        if (b->out_len > 0)
            return 0; /* the socket is full: its next edge comes back */
        if (b->closing)
            return -1;
        if (more)
            continue;
        /* A full b->in always holds a whole head or one too long, which http_answer took:
         * there is room to read. */
        ssize_t n = recv(fd, b->in + b->in_len, sizeof b->in - b->in_len, 0);
        if (n > 0)
            b->in_len += (size_t)n;
        else if (n == 0)
            return -1;
        else if (errno == EAGAIN)
            return 0;
        else if (errno != EINTR)
            return -1;
    }
}

/* Echoes until a read or a write would block: buf[*off, *len) is what was read and not yet
 * written back, `cap` the buffer's size. Returns 0, or -1 to close. */
static inline int echo_run_ready(int fd, char *buf, size_t cap, size_t *off, size_t *len)
{
    for (;;) {
        while (*off < *len) {
            ssize_t n = send(fd, buf + *off, *len - *off, MSG_NOSIGNAL);
            if (n > 0)
                *off += (size_t)n;
            else if (n < 0 && errno == EAGAIN)
                return 0; /* its next edge comes back */
            else if (n < 0 && errno == EINTR)
                continue;
            else
                return -1;
        }
        ssize_t n = recv(fd, buf, cap, 0);
        if (n > 0) {
            *off = 0;
            *len = (size_t)n;
        } else if (n == 0) {
            return -1;
        } else if (errno == EAGAIN) {
            return 0;
        } else if (errno != EINTR) {
            return -1;
        }
    }
}

#endif
