// SPDX-License-Identifier: MIT
/*
 * libpq on weft: see pg_weft.h.
 *
 * The descriptor weft waits on is a duplicate of libpq's socket, not the socket itself. libpq
 * closes its socket with a plain close() (in PQfinish, and when a connect attempt moves on to
 * another address), and a descriptor weft has registered must be closed with weft_close, or a
 * later file that gets the same number could wait for ever (weft.h). The duplicate is ours to
 * weft_close; the socket stays open until both are closed, so the two never disagree about
 * which file the number means.
 *
 * libpq 15 has no non-blocking cancel request (PQcancelStart and PQcancelPoll came in 17):
 * PQcancel opens a connection of its own to the server and blocks until the server has taken
 * the request, with no time limit, so it runs on a thread of its own that the task waits for
 * only until its drain limit: a server that does not answer (stopped, unreachable) leaves the
 * thread blocked, not the task. Once PQcancel returns, the server has signalled the backend: a
 * query still running there ends with SQLSTATE 57014, and a backend already idle ignores the
 * signal, so the request cannot reach a later query on the same connection.
 *
 * A connection given up (its drain limit passed, the cancel request could not be sent) is
 * closed, and the server ends what it still runs for it once it notices: pgw_connect sets
 * client_connection_check_interval (PostgreSQL 14 and later) so that a running query looks at
 * its client every 2 s, where it would otherwise run to its end. Not more often: every running
 * backend wakes for it, and at 250 ms a thousand sleeping queries slowed the cancel of all of
 * them by some 15% on a server of one CPU (pg-cancel 0.125 s against 0.109; at 2 s, 0.109).
 */
#include "pg_weft.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>

struct pgw_conn {
    PGconn *pg;
    pgw_pool *pool;        /* the pool it was taken from, while it is out */
    weft_time drain_until; /* a drain of it may not go past this (see abandon); 0: none */
    int wfd;               /* the duplicate of libpq's socket that weft waits on; -1 if none */
    /* Its readiness edges as seen before libpq's last read of the socket (weft_fd_mark): where
     * the first wait after a command was sent starts from, so that it costs no system call of
     * its own. The reply comes after the send, so after the mark, with an edge; so does what the
     * server sent since that read (its last words before it closes a connection). A mark taken
     * at the send instead would miss those. Later waits for the same reply ask the kernel:
     * libpq's read stops when its buffer is full and may leave data behind, with no edge to
     * come. */
    weft_fd_edges edges;
    int sent; /* a command went out since the last wait: the next one may start from `edges` */
    int broken;
    /* A batch of cancels that named its backend failed after it may have reached the server:
     * the signal may still come, to whatever query runs then, so it is not pooled again. */
    int signal_pending;
    unsigned cancels;
    char sqlstate[6];
};

static _Thread_local char connect_error[256];

const char *pgw_last_connect_error(void)
{
    return connect_error;
}

PGconn *pgw_conn_pg(const pgw_conn *c)
{
    return c ? c->pg : NULL;
}

int pgw_conn_broken(const pgw_conn *c)
{
    return !c || c->broken;
}

int pgw_conn_backend_pid(const pgw_conn *c)
{
    return c && c->pg ? PQbackendPID(c->pg) : 0;
}

const char *pgw_conn_sqlstate(const pgw_conn *c)
{
    return c ? c->sqlstate : "";
}

const char *pgw_conn_error(const pgw_conn *c)
{
    if (!c)
        return "";
    return c->pg ? PQerrorMessage(c->pg) : "connection closed";
}

unsigned pgw_conn_cancels_sent(const pgw_conn *c)
{
    return c ? c->cancels : 0;
}

/* Points c->wfd at libpq's current socket. A connect that tries another address closes one
 * socket and opens the next, which may get the same number: the file, not the number, tells. */
static int follow_socket(pgw_conn *c)
{
    int s = PQsocket(c->pg);
    if (s < 0)
        return -ECONNRESET;
    if (c->wfd >= 0) {
        struct stat a, b;
        if (fstat(s, &a) == 0 && fstat(c->wfd, &b) == 0 && a.st_dev == b.st_dev &&
            a.st_ino == b.st_ino)
            return 0;
        weft_close(c->wfd);
    }
    c->wfd = fcntl(s, F_DUPFD_CLOEXEC, 0);
    return c->wfd < 0 ? -errno : 0;
}

