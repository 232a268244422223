// SPDX-License-Identifier: MIT
/*
 * PostgreSQL from weft tasks: libpq in non-blocking mode, every wait parked on the
 * connection's socket (a reply's with weft_fd_wait_since, from a mark taken before libpq's
 * last read: no system call of its own), and a small pool of connections that N tasks share
 * through a semaphore of M tokens. Used by the pg benchmark (weft_pg.c) and its tests
 * (tests/test_pg.c); an example of the library, not part of it.
 *
 * Cancellation reaches the server. A task cancelled (or past its scope's deadline) while a
 * query of its own is in flight sends the server a cancel request for it, then reads the
 * connection back to idle, in a shielded scope bounded by the connection's drain limit: the
 * call returns -ECANCELED (-ETIMEDOUT) only once the server no longer runs the query and the
 * connection is ready for the next one, or closed (pgw_conn_broken) when it could not get there
 * within the limit (the server then ends the query once it notices the connection closed:
 * pgw_connect sets client_connection_check_interval). A pool never hands out a connection in
 * the middle of a query.
 *
 * Every call returns 0 or a negative errno value:
 *   -EREMOTEIO  the server answered with an error (bad SQL, a failed cast, ...); the
 *               connection stays usable; pgw_conn_sqlstate and pgw_conn_error say which;
 *   -ECANCELED, -ETIMEDOUT  the calling task was cancelled or its deadline passed (see above);
 *   -ECONNRESET the connection is lost (or was given up); pgw_conn_broken is then 1;
 *   -ECONNREFUSED connect failed (pgw_conn_error says why); -EMFILE, -ENFILE no descriptor for
 *               a new connection; from pgw_connect, -EREMOTEIO: the server refused the
 *               session's set-up (a replication connection, which takes no extended query);
 *   -EPROTO     the statement gives no result a query gives (an empty statement, COPY: a COPY
 *               also closes the connection, which has no way back to idle without its data);
 *   -EIO        libpq would not send the command (more than 65,535 parameters, say), the
 *               connection stays usable;
 *   -ENOMEM; -EINVAL for bad arguments, or for a connection whose socket another runtime,
 *               still running, waited on (the connection is then closed: weft.h, one runtime
 *               per descriptor);
 *   -EPERM outside a task.
 * A connection or a pool serves the tasks of one runtime at a time: made under one runtime, it
 * serves a later one once the first has ended, not two that run at once.
 * All of them are task-only and may suspend, except pgw_conn_close, pgw_pool_destroy and the
 * getters, which do not suspend.
 */
#ifndef WEFT_PG_WEFT_H
#define WEFT_PG_WEFT_H

#include <libpq-fe.h>

#include "weft.h"

/** One connection. */
typedef struct pgw_conn pgw_conn;

/** How long a cancelled query may take to be cancelled and read back to idle before its
 *  connection is closed instead: 5 s. */
#define PGW_DRAIN_LIMIT (5 * WEFT_SEC)

/** Connects with `conninfo` (libpq's keywords or URI; "" takes everything from the PG*
 *  environment variables). The wait for the server, the authentication and the start-up all
 *  park the task; libpq's connect_timeout does not apply to a non-blocking connect, the scope's
 *  deadline does. 0 and *out; on failure *out is NULL and the reason is kept for
 *  pgw_last_connect_error (thread-local: read it before the next suspension point). */
int pgw_connect(const char *conninfo, pgw_conn **out);

/** The libpq message of the calling thread's last failed pgw_connect. */
const char *pgw_last_connect_error(void);

/** Closes `c` (a Terminate message if it is idle) and frees it. Any thread; does not
 *  suspend. NULL is ignored. */
void pgw_conn_close(pgw_conn *c);

/** The libpq connection, for reading results and for calls that do not wait (PQescape...). */
PGconn *pgw_conn_pg(const pgw_conn *c);

/** 1 once the connection is lost or was given up (it must be closed), else 0. */
int pgw_conn_broken(const pgw_conn *c);

/** The server's process id for this connection (pg_stat_activity.pid). */
int pgw_conn_backend_pid(const pgw_conn *c);

