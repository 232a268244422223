// SPDX-License-Identifier: MIT
/*
 * weft_http [--port P] [--threads T] [--idle-ms N] — the http workload of benchmarks/README.md
 * on weft: HTTP/1.1 keep-alive, one task per connection, in the listener scope of weft_serve.c.
 * A connection task reads, answers every complete request the buffer holds, in order (a
 * pipelined batch gets its responses in one write), and reads again. It parses and answers with
 * the same code as the epoll peer (io_common.h).
 *
 * Shutdown (SIGINT, SIGTERM): a connection waiting for its next request closes at once; one
 * with responses to write writes them first, in a shielded scope, and then closes.
 */
#include "io_common.h"
#include "weft_serve.h"

#include <stdint.h>

/* How long a response may take to go out once the server is shutting down: a shielded write
 * still ends on its scope's own deadline, so that a client that stopped reading cannot hold
 * the shutdown for ever. */
#define SHUTDOWN_WRITE_LIMIT (10 * WEFT_SEC)

/*
 * Writes b->out whole. A shutdown (or the idle deadline) that comes while responses are owed
 * ends the write with its code: what is left then goes out in a shielded scope, which a cancel
 * cannot end but its own deadline bounds, so that a client that stopped reading cannot hold the
 * shutdown for ever. The shield is opened only then: an ordinary response pays nothing for it.
 * 0 or a negative errno value.
 */
static int write_out(int fd, http_buf *b)
{
    size_t done = 0;
    ssize_t n = weft_send_all(fd, b->out, b->out_len, 0, &done);
    if (n == -ECANCELED || n == -ETIMEDOUT) {
        weft_scope *s;
        weft_scope_opts o = {.shield = 1, .timeout_ns = SHUTDOWN_WRITE_LIMIT};
        if (weft_scope_open(&s, &o) == 0) {
            ssize_t rest = weft_send_all(fd, b->out + done, b->out_len - done, 0, NULL);
            (void)weft_scope_close(s);
            if (rest >= 0)
                n = rest; /* owed and written: the caller closes the connection next */
        }
    }
    b->out_len = 0;
    return n < 0 ? (int)n : 0;
}

static int connection(void *arg)
{
    int fd = (int)(intptr_t)arg;
    http_buf *b = malloc(sizeof *b);
    if (b == NULL) {
        weft_close(fd);
        return 0;
    }
    b->closing = 0;
    b->in_len = b->out_len = 0;
    for (;;) {
        int more;
        do {
            more = http_answer(b);
            if (b->out_len > 0 && write_out(fd, b) != 0)
                goto done;
        } while (more);
        if (b->closing)
            break;
        /* http_answer leaves only an incomplete head, shorter than HTTP_HEAD_MAX: room. */
        ssize_t n = weft_serve_read(fd, b->in + b->in_len, sizeof b->in - b->in_len);
        if (n <= 0)
            break; /* end of stream, idle, shutdown, or an error: the connection ends */
        b->in_len += (size_t)n;
    }
done:
    weft_close(fd);
    free(b);
    return 0;
}

int main(int argc, char **argv)
{
    return weft_serve(argc, argv, "weft_http", connection);
}