/* Closes everything `c` holds; it stays allocated (a pool or the caller frees it). */
static void shut(pgw_conn *c)
{
    if (c->pg)
        PQfinish(c->pg); /* libpq's own socket */
    c->pg = NULL;
    if (c->wfd >= 0)
        weft_close(c->wfd); /* the last reference: the server sees the connection end */
    c->wfd = -1;
    c->broken = 1;
}

void pgw_conn_close(pgw_conn *c)
{
    if (!c)
        return;
    shut(c);
    free(c);
}

/* The code of a connect that libpq gave up: -ECONNREFUSED, unless the process (or the system)
 * has no descriptor left, which libpq says only in words: a descriptor is tried for it. */
static int connect_failure(void)
{
    int probe = eventfd(0, EFD_CLOEXEC);
    if (probe < 0 && (errno == EMFILE || errno == ENFILE))
        return -errno;
    if (probe >= 0)
        close(probe);
    return -ECONNREFUSED;
}

int pgw_connect(const char *conninfo, pgw_conn **out)
{
    if (!out || !conninfo)
        return -EINVAL;
    *out = NULL;
    if (weft_task_id() == 0)
        return -EPERM;
    pgw_conn *c = calloc(1, sizeof *c);
    if (!c)
        return -ENOMEM;
    c->wfd = -1;
    c->pg = PQconnectStart(conninfo);
    if (!c->pg) {
        free(c);
        return -ENOMEM;
    }
    int rc = 0;
    /* libpq's loop: start as if the last poll had said "writing". */
    PostgresPollingStatusType st =
        PQstatus(c->pg) == CONNECTION_BAD ? PGRES_POLLING_FAILED : PGRES_POLLING_WRITING;
    while (st != PGRES_POLLING_OK) {
        if (st == PGRES_POLLING_FAILED) {
            rc = connect_failure();
            break;
        }
        rc = follow_socket(c);
        if (rc)
            break;
        rc = weft_fd_wait(c->wfd, st == PGRES_POLLING_READING ? WEFT_READABLE : WEFT_WRITABLE,
                          WEFT_NEVER);
        if (rc < 0)
            break;
        rc = 0;
        st = PQconnectPoll(c->pg);
    }
    if (rc == 0 && (follow_socket(c) != 0 || PQsetnonblocking(c->pg, 1) != 0))
        rc = -ECONNRESET;
    /* The first mark, and a read after it: whatever came since libpq's last read during the
     * start-up is read now or brings an edge later (see `edges`). */
    if (rc == 0 && (rc = weft_fd_mark(c->wfd, &c->edges)) == 0 && !PQconsumeInput(c->pg))
        rc = -ECONNRESET;
    /* A query the client gave up is ended by the server once it sees the connection closed. */
    if (rc == 0 && PQserverVersion(c->pg) >= 140000)
        rc = pgw_query(c, "SET client_connection_check_interval = 2000", 0, NULL, NULL);
    if (rc) {
        /* After the last suspension point: the thread-local is this thread's. */
        const char *msg = rc == -ECONNREFUSED || rc == -ECONNRESET || rc == -EREMOTEIO ||
                                  rc == -EMFILE || rc == -ENFILE
                              ? PQerrorMessage(c->pg)
                              : strerror(-rc);
        snprintf(connect_error, sizeof connect_error, "%s", msg);
        pgw_conn_close(c);
        return rc;
    }
    *out = c;
    return 0;
}

/* The connection is gone: close what is left of it. */
static int lost(pgw_conn *c)
{
    shut(c);
    return -ECONNRESET;
}

/* A loop whose socket is ready each time it asks (a large result arrives as fast as it is read,
 * a large command goes out as fast as it is written) never parks, and would hold its worker for
 * the whole transfer: from its second round on, it lets the worker's other tasks run first (a
 * yield costs less than the system call of a round). A short reply takes one round. The
 * yield's code (the task cancelled, its deadline passed) or 0. */
static int take_turns(unsigned round)
{
    return round ? weft_yield() : 0;
}

/* Sends what libpq could not send at once, reading meanwhile, so that a server that answers
 * while a long command is still going out cannot deadlock both ends. 0, a wait's error, or
 * -ECONNRESET. */
