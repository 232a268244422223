// SPDX-License-Identifier: MIT
/*
 * An echo server: a listener that accepts, and a task per connection.
 *
 *     async def handle(reader, writer):
 *         while data := await reader.read(4096):
 *             writer.write(data); await writer.drain()
 *         writer.close()
 *
 *     server = await asyncio.start_server(handle, "127.0.0.1", 0)
 *     ...
 *     server.close(); await server.wait_closed()
 *
 * The connections live in the listener's scope (COLLECT: one broken connection does not take
 * the others down). Cancelling that scope stops the accept loop and wakes every connection
 * parked in a read, which then closes its socket; the scope's join waits for all of them.
 * Clients in the same program connect, send lines and check every echo.
 */
#include "example.h"
#include "weft.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define CLIENTS 16
#define LINES 50

static atomic_int connections;

static int handle(void *arg)
{
    int fd = (int)(intptr_t)arg;
    atomic_fetch_add(&connections, 1);
    char buf[4096];
    ssize_t n;
    while ((n = weft_read(fd, buf, sizeof buf)) > 0)
        if (weft_write_all(fd, buf, (size_t)n, NULL) < 0)
            break;
    weft_close(fd);
    return 0; /* a connection that ended is no failure of the server */
}

typedef struct server {
    int lfd;
    weft_scope *conns;
} server;

/* The accept loop; ends when the listener's scope is cancelled. A connection the client gave up
 * before it was taken is skipped; a lack of descriptors or memory is waited out (connections
 * that end give them back), not taken for the end of the server, whose listener would stay open
 * and answer no one. */
static int serve(void *arg)
{
    server *srv = arg;
    for (;;) {
        int fd = weft_accept(srv->lfd, NULL, NULL);
        if (fd == -ECANCELED || fd == -ETIMEDOUT)
            return 0;
        if (fd == -ECONNABORTED || fd == -EPROTO)
            continue;
        if (fd == -EMFILE || fd == -ENFILE || fd == -ENOBUFS || fd == -ENOMEM) {
            int rc = weft_sleep_for(10 * WEFT_MSEC);
            if (rc)
                return 0; /* cancelled while it waited */
            continue;
        }
        if (fd < 0)
            return weft_fail(fd, "accept: %s", strerror(-fd));
        if (weft_spawn(srv->conns, handle, (void *)(intptr_t)fd) != 0)
            weft_close(fd);
    }
}

typedef struct client {
    int port;
    int id;
    int echoed; /* lines that came back intact */
} client;

static int run_client(void *arg)
{
    client *c = arg;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((unsigned short)c->port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int rc = weft_connect(fd, (struct sockaddr *)&a, sizeof a);
    for (int i = 0; rc == 0 && i < LINES; i++) {
        char line[64], back[sizeof line];
        int len = snprintf(line, sizeof line, "client %d line %d\n", c->id, i);
        if (len < 0 || (size_t)len >= sizeof line)
            len = (int)sizeof line - 1; /* cut short: snprintf says what it would have written */
        ssize_t n = weft_write_all(fd, line, (size_t)len, NULL);
        size_t got = 0;
        while (n >= 0 && got < (size_t)len &&
               (n = weft_read(fd, back + got, sizeof back - got)) > 0)
            got += (size_t)n;
        if (n <= 0)
            rc = n < 0 ? (int)n : -ECONNRESET;
        else if (got == (size_t)len && memcmp(line, back, got) == 0)
            c->echoed++;
    }
    weft_close(fd);
    return rc;
}

static int main_task(void *arg)
{
    (void)arg;
    server srv;
    srv.lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof a;
    EXPECT(srv.lfd >= 0 && bind(srv.lfd, (struct sockaddr *)&a, sizeof a) == 0 &&
           listen(srv.lfd, 128) == 0 && getsockname(srv.lfd, (struct sockaddr *)&a, &alen) == 0);

    weft_scope *listener;
    EXPECT(weft_scope_open(&listener, &(weft_scope_opts){.policy = WEFT_COLLECT}) == 0);
    srv.conns = listener;
    EXPECT(weft_spawn(listener, serve, &srv) == 0);

    client clients[CLIENTS];
    weft_scope *cs;
    EXPECT(weft_scope_open(&cs, NULL) == 0);
    for (int i = 0; i < CLIENTS; i++) {
        clients[i] = (client){.port = ntohs(a.sin_port), .id = i};
        EXPECT(weft_spawn(cs, run_client, &clients[i]) == 0);
    }
    int clients_rc = weft_scope_close(cs);

    weft_scope_cancel(listener); /* server.close() */
    int server_rc = weft_scope_join(listener);
    size_t server_failures = weft_scope_error_count(listener);
    weft_scope_release(listener);
    weft_close(srv.lfd);

    int echoed = 0;
    for (int i = 0; i < CLIENTS; i++)
        echoed += clients[i].echoed;
    printf("%d clients, %d connections served, %d of %d lines echoed; clients %d, server %d\n",
           CLIENTS, atomic_load(&connections), echoed, CLIENTS * LINES, clients_rc, server_rc);
    EXPECT(clients_rc == 0);
    EXPECT(server_rc == -ECANCELED); /* it ran until it was cancelled */
    EXPECT(server_failures == 0);
    EXPECT(atomic_load(&connections) == CLIENTS);
    EXPECT(echoed == CLIENTS * LINES);
    return 0;
}

int main(void)
{
    EXPECT(weft_run(NULL, main_task, NULL) == 0);
    printf("echo_server: ok\n");
    return 0;
}
