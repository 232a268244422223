// SPDX-License-Identifier: MIT
/*
 * libpq_bench WORKLOAD THREADS — the PostgreSQL workloads of benchmarks/README.md (pg-add,
 * pg-sleep) by hand: one thread, one epoll loop, every connection non-blocking, each sending its
 * next query as soon as the previous one's results are read. The floor a client library on
 * libpq can reach; what weft adds to it is its tasks, pool and semaphore. One thread only: it
 * prints nothing for THREADS > 1, nor for pg-cancel.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <time.h>

typedef struct {
    PGconn *pg;
    int fd;
    int query;   /* the number of the query in flight; -1 if none */
    int writing; /* output still pending: EPOLLOUT is watched */
} conn;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static double cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec * 1e-6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec * 1e-6;
}

static int watch(int ep, conn *c, int op)
{
    struct epoll_event ev = {.events = EPOLLIN | (c->writing ? EPOLLOUT : 0), .data.ptr = c};
    return epoll_ctl(ep, op, c->fd, &ev);
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: libpq_bench pg-add|pg-sleep THREADS\n");
        return 2;
    }
    const char *sql;
    int queries, nconn, param;
    if (strcmp(argv[1], "pg-add") == 0) {
        sql = "SELECT $1::int + 1", queries = 20000, nconn = 16, param = 1;
    } else if (strcmp(argv[1], "pg-sleep") == 0) {
        sql = "SELECT pg_sleep(0.005)", queries = 2000, nconn = 64, param = 0;
    } else {
        return 0; /* pg-cancel and anything else: not expressed */
    }
    int threads = atoi(argv[2]);
    if (threads != 1)
        return 0; /* one thread by construction */

    conn *cs = calloc((size_t)nconn, sizeof *cs);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (!cs || ep < 0)
        return 1;
    /* Connected before the interval, as every system is. */
    for (int i = 0; i < nconn; i++) {
        cs[i].pg = PQconnectdb("");
        if (PQstatus(cs[i].pg) != CONNECTION_OK) {
            fprintf(stderr, "libpq_bench: connect: %s", PQerrorMessage(cs[i].pg));
            return 1;
        }
        PQsetnonblocking(cs[i].pg, 1);
        cs[i].fd = PQsocket(cs[i].pg);
        cs[i].query = -1;
        if (watch(ep, &cs[i], EPOLL_CTL_ADD) != 0)
            return 1;
    }

    int next = 0, ok = 0, failed = 0, in_flight = 0;
    double t0 = now_s(), c0 = cpu_s();
    /* Sends the next query on `c`, if any is left. */
#define SEND(c)                                                                                    \
    do {                                                                                           \
        if (next < queries) {                                                                      \
            char num[16];                                                                          \
            snprintf(num, sizeof num, "%d", next);                                                 \
            const char *p[] = {num};                                                               \
            if (!PQsendQueryParams((c)->pg, sql, param, NULL, p, NULL, NULL, 0)) {                 \
                failed = 1;                                                                        \
                break;                                                                             \
            }                                                                                      \
            (c)->query = next++;                                                                   \
            in_flight++;                                                                           \
            int f = PQflush((c)->pg);                                                              \
            if (f < 0)                                                                             \
                failed = 1;                                                                        \
            if (f == 1 && !(c)->writing) {                                                         \
                (c)->writing = 1;                                                                  \
                watch(ep, (c), EPOLL_CTL_MOD);                                                     \
            }                                                                                      \
        }                                                                                          \
    } while (0)
    for (int i = 0; i < nconn; i++)
        SEND(&cs[i]);
    struct epoll_event evs[64];
    while (in_flight > 0 && !failed) {
        int n = epoll_wait(ep, evs, 64, -1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return 1;
        for (int k = 0; k < n && !failed; k++) {
            conn *c = evs[k].data.ptr;
            if (c->writing) {
                int f = PQflush(c->pg);
                if (f < 0) {
                    failed = 1;
                    break;
                }
                if (f == 0) {
                    c->writing = 0;
                    watch(ep, c, EPOLL_CTL_MOD);
                }
            }
            if (!(evs[k].events & (EPOLLIN | EPOLLERR | EPOLLHUP)))
                continue;
            if (!PQconsumeInput(c->pg)) {
                failed = 1;
                break;
            }
            PGresult *r;
            while (c->query >= 0 && !PQisBusy(c->pg)) {
                if ((r = PQgetResult(c->pg)) == NULL) {
                    /* The query's results are all in: the connection is idle. */
                    c->query = -1;
                    in_flight--;
                    SEND(c);
                    break;
                }
                if (PQresultStatus(r) == PGRES_TUPLES_OK &&
                    (!param || atol(PQgetvalue(r, 0, 0)) == (long)c->query + 1))
                    ok++;
                else if (PQresultStatus(r) != PGRES_TUPLES_OK)
                    failed = 1;
                PQclear(r);
            }
        }
    }
    double seconds = now_s() - t0, cpu = cpu_s() - c0;
    printf("%s threads=1 seconds=%.6f check=%d conns=%d client_cpu_us_per_query=%.3f\n", argv[1],
           seconds, ok, nconn, cpu * 1e6 / queries);
    for (int i = 0; i < nconn; i++)
        PQfinish(cs[i].pg);
    free(cs);
    return failed || ok != queries ? 1 : 0;
}