static int flush_out(pgw_conn *c, weft_time until)
{
    for (unsigned round = 0;; round++) {
        int f = PQflush(c->pg);
        if (f < 0)
            return lost(c);
        if (f == 0)
            return 0;
        int rc = take_turns(round);
        if (rc == 0)
            rc = weft_fd_wait(c->wfd, WEFT_READABLE | WEFT_WRITABLE, until);
        if (rc < 0)
            return rc;
        if ((rc & WEFT_READABLE) && !PQconsumeInput(c->pg))
            return lost(c);
    }
}

/* Waits until libpq holds a whole result, or until `until`: 0, a wait's error, or
 * -ECONNRESET. */
static int await_result(pgw_conn *c, weft_time until)
{
    int rc = flush_out(c, until);
    if (rc)
        return rc;
    for (unsigned round = 0; PQisBusy(c->pg); round++) {
        if ((rc = take_turns(round)) != 0)
            return rc;
        /* The first wait after a send, from the mark (see `edges`); the others ask the kernel,
         * since libpq's read stops when its buffer is full and may leave data behind. */
        if (c->sent) {
            c->sent = 0;
            rc = weft_fd_wait_since(c->wfd, WEFT_READABLE, &c->edges, until);
            if (rc == -EBADF) /* a mark taken under a runtime since ended */
                rc = weft_fd_wait(c->wfd, WEFT_READABLE, until);
        } else {
            rc = weft_fd_wait(c->wfd, WEFT_READABLE, until);
        }
        if (rc < 0)
            return rc;
        if ((rc = weft_fd_mark(c->wfd, &c->edges)) != 0)
            return rc;
        if (!PQconsumeInput(c->pg))
            return lost(c);
    }
    return 0;
}

/* Reads the results of the command in flight up to libpq's NULL, which leaves the connection
 * idle. Keeps the first in *res when `res` is not NULL (else frees it) and returns what it
 * says: 0, -EREMOTEIO for an error, -EPROTO for a result a query does not give (COPY); a
 * wait's error; -ECONNRESET. */
static int read_results(pgw_conn *c, PGresult **res, weft_time until)
{
    int status = 0, first = 1;
    for (;;) {
        int rc = await_result(c, until);
        if (rc) {
            if (res && *res) { /* cut off before the end: the caller gets no half answer */
                PQclear(*res);
                *res = NULL;
            }
            return rc;
        }
        PGresult *r = PQgetResult(c->pg);
        if (!r)
            break;
        ExecStatusType st = PQresultStatus(r);
        if (st == PGRES_FATAL_ERROR) {
            const char *s = PQresultErrorField(r, PG_DIAG_SQLSTATE);
            snprintf(c->sqlstate, sizeof c->sqlstate, "%s", s ? s : "");
            if (!status)
                status = -EREMOTEIO;
        } else if (st == PGRES_COPY_IN || st == PGRES_COPY_OUT || st == PGRES_COPY_BOTH) {
            PQclear(r);
            shut(c); /* no way back to idle but to end the connection */
            return -EPROTO;
        } else if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK && !status) {
            status = -EPROTO;
        }
        if (first && res && status == 0)
            *res = r;
        else
            PQclear(r);
        first = 0;
    }
    if (PQstatus(c->pg) != CONNECTION_OK)
        return lost(c);
    if (status && res && *res) {
        PQclear(*res);
        *res = NULL;
    }
    return status;
}

static int pool_cancel(pgw_pool *p, pgw_conn *c, weft_time until);

/* A cancel request on a thread of its own, which the task waits for only until its deadline:
 * PQcancel blocks until the server has taken the request, with no time limit. */
typedef struct cancel_job {
    PGcancel *cancel; /* the job's own: the connection may be closed while the thread runs */
    weft_event *done;
    atomic_int refs; /* the task's and the thread's */
    int ok;
} cancel_job;

static void job_unref(cancel_job *j)
{
    if (atomic_fetch_sub(&j->refs, 1) != 1)
        return;
    PQfreeCancel(j->cancel);
    if (weft_event_destroy(j->done) == 0)
        free(j); /* else a waiter is still on its way out: leave it rather than free it */
}

