// SPDX-License-Identifier: MIT
/*
 * The skeleton of weft's servers (weft_serve.h).
 *
 * The scopes: the root task opens `top`, which holds the task that waits for a signal, and in
 * it `listener`, which holds one task per connection. The root itself runs the accept loop
 * inside `listener`, so that its waits see the listener's cancel. A signal cancels `listener`:
 * the accept ends, every connection task parked in a read wakes with -ECANCELED and closes its
 * connection, and one that is writing a response finishes it first (weft_http writes in a
 * shielded scope). The join of `listener` waits for all of them; then `top` is cancelled to
 * stop the signal task, if the listener ended for another reason (an error of accept, which
 * cancels `listener` as well).
 *
 * Signals arrive on a signalfd that a task reads with weft_read: SIGINT and SIGTERM are blocked
 * before weft_run starts its workers, which inherit the mask, so that no handler ever runs on a
 * worker and no weft call is made from one.
 */
#include "weft_serve.h"

#include "io_common.h"

#include <signal.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/signalfd.h>

typedef struct server {
    const char *name;
    weft_fn conn;
    int lfd;
    int sfd;
    weft_time idle; /* 0: no idle timeout */
    weft_scope *listener;
    int signalled; /* set by the signal task before it cancels `listener` */
} server;

static server srv;

/* The idle scope of each open connection, by descriptor (a descriptor names one connection
 * while it is open): a connection task runs in it, and reads move its deadline. */
typedef struct idle_slot {
    weft_scope *scope;
    weft_time until; /* the deadline `scope` has now */
} idle_slot;

static idle_slot *idle_of;
static size_t idle_slots;

/* A read moves the deadline only when it would come less than the idle time after the read,
 * and then this much further: a connection is closed once silent for the idle time, and at
 * most an eighth of it later. Moved at every read, the deadline re-armed its timer (on a heap
 * that holds one per connection) at every request, for a deadline a busy connection never
 * reaches. */
static weft_time idle_slack(void)
{
    return srv.idle / 8;
}

ssize_t weft_serve_read(int fd, void *buf, size_t len)
{
    ssize_t n = weft_recv(fd, buf, len, 0);
    if (n > 0 && srv.idle && (size_t)fd < idle_slots) {
        idle_slot *i = &idle_of[fd];
        weft_time now = weft_now();
        if (i->until - now < srv.idle) {
            i->until = now + srv.idle + idle_slack();
            if (weft_scope_set_deadline(i->scope, i->until) != 0)
                i->until = now; /* not moved (no room for its timer): the next read tries again */
        }
    }
    return n;
}

/* A connection task: the server's, inside a scope whose deadline is the idle time from the
 * last bytes read (weft_serve_read moves it), so that the deadline is the scope's and a cancel
 * of the listener still reaches every wait. */
static int connection_main(void *arg)
{
    int fd = (int)(intptr_t)arg;
    if (srv.idle == 0 || (size_t)fd >= idle_slots)
        return srv.conn(arg);
    weft_scope *s;
    weft_time until = weft_now() + srv.idle + idle_slack();
    int rc = weft_scope_open(&s, &(weft_scope_opts){.deadline = until, .name = "conn"});
    if (rc != 0) {
        weft_close(fd);
        return 0;
    }
    idle_of[fd] = (idle_slot){s, until};
    rc = srv.conn(arg);
    (void)weft_scope_close(s); /* the connection's own result is what counts */
    return rc;
}

static int wait_signal(void *arg)
{
    (void)arg;
    struct signalfd_siginfo si;
    ssize_t n = weft_read(srv.sfd, &si, sizeof si);
    if (n == -ECANCELED || n == -ETIMEDOUT)
        return 0; /* the listener ended on its own and the root stopped this task */
    if (n != (ssize_t)sizeof si)
        return weft_fail(n < 0 ? (int)n : -EIO, "%s: reading the signalfd: %zd", srv.name, n);
    srv.signalled = 1;
    return weft_scope_cancel(srv.listener);
}

