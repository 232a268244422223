// SPDX-License-Identifier: MIT
/*
 * Cleanup on cancellation, with a wait that the cancel must not cut short:
 *
 *     try:
 *         await serve(session)
 *     except asyncio.CancelledError:
 *         await asyncio.shield(session.say_goodbye())   # tell the peer, wait for its ack
 *         raise
 *
 * A cancelled task sees -ECANCELED at every wait; cleanup that must itself wait (tell the peer
 * and read its acknowledgement, flush a log) runs in a shielded scope, where the ancestors'
 * cancel does not reach. A shield always carries a timeout of its own: it is the only thing
 * that bounds it, and a runtime's shutdown waits for it too. Once the shield is closed, the
 * cancel is seen again and the task ends with it.
 *
 * Here a session task reads requests from a peer over a socket pair; the session is
 * cancelled; its cleanup writes "BYE" and waits for the peer's "ACK".
 */
#include "example.h"
#include "weft.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>

typedef struct session {
    int fd;
    int served;        /* requests answered before the cancel */
    int cleanup_rc;    /* 0 once the peer acknowledged the goodbye */
    int after_shield;  /* what the first wait after the shield returned */
    weft_event *ready; /* set once the session has answered a request */
} session;

/* The goodbye: write BYE, wait for ACK. Both are waits, fine in a shield. */
static int say_goodbye(int fd)
{
    weft_scope *shield;
    int rc = weft_scope_open(&shield, &(weft_scope_opts){.shield = 1, .timeout_ns = WEFT_SEC});
    if (rc != 0)
        return rc;
    char ack[4] = {0};
    ssize_t n = weft_write_all(fd, "BYE\n", 4, NULL);
    if (n == 4)
        n = weft_read(fd, ack, 4);
    weft_scope_close(shield);
    if (n < 0)
        return (int)n;
    return n == 4 && memcmp(ack, "ACK\n", 4) == 0 ? 0 : -EPROTO;
}

static int serve(void *arg)
{
    session *s = arg;
    char req[4];
    ssize_t n;
    /* The cancel may come in either wait, the read of a request or the write of its answer:
     * `n` keeps whichever failed. */
    while ((n = weft_read(s->fd, req, sizeof req)) == 4) {
        if ((n = weft_write_all(s->fd, "OK!\n", 4, NULL)) < 0)
            break;
        s->served++;
        weft_event_set(s->ready);
    }
    if (n == -ECANCELED) {
        s->cleanup_rc = say_goodbye(s->fd);
        s->after_shield = weft_checkpoint(); /* the cancel is back */
    }
    return n < 0 ? (int)n : 0;
}

/* The peer: sends one request, then answers the goodbye. Not cancelled. */
static int peer(void *arg)
{
    int fd = *(int *)arg;
    char buf[4];
    if (weft_write_all(fd, "GET\n", 4, NULL) != 4 || weft_read(fd, buf, 4) != 4)
        return -EIO;
    if (weft_read(fd, buf, 4) != 4 || memcmp(buf, "BYE\n", 4) != 0)
        return -EPROTO;
    return weft_write_all(fd, "ACK\n", 4, NULL) == 4 ? 0 : -EIO;
}

static int main_task(void *arg)
{
    (void)arg;
    int sv[2];
    EXPECT(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) == 0);
    session s = {.fd = sv[0]};
    EXPECT(weft_event_create(&s.ready) == 0);

    weft_scope *peers, *sessions;
    EXPECT(weft_scope_open(&peers, NULL) == 0);
    EXPECT(weft_spawn(peers, peer, &sv[1]) == 0);
    EXPECT(weft_scope_open(&sessions, NULL) == 0);
    EXPECT(weft_spawn(sessions, serve, &s) == 0);

    EXPECT(weft_event_wait(s.ready) == 0); /* the session is serving */
    weft_scope_cancel(sessions);           /* e.g. the server shuts down */
    int rc = weft_scope_close(sessions);
    int peer_rc = weft_scope_close(peers);

    printf("session: served %d, cleanup %d, after the shield %d, join %d; peer %d\n", s.served,
           s.cleanup_rc, s.after_shield, rc, peer_rc);
    EXPECT(s.served == 1);
    EXPECT(s.cleanup_rc == 0);            /* the goodbye went through despite the cancel */
    EXPECT(s.after_shield == -ECANCELED); /* and the cancel was not lost */
    EXPECT(rc == -ECANCELED);
    EXPECT(peer_rc == 0);
    weft_close(sv[0]);
    weft_close(sv[1]);
    EXPECT(weft_event_destroy(s.ready) == 0);
    return 0;
}

int main(void)
{
    EXPECT(weft_run(NULL, main_task, NULL) == 0);
    printf("shielded_cleanup: ok\n");
    return 0;
}