static void *cancel_thread(void *arg)
{
    cancel_job *j = arg;
    char err[256];
    j->ok = PQcancel(j->cancel, err, sizeof err);
    weft_event_set(j->done);
    job_unref(j);
    return NULL;
}

/* Asks the server to cancel the command in flight on `c`: 0 once it took the request; -EIO if
 * it could not be reached or refused it (no descriptor left, the postmaster's limits);
 * -EAGAIN if no thread could be made; -ENOMEM; -ETIMEDOUT when the caller's deadline passed
 * first (the request may still go out). */
static int cancel_request(pgw_conn *c)
{
    cancel_job *j = calloc(1, sizeof *j);
    if (!j)
        return -ENOMEM;
    j->cancel = PQgetCancel(c->pg);
    if (!j->cancel || weft_event_create(&j->done) != 0) {
        PQfreeCancel(j->cancel);
        free(j);
        return -ENOMEM;
    }
    atomic_init(&j->refs, 2);
    pthread_attr_t attr;
    pthread_t th;
    int made = pthread_attr_init(&attr) == 0;
    made = made && pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED) == 0 &&
           pthread_create(&th, &attr, cancel_thread, j) == 0;
    pthread_attr_destroy(&attr);
    if (!made) {
        atomic_store(&j->refs, 1);
        job_unref(j);
        return -EAGAIN;
    }
    int rc = weft_event_wait(j->done);
    if (rc == 0)
        rc = j->ok ? 0 : -EIO;
    job_unref(j);
    return rc;
}

/* How long a drain waits for the cancelled command to end before it asks again: a request
 * that reached the backend before the command did (still in the socket's buffer) was
 * ignored. */
#define CANCEL_AGAIN (200 * WEFT_MSEC)

/*
 * The calling task was cancelled (`code`) with a command of `c` in flight. In a shield bounded
 * by PGW_DRAIN_LIMIT (and by c->drain_until, for the drain of a connection that serves another
 * one's): finish sending the command, ask the server to cancel it, and read its results to the
 * end, so that the connection is idle again. What cannot be done in time closes the connection.
 * Returns `code`.
 */
static int abandon(pgw_conn *c, int code)
{
    weft_time until = weft_now() + PGW_DRAIN_LIMIT;
    if (c->drain_until && c->drain_until < until)
        until = c->drain_until;
    weft_scope *s;
    if (weft_scope_open(&s, &(weft_scope_opts){.shield = 1, .deadline = until}) != 0) {
        shut(c);
        return code;
    }
    int rc = flush_out(c, WEFT_NEVER);
    while (rc == 0 && PQisBusy(c->pg)) {
        /* A pooled connection's request goes with the pool's batch, one asked again too: a
         * server still ending a thousand cancelled statements when CANCEL_AGAIN has passed
         * would otherwise get a request of its own, a connection and a process, from each of
         * their tasks at once, and end them all later for it. A request goes alone when its
         * connection has no pool or its batch could not go out. */
        int sent = c->pool ? pool_cancel(c->pool, c, until) : -EAGAIN;
        if (sent == -EAGAIN)
            sent = cancel_request(c);
        if (sent == 0)
            c->cancels++;
        /* Sent or not (no descriptor or thread to be had now, the server out of reach), wait a
         * while for the command to end, then ask again, until the limit. */
        rc = weft_scope_expired(s) ? -ETIMEDOUT : await_result(c, weft_now() + CANCEL_AGAIN);
        if (rc == -ETIMEDOUT && !weft_scope_expired(s))
            rc = 0; /* ask again */
    }
    if (rc == 0) {
        rc = read_results(c, NULL, WEFT_NEVER);
        if (rc == -EREMOTEIO || rc == -EPROTO)
            rc = 0; /* the cancelled command's own error: the connection is idle */
    }
    (void)weft_scope_close(s);
    if (rc && !c->broken)
        shut(c);
    return code;
}

/* After a PQsend... call: its answer, or abandon's path when the task is cancelled. */
static int finish(pgw_conn *c, int sent, PGresult **res)
{
    if (!sent)
        return PQstatus(c->pg) == CONNECTION_OK ? -EIO : lost(c);
    int rc = read_results(c, res, WEFT_NEVER);
    if (rc == 0 || rc == -EREMOTEIO || rc == -EPROTO || c->broken)
        return rc;
    if (rc == -ECANCELED || rc == -ETIMEDOUT)
        return abandon(c, rc);
    shut(c); /* a wait that failed otherwise (-ENOMEM...): where the command is, is unknown */
    return rc;
}