/* Accepts until the listener is cancelled. Returns 0, or the error that stopped it. */
static int accept_loop(void)
{
    for (;;) {
        int fd = weft_accept(srv.lfd, NULL, NULL);
        if (fd == -ECANCELED || fd == -ETIMEDOUT)
            return 0;
        if (fd == -EMFILE || fd == -ENFILE || fd == -ENOBUFS || fd == -ENOMEM) {
            /* weft_accept returns these at once: retrying at once would spin. */
            int rc = weft_sleep_for(10 * WEFT_MSEC);
            if (rc == -ECANCELED || rc == -ETIMEDOUT)
                return 0;
            continue;
        }
        if (fd == -ECONNABORTED || fd == -EPROTO)
            continue; /* that connection is gone; the listener is fine */
        if (fd < 0) {
            fprintf(stderr, "%s: weft_accept: %s\n", srv.name, strerror(-fd));
            return fd;
        }
        io_nodelay(fd);
        int rc = weft_spawn(srv.listener, connection_main, (void *)(intptr_t)fd);
        if (rc != 0) {
            weft_close(fd);
            if (rc == -ECANCELED || rc == -ETIMEDOUT)
                return 0;
            if (rc != -ENOMEM) {
                fprintf(stderr, "%s: weft_spawn: %s\n", srv.name, strerror(-rc));
                return rc;
            }
        }
    }
}

static int serve_root(void *arg)
{
    (void)arg;
    weft_scope *top;
    int rc = weft_scope_open(&top, NULL);
    if (rc != 0)
        return weft_fail(rc, "%s: weft_scope_open", srv.name);
    /* Connection tasks end with 0 whatever happened to their connection; COLLECT all the same,
     * so that one failing could never take the others down. */
    weft_scope_opts lo = {.name = "listener", .policy = WEFT_COLLECT};
    rc = weft_scope_open(&srv.listener, &lo);
    if (rc == 0)
        rc = weft_spawn(top, wait_signal, NULL);
    if (rc != 0) {
        fprintf(stderr, "%s: setting up the listener: %s\n", srv.name, strerror(-rc));
        weft_scope_cancel(top);
        weft_scope_close(top);
        return rc;
    }
    int accept_rc = accept_loop();
    /* Already cancelled after a signal; after an error, the connections end now too. */
    weft_scope_cancel(srv.listener);
    int listener_rc = weft_scope_close(srv.listener);
    weft_scope_cancel(top);
    int top_rc = weft_scope_close(top);
    if (accept_rc != 0)
        return accept_rc;
    if (listener_rc != 0 && listener_rc != -ECANCELED) {
        fprintf(stderr, "%s: a connection task failed: %s\n", srv.name, strerror(-listener_rc));
        return listener_rc;
    }
    if (top_rc != 0 && top_rc != -ECANCELED) {
        fprintf(stderr, "%s: the signal task failed: %s\n", srv.name, strerror(-top_rc));
        return top_rc;
    }
    return srv.signalled ? 0 : -EINTR;
}

int weft_serve(int argc, char **argv, const char *name, weft_fn conn)
{
    io_opts o;
    io_parse(argc, argv, &o);
    io_raise_nofile();
    srv.name = name;
    srv.conn = conn;
    srv.idle = (weft_time)o.idle_ms * WEFT_MSEC;
    struct rlimit rl;
    if (srv.idle && getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        idle_slots = rl.rlim_cur > ((rlim_t)1 << 20) ? (size_t)1 << 20 : (size_t)rl.rlim_cur;
        idle_of = calloc(idle_slots, sizeof(*idle_of));
        if (!idle_of)
            idle_slots = 0;
    }

    sigset_t sigs;
    int rc = io_block_stop_signals(&sigs);
    srv.sfd = signalfd(-1, &sigs, SFD_NONBLOCK | SFD_CLOEXEC);
    if (rc != 0 || srv.sfd < 0) {
        perror("signalfd");
        return 1;
    }
    int port = o.port;
    srv.lfd = io_listen(port, 0, &port);
    if (srv.lfd < 0) {
        fprintf(stderr, "%s: listen on 127.0.0.1:%d: %s\n", name, port, strerror(-srv.lfd));
        return 1;
    }
    printf("port=%d\n", port);
    fflush(stdout);

    weft_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.workers = o.threads;
    rc = weft_run(&cfg, serve_root, NULL);
    close(srv.lfd);
    close(srv.sfd);
    if (rc != 0) {
        fprintf(stderr, "%s: stopped: %s\n", name, strerror(rc < 0 ? -rc : rc));
        return 1;
    }
    return 0;
}
