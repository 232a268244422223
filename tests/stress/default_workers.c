// SPDX-License-Identifier: MIT
/*
 * The default worker count (weft_config.workers 0): one worker per CPU the process may run on,
 * at most 256. (It was every CPU online, unbounded: a runtime started on a machine of more than
 * 256 CPUs ran more workers than the arrays sized by the limit hold, and weft_dump wrote past
 * one of them; a process confined to one CPU of many by taskset ran a worker per CPU anyway.)
 *
 * The program defines sched_getaffinity itself, which the static library's call binds to: it
 * answers a mask of FAKE CPUs when `fake` is set, else asks the kernel. Checked:
 *   - the process confined to one of its CPUs: the default is 1 worker;
 *   - confined to two (where it may use two): 2 workers;
 *   - a mask of 300 CPUs: 256 workers, which run tasks, and a dump of the runtime (which walks
 *     every worker) that succeeds;
 *   - an explicit count above 256 is still refused with -EINVAL.
 *
 * Usage: default_workers
 * Prints one line per check; exits 0 when all held, 1 otherwise.
 */
#define STRESS_NAME "default_workers"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "../support.h"
#include "weft.h"

#define FAKE 300
#define LIMIT 256

static int fake;

int sched_getaffinity(pid_t pid, size_t size, cpu_set_t *set)
{
    if (fake) {
        CPU_ZERO_S(size, set);
        for (int i = 0; i < FAKE; i++)
            CPU_SET_S(i, size, set);
        return 0;
    }
    static int (*real)(pid_t, size_t, cpu_set_t *);
    if (!real)
        real = (int (*)(pid_t, size_t, cpu_set_t *))dlsym(RTLD_NEXT, "sched_getaffinity");
    if (!real) {
        errno = ENOSYS;
        return -1;
    }
    return real(pid, size, set);
}

typedef struct census {
    unsigned workers;
    atomic_int ran; /* tasks that ran */
    int dump_rc;
} census;

static int visit(void *p)
{
    census *c = p;
    weft_yield(); /* still there, some of them, when the root dumps */
    atomic_fetch_add(&c->ran, 1);
    return 0;
}

static int count_root(void *p)
{
    census *c = p;
    c->workers = weft_workers();
    weft_scope *s;
    int rc = weft_scope_open(&s, NULL);
    if (rc)
        return rc;
    for (unsigned i = 0; i < 4 * c->workers && rc == 0; i++)
        rc = weft_spawn(s, visit, c);
    int fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
    c->dump_rc = fd < 0 ? -errno : weft_dump(NULL, fd, WEFT_DUMP_TEXT);
    if (fd >= 0)
        close(fd);
    int jrc = weft_scope_close(s);
    return rc ? rc : jrc;
}

/* Starts a runtime of the default size and counts it. */
static int run_default(census *c)
{
    memset(c, 0, sizeof(*c));
    /* No watchdog: 256 workers on a machine of two CPUs wait their turn for longer than its
     * limit, and it would report every task that waited. */
    weft_config cfg = {.watchdog_ns = -1};
    return weft_run(&cfg, count_root, c);
}

/* Confines the process to the first `n` CPUs of `allowed`; 0 if it could. */
static int confine(const cpu_set_t *allowed, int n)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    for (int cpu = 0, taken = 0; cpu < CPU_SETSIZE && taken < n; cpu++) {
        if (CPU_ISSET(cpu, allowed)) {
            CPU_SET(cpu, &set);
            taken++;
        }
    }
    return sched_setaffinity(0, sizeof(set), &set);
}

int main(void)
{
    cpu_set_t allowed;
    if (sched_getaffinity(0, sizeof(allowed), &allowed) != 0) {
        printf("default_workers: FAILED: no affinity mask: %s\n", strerror(errno));
        return 1;
    }
    census c;
    int have = CPU_COUNT(&allowed);
    for (int n = 1; n <= 2 && n <= have; n++) {
        CHECK(confine(&allowed, n) == 0, "sched_setaffinity: %s", strerror(errno));
        int rc = run_default(&c);
        printf("default_workers: confined to %d CPU(s): weft_run %d, %u worker(s)\n", n, rc,
               c.workers);
        CHECK(rc == 0, "weft_run %d", rc);
        CHECK(c.workers == (unsigned)n, "%u workers on %d CPU(s)", c.workers, n);
    }
    CHECK(sched_setaffinity(0, sizeof(allowed), &allowed) == 0, "restoring the mask: %s",
          strerror(errno));

    fake = 1;
    int rc = run_default(&c);
    fake = 0;
    int ran = atomic_load(&c.ran);
    printf("default_workers: %d CPUs: weft_run %d, %u workers, %d tasks ran, dump %d\n", FAKE, rc,
           c.workers, ran, c.dump_rc);
    CHECK(rc == 0, "weft_run %d", rc);
    CHECK(c.workers == LIMIT, "%u workers for %d CPUs", c.workers, FAKE);
    CHECK(ran == 4 * LIMIT, "%d of %d tasks ran", ran, 4 * LIMIT);
    CHECK(c.dump_rc > 0, "weft_dump %d", c.dump_rc);

    weft_config over = {.workers = LIMIT + 1};
    rc = weft_run(&over, count_root, &c);
    printf("default_workers: %d workers asked for: weft_run %d\n", LIMIT + 1, rc);
    CHECK(rc == -EINVAL, "weft_run %d", rc);

    int failed = atomic_load(&failures) != 0;
    printf("default_workers: %s\n", failed ? "FAILED" : "OK");
    return failed;
}