/* The checks every command starts with; 0 when it may be sent. */
static int ready(pgw_conn *c, PGresult **res)
{
    if (res)
        *res = NULL;
    if (!c)
        return -EINVAL;
    if (c->broken)
        return -ECONNRESET;
    c->sqlstate[0] = 0;
    c->sent = 1; /* so far as await_result knows: a reply is to come */
    /* A task already cancelled sends nothing: there would be nothing to wait for. */
    return weft_checkpoint();
}

int pgw_query(pgw_conn *c, const char *sql, int n, const char *const *params, PGresult **res)
{
    int rc = ready(c, res);
    if (rc)
        return rc;
    if (!sql || n < 0 || (n > 0 && !params))
        return -EINVAL;
    return finish(c, PQsendQueryParams(c->pg, sql, n, NULL, params, NULL, NULL, 0), res);
}

int pgw_prepare(pgw_conn *c, const char *name, const char *sql, int n)
{
    int rc = ready(c, NULL);
    if (rc)
        return rc;
    if (!name || !sql || n < 0)
        return -EINVAL;
    return finish(c, PQsendPrepare(c->pg, name, sql, n, NULL), NULL);
}

int pgw_exec_prepared(pgw_conn *c, const char *name, int n, const char *const *params,
                      PGresult **res)
{
    int rc = ready(c, res);
    if (rc)
        return rc;
    if (!name || n < 0 || (n > 0 && !params))
        return -EINVAL;
    return finish(c, PQsendQueryPrepared(c->pg, name, n, params, NULL, NULL, 0), res);
}

/* ---- the pool ---- */

/*
 * Cancel requests of a pool's connections go out in batches. Each cancel request is a
 * connection of its own to the server, for which the postmaster starts a process, one after
 * another: when a scope of a thousand queries is cancelled, that is a thousand processes (seconds
 * on a small machine). One query on a connection the pool keeps aside, `SELECT
 * pg_cancel_backend(pid) FROM unnest($1)`, signals every backend of a batch in one round trip,
 * a kill() each on the server's side. The first cancelled task
 * to find no batch going out sends one with every backend asked for meanwhile, then the next,
 * until none is left; the others wait for the batch they joined. A connection goes back to the
 * pool only once its batch has gone out, so that no signal can reach a later query. A batch that
 * fails (the aside connection cannot be made: max_connections) leaves its tasks to send their
 * own cancel requests; one cut off after its query may have reached the server (its drain's
 * limit passed: the server may run it later) closes their connections at their release. A drain
 * that asks again joins the next batch, and waits for it as for the first.
 */
typedef struct cancel_batch {
    weft_event *sent;
    int ok;
    int unsent;    /* failed before its query was handed to the aside connection */
    unsigned refs; /* under the pool's lock */
    unsigned n;
    int pids[];
} cancel_batch;

/*
 * Bookkeeping under `lock`: `out` counts the tokens taken (a connection out, or one being made),
 * `conns` the pool's open connections (idle, out, or being made), at most `size`, so that idle[]
 * always has room; `inside` counts the calls in progress that hold no token but still touch the
 * pool (a token on its way back, a fill), whose last act is to leave (pool_leave). A destroy
 * waits for nothing: it refuses (-EBUSY) while a token is taken (from the moment the semaphore
 * hands it out), counted out, or a call is inside.
 */
struct pgw_pool {
    char *conninfo;
    weft_sem *tokens;
    pthread_mutex_t lock; /* held for a few instructions, never across a suspension point */
    unsigned size, n_idle, out, conns, inside;
    pgw_conn *canceller;   /* the connection aside for batches of cancels */
    cancel_batch *filling; /* the next batch, which cancelled tasks join */
    int sending;           /* a task sends batches */
    unsigned batches;      /* batches that went out */
    pgw_conn *idle[];
};

static void batch_unref(pgw_pool *p, cancel_batch *b)
{
    pthread_mutex_lock(&p->lock);
    unsigned left = --b->refs;
    pthread_mutex_unlock(&p->lock);
    /* Every task that waited on it has returned from the wait: the event is free to go. */
    if (left == 0 && weft_event_destroy(b->sent) == 0)
        free(b);
}

