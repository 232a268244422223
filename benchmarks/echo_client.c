// SPDX-License-Identifier: MIT
/*
 * echo_client --port P --server-pid PID [--conns C] [--warmup W] [--duration D] [--threads T]
 *
 * The load generator of the echo workload (benchmarks/README.md): one thread, one epoll loop,
 * C connections to 127.0.0.1:P (default 1000), each with one 64-byte message in flight. A
 * connection sends a message, waits until all 64 bytes are back, checks them byte for byte,
 * and sends the next one at once. W seconds of warm-up (default 1), then D measured seconds
 * (default 10): the round trips completed in the measured interval, their latency (send to the
 * last byte back), and the server's CPU time over it, from /proc/PID/stat (user + system, all
 * threads). Prints
 *
 *     echo threads=T conns=C rps=R p50_ms=X p99_ms=Y server_cpu_s=S per_cpu_s=P check=ok
 *
 * where T is only repeated from --threads (the server's worker count; the client cannot see it).
 * check=FAIL, and exit status 1, when a byte came back wrong, a connection was closed or
 * failed, a connection never got an answer, or nothing came back at all.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "io_common.h"

#include <fcntl.h>
#include <stdint.h>
#include <sys/epoll.h>

#define MSG 64

typedef struct conn {
    int fd;
    int sent;       /* bytes of msg written so far */
    int got;        /* bytes of the answer read so far */
    uint64_t round; /* which message is in flight */
    uint64_t done;  /* round trips completed, warm-up included */
    int64_t t_send; /* when the message in flight was handed to send */
    unsigned char msg[MSG];
    unsigned char back[MSG];
} conn;

/* Latencies in nanoseconds, log-linear: exact below 256 ns, then 128 buckets per power of two
 * (under 1% apart), up to 2^63. */
#define SUB 128
#define NBUCKETS (256 + 56 * SUB)
static uint64_t hist[NBUCKETS];

static int bucket_of(uint64_t ns)
{
    if (ns < 256)
        return (int)ns;
    int shift = 63 - __builtin_clzll(ns) - 7; /* keep the top 8 bits: 128..255 */
    return 256 + (shift - 1) * SUB + (int)((ns >> shift) - SUB);
}

static double bucket_mid(int b)
{
    if (b < 256)
        return b;
    int shift = (b - 256) / SUB + 1;
    uint64_t lo = (uint64_t)((b - 256) % SUB + SUB) << shift;
    return (double)lo + (double)((uint64_t)1 << shift) / 2;
}