/** The SQLSTATE of the last error the server sent on `c` ("" if none since the last call). */
const char *pgw_conn_sqlstate(const pgw_conn *c);

/** The last error message on `c` (libpq's PQerrorMessage). */
const char *pgw_conn_error(const pgw_conn *c);

/** Cancel requests `c` sent to the server (for the tests). */
unsigned pgw_conn_cancels_sent(const pgw_conn *c);

/**
 * Runs `sql` with `n` text parameters ($1..$n; NULL is SQL NULL; types inferred by the
 * server) and waits for its result. On success *res (if `res` is not NULL) is the result,
 * PGRES_TUPLES_OK or PGRES_COMMAND_OK, which the caller frees with PQclear; on failure *res
 * is NULL. `sql` holds one statement (the extended protocol allows no more).
 */
int pgw_query(pgw_conn *c, const char *sql, int n, const char *const *params, PGresult **res);

/** Prepares `sql` as the statement `name` on `c` (its parameter types inferred). */
int pgw_prepare(pgw_conn *c, const char *name, const char *sql, int n);

/** Runs the statement `name` prepared on `c`, as pgw_query runs `sql`. */
int pgw_exec_prepared(pgw_conn *c, const char *name, int n, const char *const *params,
                      PGresult **res);

/** A pool of at most `size` connections to one server. */
typedef struct pgw_pool pgw_pool;

/** Makes a pool of at most `size` (>= 1) connections with `conninfo`. Connections are made on
 *  demand and kept while they are usable. Cancel requests of its connections go to the server
 *  in batches, on one more connection the pool makes when it first needs it (pg_weft.c says
 *  why). Task or not; does not suspend. */
int pgw_pool_create(pgw_pool **out, const char *conninfo, unsigned size);

/**
 * Takes a connection: waits for one of the pool's tokens (a weft semaphore: the N tasks that
 * ask queue for the M connections), then takes an idle connection or makes one. An idle one
 * whose backend the server ended meanwhile (idle_session_timeout, pg_terminate_backend, a
 * restart: it said so on the connection) is closed and not handed out. 0 and *out;
 * -ECANCELED / -ETIMEDOUT while waiting; a connect failure (the token is given back). Task-only;
 * suspends.
 */
int pgw_pool_acquire(pgw_pool *p, pgw_conn **out);

/** Gives `c` back with its token: kept for the next task if it is idle and usable, else
 *  closed and freed (its slot is then made anew by a later acquire). Give each connection back
 *  once: a second release of one the pool kept idle, or of one taken from another pool, is
 *  ignored, but one the pool closed is freed memory, and one another task took since is that
 *  task's. The session goes with the connection as the task left it, as in a pool of
 *  PostgreSQL sessions: what it SET (a role, statement_timeout, or
 *  client_connection_check_interval, which the drain's promise above depends on), PREPAREd,
 *  LISTENed to or locked (advisory locks) is the next task's too. A task that changes the
 *  session undoes it (SET it back, DEALLOCATE, UNLISTEN, pg_advisory_unlock_all; RESET ALL
 *  would undo pgw_connect's client_connection_check_interval too) before it releases
 *  the connection (not pgw_conn_close: a pooled connection goes back with its token). Any task;
 *  does not suspend. */
void pgw_pool_release(pgw_pool *p, pgw_conn *c);

/** Makes the pool's missing connections now (and the one it keeps aside for cancel requests),
 *  rather than on demand, with the tokens free at the call: those held by other tasks (or the
 *  caller) are not waited for, their holders make what they need. 0 once made, or the first
 *  failure (those made are kept). Task-only; suspends. */
int pgw_pool_fill(pgw_pool *p);

/** Batches of cancel requests the pool sent (for the tests). */
unsigned pgw_pool_cancel_batches(pgw_pool *p);

/** Idle connections the pool holds now. */
unsigned pgw_pool_idle(pgw_pool *p);

/** Closes every idle connection and frees the pool. -EBUSY (nothing freed) while a connection
 *  is out or a call of the pool is in progress (a task waiting in pgw_pool_acquire, say). No
 *  call on `p` may follow a destroy that returned 0. Any thread; does not suspend. */
int pgw_pool_destroy(pgw_pool *p);

#endif