/* Signals every backend of `b` with one query on the pool's aside connection, in the drain of
 * a task that ends at `until` (0: none). */
static int send_batch(pgw_pool *p, cancel_batch *b, weft_time until)
{
    if (!p->canceller || p->canceller->broken) {
        pgw_conn_close(p->canceller);
        p->canceller = NULL;
        if (pgw_connect(p->conninfo, &p->canceller) != 0) {
            b->unsent = 1;
            return -ECONNREFUSED;
        }
    }
    /* Its own drain, should the batch be cut off, ends with the drain of the task that sends
     * it. */
    p->canceller->drain_until = until;
    /* An int4[] literal: {pid,pid,...} */
    char *list = malloc((size_t)b->n * 12 + 3);
    if (!list) {
        b->unsent = 1;
        return -ENOMEM;
    }
    size_t at = 0;
    list[at++] = '{';
    for (unsigned i = 0; i < b->n; i++)
        at += (size_t)sprintf(list + at, i ? ",%d" : "%d", b->pids[i]);
    list[at++] = '}';
    list[at] = 0;
    const char *params[] = {list};
    int rc = pgw_query(p->canceller,
                       "SELECT count(*) FROM unnest($1::int4[]) pid "
                       "WHERE pg_cancel_backend(pid)",
                       1, params, NULL);
    free(list);
    return rc;
}

/* The task that set p->sending: sends the batches that fill meanwhile, until none is left;
 * `until` as send_batch's. */
static void send_batches(pgw_pool *p, weft_time until)
{
    for (;;) {
        pthread_mutex_lock(&p->lock);
        cancel_batch *next = p->filling;
        p->filling = NULL;
        if (!next)
            p->sending = 0;
        pthread_mutex_unlock(&p->lock);
        if (!next)
            return;
        next->ok = send_batch(p, next, until) == 0;
        pthread_mutex_lock(&p->lock);
        p->batches += (unsigned)next->ok;
        pthread_mutex_unlock(&p->lock);
        weft_event_set(next->sent);
        batch_unref(p, next);
    }
}

/* Asks the server to cancel the command `c` has in flight, with the pool's next batch. 0 once
 * the batch went out; else the caller sends its own request (and where the batch failed after
 * its query may have reached the server, `c` is closed at its release, not pooled). In the
 * caller's drain, which ends at `until`. */
static int pool_cancel(pgw_pool *p, pgw_conn *c, weft_time until)
{
    int pid = PQbackendPID(c->pg);
    pthread_mutex_lock(&p->lock);
    cancel_batch *b = p->filling;
    if (!b) {
        /* Room for every connection of the pool: the backends of the batch that fills are
         * those of tasks waiting for it, each with a connection of its own (a task whose wait
         * ends first takes its backend out, below), and a batch on its way takes no more. */
        b = calloc(1, sizeof *b + p->size * sizeof b->pids[0]);
        if (!b || weft_event_create(&b->sent) != 0) {
            pthread_mutex_unlock(&p->lock);
            free(b);
            return -EAGAIN;
        }
        b->refs = 1; /* the sender's */
        p->filling = b;
    }
    if (b->n == p->size) {
        /* Not reached by the argument above; should it be, the request goes alone rather
         * than past the batch's end. */
        pthread_mutex_unlock(&p->lock);
        return -EAGAIN;
    }
    b->pids[b->n++] = pid;
    b->refs++;
    int lead = !p->sending;
    p->sending = 1;
    pthread_mutex_unlock(&p->lock);

    if (lead) {
        /* A cancel wakes every task of a scope at once: those queued behind this one join the
         * first batch instead of waiting for it to go out before theirs can. */
        weft_yield();
        send_batches(p, until);
    }
    int rc = weft_event_wait(b->sent);
    int named = 1; /* the batch names the backend of `c`, or went out naming it */
    if (rc != 0) {
        /* The caller's drain ended first (a drain asking again began before the one of the
         * task that sends the batches, and may end before it). A batch still filling takes
         * the backend out: `c` may be closed and its place in the pool made anew, whose
         * backend may join this batch in turn. */
        pthread_mutex_lock(&p->lock);
        if (p->filling == b) {
            for (unsigned i = 0; i < b->n; i++)
                if (b->pids[i] == pid) {
                    b->pids[i] = b->pids[--b->n];
                    break;
                }
            named = 0;
        }
        pthread_mutex_unlock(&p->lock);
    }
    int ok = rc == 0 && b->ok;
    /* Cut off (its drain's limit) once the query was on its way: the server may still run it,
     * after the caller's own request has ended the command. */
    if (!ok && named && (rc != 0 || !b->unsent))
        c->signal_pending = 1;
    batch_unref(p, b);
    return ok ? 0 : (rc ? rc : -EAGAIN);
}