static double percentile_ms(uint64_t total, double q)
{
    uint64_t want = (uint64_t)(q * (double)total);
    if (want >= total)
        want = total - 1;
    uint64_t seen = 0;
    for (int b = 0; b < NBUCKETS; b++) {
        seen += hist[b];
        if (seen > want)
            return bucket_mid(b) / 1e6;
    }
    return 0;
}

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* utime + stime of every thread of `pid`, in seconds; -1 if it cannot be read. */
static double proc_cpu_s(int pid)
{
    char path[64], line[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    size_t n = fread(line, 1, sizeof line - 1, f);
    fclose(f);
    line[n] = '\0';
    /* The command name (field 2) may hold spaces and parentheses: count fields after the
     * last ')'. utime and stime are fields 14 and 15, the 12th and 13th after it. */
    char *p = strrchr(line, ')');
    unsigned long long ut, st;
    if (p == NULL ||
        sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return -1;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* The message of round `r` on connection `i`: different on every connection and every round,
 * so that an answer meant for another connection, or a stale one, shows. */
static void fill(conn *c, int i)
{
    uint64_t x = ((uint64_t)i << 32) ^ c->round ^ 0x9e3779b97f4a7c15ull;
    for (int k = 0; k < MSG; k += 8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        memcpy(c->msg + k, &x, 8);
    }
}

static int ep;
static const char *failure; /* the first reason for check=FAIL */
static int fail_conn = -1;

static void fail(const char *why, int i)
{
    if (failure == NULL) {
        failure = why;
        fail_conn = i;
    }
}

static void want_out(conn *c, int i, int on)
{
    struct epoll_event ev = {.events = EPOLLIN | (on ? EPOLLOUT : 0), .data.u32 = (uint32_t)i};
    if (epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev) != 0)
        fail("epoll_ctl", i);
}

/* Writes the rest of the message in flight. 0, or -1 when the connection failed. */
static int push(conn *c, int i)
{
    while (c->sent < MSG) {
        ssize_t n = send(c->fd, c->msg + c->sent, (size_t)(MSG - c->sent), MSG_NOSIGNAL);
        if (n > 0) {
            c->sent += (int)n;
        } else if (n < 0 && errno == EAGAIN) {
            want_out(c, i, 1);
            return 0;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else {
            fail("send failed", i);
            return -1;
        }
    }
    return 0;
}

static void start_round(conn *c, int i)
{
    fill(c, i);
    c->sent = c->got = 0;
    c->t_send = now_ns();
    (void)push(c, i);
}

int main(int argc, char **argv)
{
    const char *prog = "echo_client";
    int port = 0, pid = 0, conns = 1000, warmup = 1, duration = 10, threads = 1;
    for (int i = 1; i < argc; i++) {
        if (i + 1 >= argc)
            goto usage;
        if (strcmp(argv[i], "--port") == 0)
            port = (int)io_number(prog, argv[++i], 1, 65535);
        else if (strcmp(argv[i], "--server-pid") == 0)
            pid = (int)io_number(prog, argv[++i], 1, 1 << 30);
        else if (strcmp(argv[i], "--conns") == 0)
            conns = (int)io_number(prog, argv[++i], 1, 1000000);
        else if (strcmp(argv[i], "--warmup") == 0)
            warmup = (int)io_number(prog, argv[++i], 0, 3600);
        else if (strcmp(argv[i], "--duration") == 0)
            duration = (int)io_number(prog, argv[++i], 1, 3600);
        else if (strcmp(argv[i], "--threads") == 0)
            threads = (int)io_number(prog, argv[++i], 1, 1 << 20);
        else
            goto usage;
    }
    if (port == 0 || pid == 0)
        goto usage;
    io_raise_nofile();
    if (proc_cpu_s(pid) < 0) {
        fprintf(stderr, "%s: cannot read /proc/%d/stat\n", prog, pid);
        return 1;
    }

    conn *cs = calloc((size_t)conns, sizeof *cs);
    ep = epoll_create1(EPOLL_CLOEXEC);
    if (cs == NULL || ep < 0) {
        perror(prog);
        return 1;
    }
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((unsigned short)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    /* Blocking connects: on loopback each completes in the kernel, into the server's accept
     * queue, whether or not the server has accepted the ones before. */
    for (int i = 0; i < conns; i++) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
            fprintf(stderr, "%s: connection %d of %d to 127.0.0.1:%d: %s\n", prog, i + 1, conns,
                    port, strerror(errno));
            return 1;
        }
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
        io_nodelay(fd);
        cs[i].fd = fd;
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
            perror("epoll_ctl");
            return 1;
        }
    }
    for (int i = 0; i < conns; i++)
        start_round(&cs[i], i);

    int64_t t0 = now_ns();
    int64_t t_measure = t0 + (int64_t)warmup * 1000000000;
    int64_t t_end = t_measure + (int64_t)duration * 1000000000;
    int measuring = 0;
    double cpu0 = 0, cpu1 = 0;
    uint64_t count = 0;
    int64_t t_start = t0, now = t0;
    if (warmup == 0) {
        measuring = 1;
        cpu0 = proc_cpu_s(pid);
    }

    struct epoll_event evs[512];
    while (failure == NULL) {
        int64_t until = measuring ? t_end : t_measure;
        int wait_ms = (int)((until - now + 999999) / 1000000);
        int n = epoll_wait(ep, evs, 512, wait_ms > 0 ? wait_ms : 0);
        if (n < 0 && errno != EINTR) {
            perror("epoll_wait");
            return 1;
        }
        for (int e = 0; e < n && failure == NULL; e++) {
            int i = (int)evs[e].data.u32;
            conn *c = &cs[i];
            if (evs[e].events & EPOLLOUT) {
                if (push(c, i) < 0)
                    break;
                if (c->sent == MSG)
                    want_out(c, i, 0);
            }
            if (!(evs[e].events & (EPOLLIN | EPOLLERR | EPOLLHUP)))
                continue;
            ssize_t r = read(c->fd, c->back + c->got, (size_t)(MSG - c->got));
            if (r == 0) {
                fail("the server closed a connection", i);
            } else if (r < 0) {
                if (errno != EAGAIN && errno != EINTR)
                    fail("read failed", i);
            } else if ((c->got += (int)r) == MSG) {
                int64_t t = now_ns();
                if (c->sent != MSG || memcmp(c->back, c->msg, MSG) != 0) {
                    fail("an answer differs from the message sent", i);
                    break;
                }
                c->done++;
                if (measuring && t < t_end) {
                    hist[bucket_of((uint64_t)(t - c->t_send))]++;
                    count++;
                }
                c->round++;
                start_round(c, i);
            }
        }
        now = now_ns();
        if (!measuring && now >= t_measure) {
            cpu0 = proc_cpu_s(pid);
            memset(hist, 0, sizeof hist);
            count = 0;
            t_start = now;
            measuring = 1;
        } else if (measuring && now >= t_end) {
            cpu1 = proc_cpu_s(pid);
            break;
        }
    }
    double seconds = (double)(now - t_start) / 1e9;
    for (int i = 0; i < conns; i++) {
        if (failure == NULL && cs[i].done == 0)
            fail("a connection never got an answer", i);
        close(cs[i].fd);
    }
    if (failure == NULL && count == 0)
        fail("no round trip completed in the measured interval", -1);
    if (failure == NULL && (cpu0 < 0 || cpu1 < 0))
        fail("the server's /proc/PID/stat could not be read", -1);
    double cpu = cpu1 - cpu0;
    printf("echo threads=%d conns=%d rps=%.0f p50_ms=%.3f p99_ms=%.3f server_cpu_s=%.2f "
           "per_cpu_s=%.0f check=%s\n",
           threads, conns, seconds > 0 ? (double)count / seconds : 0,
           count ? percentile_ms(count, 0.50) : 0, count ? percentile_ms(count, 0.99) : 0, cpu,
           cpu > 0 ? (double)count / cpu : 0, failure ? "FAIL" : "ok");
    if (failure != NULL) {
        if (fail_conn >= 0)
            fprintf(stderr, "%s: connection %d: %s\n", prog, fail_conn, failure);
        else
            fprintf(stderr, "%s: %s\n", prog, failure);
        return 1;
    }
    return 0;

usage:
    fprintf(stderr,
            "usage: %s --port P --server-pid PID [--conns C] [--warmup W] [--duration D]"
            " [--threads T]\n",
            prog);
    return 2;
}
