// SPDX-License-Identifier: MIT
/*
 * weft_echo [--port P] [--threads T] [--idle-ms N] — the echo workload of benchmarks/README.md
 * on weft: one task per connection, in the listener scope of weft_serve.c, that receives and
 * sends back what it received with weft_send_all, until the peer closes. Shutdown (SIGINT,
 * SIGTERM) ends every connection at its next wait: an echo has no request whose answer would
 * be owed.
 */
#include "weft_serve.h"

#include <stdint.h>

static int connection(void *arg)
{
    int fd = (int)(intptr_t)arg;
    char buf[16384];
    for (;;) {
        ssize_t n = weft_serve_read(fd, buf, sizeof buf);
        if (n <= 0)
            break; /* end of stream, idle, shutdown, or an error: the connection ends */
        if (weft_send_all(fd, buf, (size_t)n, 0, NULL) < 0)
            break;
    }
    weft_close(fd);
    return 0;
}

int main(int argc, char **argv)
{
    return weft_serve(argc, argv, "weft_echo", connection);
}