int pgw_pool_create(pgw_pool **out, const char *conninfo, unsigned size)
{
    if (!out || !conninfo || size == 0)
        return -EINVAL;
    pgw_pool *p = calloc(1, sizeof *p + size * sizeof p->idle[0]);
    if (!p)
        return -ENOMEM;
    p->size = size;
    p->conninfo = strdup(conninfo);
    int rc = p->conninfo ? weft_sem_create(&p->tokens, size) : -ENOMEM;
    if (rc) {
        free(p->conninfo);
        free(p);
        return rc;
    }
    pthread_mutex_init(&p->lock, NULL);
    *out = p;
    return 0;
}

static void pool_enter(pgw_pool *p)
{
    pthread_mutex_lock(&p->lock);
    p->inside++;
    pthread_mutex_unlock(&p->lock);
}

/* The last touch of `p` by a call of the pool: a destroy may free it as soon as the lock is
 * released (a mutex may be destroyed once unlocked). */
static void pool_leave(pgw_pool *p)
{
    pthread_mutex_lock(&p->lock);
    p->inside--;
    pthread_mutex_unlock(&p->lock);
}

/* A new connection for the holder of a token, counted in `conns` before it is made (and out of
 * it again if it cannot be): 0 and *out, or the connect's failure. */
static int pool_connect(pgw_pool *p, pgw_conn **out)
{
    int rc = pgw_connect(p->conninfo, out);
    if (rc) {
        pthread_mutex_lock(&p->lock);
        p->conns--;
        pthread_mutex_unlock(&p->lock);
    }
    return rc;
}

/* Back to the pool, with its token: `c` (NULL if none was made) idle if `keep`, else closed. */
static void pool_put(pgw_pool *p, pgw_conn *c, int keep)
{
    if (c && !keep)
        pgw_conn_close(c);
    pthread_mutex_lock(&p->lock);
    if (c && keep)
        p->idle[p->n_idle++] = c;
    else if (c)
        p->conns--;
    p->out--;
    p->inside++; /* until the token is back */
    pthread_mutex_unlock(&p->lock);
    weft_sem_release(p->tokens);
    pool_leave(p);
}

/* Whether an idle connection can still carry a query: the server may have ended its backend
 * meanwhile (idle_session_timeout, pg_terminate_backend, a restart), which it says with a last
 * message and the end of the stream. Only readiness that came since the connection's last read
 * is looked at, which asks the kernel nothing; a connection marked under an earlier runtime is
 * read to find out. */
static int idle_usable(pgw_conn *c)
{
    int rc = weft_fd_wait_since(c->wfd, WEFT_READABLE, &c->edges, 0);
    if (rc == -ETIMEDOUT)
        return 1; /* nothing came */
    /* Something came: notifications (LISTEN), or a backend's last words and the end of the
     * stream, which libpq learns of only from the read after them. Read until nothing is left:
     * libpq's read takes some 16 KB at a time, and data left in the socket brings no edge for
     * the next command's first wait, while the server, its socket full, cannot send the reply
     * that would. */
    for (unsigned round = 0;; round++) {
        /* A cancel here shows at the next wait, where the acquire's caller sees its code. */
        (void)take_turns(round);
        if (weft_fd_mark(c->wfd, &c->edges) != 0 || !PQconsumeInput(c->pg) ||
            PQstatus(c->pg) != CONNECTION_OK)
            return 0;
        struct pollfd left = {.fd = c->wfd, .events = POLLIN};
        if (poll(&left, 1, 0) <= 0)
            break;
    }
    return !PQisBusy(c->pg);
}

int pgw_pool_acquire(pgw_pool *p, pgw_conn **out)
{
    if (!p || !out)
        return -EINVAL;
    *out = NULL;
    int rc = weft_sem_acquire(p->tokens);
    if (rc)
        return rc;
    pgw_conn *c;
    pthread_mutex_lock(&p->lock);
    p->out++;
    for (;;) {
        c = p->n_idle ? p->idle[--p->n_idle] : NULL;
        /* With no idle one, every connection is out with a token other than this one: there
         * is room for one more. */
        if (!c)
            p->conns++;
        pthread_mutex_unlock(&p->lock);
        if (!c || idle_usable(c))
            break;
        pgw_conn_close(c); /* its backend is gone: the next one, or a new one */
        pthread_mutex_lock(&p->lock);
        p->conns--;
    }
    if (!c && (rc = pool_connect(p, &c)) != 0) {
        pool_put(p, NULL, 0);
        return rc;
    }
    c->pool = p;
    *out = c;
    return 0;
}

void pgw_pool_release(pgw_pool *p, pgw_conn *c)
{
    if (!p || !c || c->pool != p)
        return; /* not out of this pool: given back already, or never taken from it */
    c->pool = NULL;
    /* Only an idle connection outside a transaction goes back: never one with a command in
     * flight, whose results would reach the next task. */
    int keep = !c->broken && !c->signal_pending && PQstatus(c->pg) == CONNECTION_OK &&
               PQtransactionStatus(c->pg) == PQTRANS_IDLE;
    pool_put(p, c, keep);
}

/* One connection more, made with a token free now, while the pool has fewer than `size`. */
static int fill_one(void *arg)
{
    pgw_pool *p = arg;
    if (weft_sem_try_acquire(p->tokens) != 0)
        return 0; /* every token is taken: those who hold them make what they need */
    pthread_mutex_lock(&p->lock);
    int room = p->conns < p->size;
    p->out++;
    p->conns += room;
    pthread_mutex_unlock(&p->lock);
    pgw_conn *c = NULL;
    int rc = room ? pool_connect(p, &c) : 0;
    pool_put(p, c, 1);
    return rc;
}

int pgw_pool_fill(pgw_pool *p)
{
    if (!p)
        return -EINVAL;
    pool_enter(p);
    pthread_mutex_lock(&p->lock);
    unsigned missing = p->size - p->conns;
    pthread_mutex_unlock(&p->lock);
    weft_scope *s;
    int rc = weft_scope_open(&s, &(weft_scope_opts){.policy = WEFT_COLLECT});
    if (rc == 0) {
        for (unsigned i = 0; rc == 0 && i < missing; i++)
            rc = weft_spawn(s, fill_one, p);
        int j = weft_scope_close(s);
        rc = rc ? rc : j;
    }
    int j = 0;
    /* The aside connection is the sender's: take that part while it is made. */
    pthread_mutex_lock(&p->lock);
    int lead = !p->sending;
    p->sending = 1;
    pthread_mutex_unlock(&p->lock);
    if (lead) {
        if (rc == 0 && j == 0 && !p->canceller)
            j = pgw_connect(p->conninfo, &p->canceller);
        send_batches(p, 0);
    }
    pool_leave(p);
    return rc ? rc : j;
}

unsigned pgw_pool_cancel_batches(pgw_pool *p)
{
    if (!p)
        return 0;
    pthread_mutex_lock(&p->lock);
    unsigned n = p->batches;
    pthread_mutex_unlock(&p->lock);
    return n;
}

unsigned pgw_pool_idle(pgw_pool *p)
{
    if (!p)
        return 0;
    pthread_mutex_lock(&p->lock);
    unsigned n = p->n_idle;
    pthread_mutex_unlock(&p->lock);
    return n;
}

int pgw_pool_destroy(pgw_pool *p)
{
    if (!p)
        return -EINVAL;
    pthread_mutex_lock(&p->lock);
    int busy = p->out || p->inside || weft_sem_available(p->tokens) != p->size;
    pthread_mutex_unlock(&p->lock);
    if (busy)
        return -EBUSY;
    int rc = weft_sem_destroy(p->tokens);
    if (rc)
        return rc;
    for (unsigned i = 0; i < p->n_idle; i++)
        pgw_conn_close(p->idle[i]);
    pgw_conn_close(p->canceller);
    pthread_mutex_destroy(&p->lock);
    free(p->conninfo);
    free(p);
    return 0;
}
