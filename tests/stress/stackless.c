// SPDX-License-Identifier: MIT
/*
 * Work that is accepted but can never get a stack. A spawn that cannot be given one is refused
 * (-ENOMEM); a task that was accepted and finds no stack when it first runs ends with -ENOMEM as
 * its failure, its function never called; a root task that cannot have one makes weft_run
 * return -ENOMEM. Nothing waits for a stack, so nothing may spin or hang.
 *
 * Each scenario runs in a forked child under alarm(CHILD_SECONDS): a child that hangs dies of
 * SIGALRM and the check fails, instead of the program hanging. The child checks its own counts
 * and writes one line to a pipe; the parent checks the child's exit status and that line.
 *
 *   1. RLIMIT_AS at values from 8 MiB to 1 GiB; the root spawns tasks of the runtime's stack
 *      size, of 256 KiB, 4 MiB and 1 GiB into a fail-fast scope (they wait at a barrier until
 *      every accepted one has started, so that their stacks are all held at once) and into a
 *      scope of max_concurrency 1 (the first takes the slot, accepted whatever its stack). The
 *      same limits again with 3000 tasks of the runtime's size: more than a slab of stacks.
 *   2. A stack of 1 GiB under 256 MiB of address space, into a plain and a limited scope.
 *   3. The memory-map entries of the process used up (vm.max_map_count) but for 0, 10 or 100,
 *      and the scenario of 1 with 400 tasks.
 *   4. Every allocation failing once the children are spawned (the allocation hook), so that
 *      the stacks mapped so far are all there are: some children must end unrun.
 *
 * "Not lost": every spawn that returned 0 either ran its function, or its scope's join returned
 * -ENOMEM (and every failure the scope recorded is -ENOMEM, one per task that never ran at most).
 *
 * Under the sanitizers, 1 and 2 are skipped: their shadow memory (terabytes of reserved address
 * space) does not survive a lowered RLIMIT_AS. So is 3 where their own allocators run out of
 * map entries: under ASan with fewer than 100 left, under TSan at all. Each skip says why.
 */
#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "alloc.h"
#include "weft.h"

#if defined(__SANITIZE_THREAD__)
#define UNDER_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define UNDER_TSAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__) || defined(UNDER_TSAN)
#define UNDER_SANITIZER 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_SANITIZER 1
#endif
#endif

#define CHILD_SECONDS 10
#define KIB ((size_t)1 << 10)
#define MIB ((size_t)1 << 20)
#define GIB ((size_t)1 << 30)

/* The largest stack the scenarios ask for. Under ASan a task that starts clears the shadow of
 * its whole stack (an eighth of it: 128 MiB of writes for 1 GiB), which made hundreds of them
 * take minutes. */
#ifdef UNDER_SANITIZER
#define BIG (16 * MIB)
#else
#define BIG GIB
#endif

static int failures;

/* ---- the scenario, in the child --------------------------------------------------------- */

typedef struct group {
    atomic_int accepted;  /* spawns that returned 0 */
    atomic_int refused;   /* spawns that returned -ENOMEM */
    atomic_int cancelled; /* spawns that returned -ECANCELED: a sibling's -ENOMEM (fail-fast) */
    atomic_int other;     /* spawns that returned anything else */
    atomic_int ran;       /* functions that ran */
    int barrier;          /* its tasks wait at the barrier */
    int joined;
    int join;
    size_t errors, nomem; /* failures the scope recorded; those of them that are -ENOMEM */
} group;

typedef struct scenario {
    int plain_tasks;
    const size_t *plain_sizes; /* cycled through; 0: the runtime's */
    int nsizes;
    int limited;        /* also a scope of max_concurrency 1 */
    int gib_cannot_map; /* RLIMIT_AS below 1 GiB: no 1 GiB stack ran */
    weft_fn root;       /* NULL: root() */
    unsigned workers;   /* 0: 2 */
    size_t stack_size;  /* the runtime's; 0: the default */
    int want_unrun;     /* some accepted task must have ended unrun (scenario 4) */
    int leak_check;     /* the child ends with exit(), for LeakSanitizer (scenario 4) */
    group plain, lim;
} scenario;

/* A barrier: the tasks of the plain scope hold their stacks until every accepted one has
 * started, as a program's tasks waiting for each other would. A task that waits for a stack
 * while the others wait for it never comes; one that ends with -ENOMEM instead cancels the
 * scope (fail-fast), which wakes them. */
static weft_sem *gate; /* one token, taken before the run, given by the last task to arrive */
static atomic_int arrived, opened;
static atomic_int expected = 1 << 30; /* set by the root once it has spawned everything */

static void open_gate(void)
{
    if (!atomic_exchange(&opened, 1))
        weft_sem_release(gate);
}

static int body(void *arg)
{
    group *g = arg;
    atomic_fetch_add(&g->ran, 1);
    if (!g->barrier)
        return 0;
    if (atomic_fetch_add(&arrived, 1) + 1 == atomic_load(&expected))
        open_gate();
    if (weft_sem_acquire(gate) == 0)
        weft_sem_release(gate);
    return 0;
}

static void spawn_into(weft_scope *s, group *g, size_t stack, const char *name)
{
    weft_spawn_opts o = {.name = name, .stack_size = stack};
    int rc = stack || name ? weft_spawn_ex(s, body, g, &o) : weft_spawn(s, body, g);
    atomic_fetch_add(rc == 0            ? &g->accepted
                     : rc == -ENOMEM    ? &g->refused
                     : rc == -ECANCELED ? &g->cancelled
                                        : &g->other,
                     1);
}

static void end_group(weft_scope *s, group *g)
{
    g->join = weft_scope_join(s);
    g->joined = 1;
    g->errors = weft_scope_error_count(s);
    g->nomem = weft_scope_error_count_code(s, -ENOMEM);
    weft_scope_release(s);
}

static int root(void *arg)
{
    scenario *sc = arg;
    int rc;
    weft_scope *s, *l = NULL;
    weft_scope_opts po = {.policy = WEFT_FAIL_FAST};
    sc->plain.barrier = 1;
    if ((rc = weft_scope_open(&s, &po)) != 0)
        return rc;
    for (int i = 0; i < sc->plain_tasks; i++)
        spawn_into(s, &sc->plain, sc->plain_sizes[i % sc->nsizes], NULL);
    weft_scope_opts lo = {.policy = WEFT_COLLECT, .max_concurrency = 1};
    if (sc->limited && weft_scope_open(&l, &lo) == 0) {
        /* The first takes the slot at once: accepted whatever its stack. The others wait: bare
         * (the owner's plain spawns), with a record (named), with a size of their own. */
        spawn_into(l, &sc->lim, BIG, NULL);
        for (int i = 0; i < 3; i++)
            spawn_into(l, &sc->lim, 0, NULL);
        spawn_into(l, &sc->lim, 0, "named");
        spawn_into(l, &sc->lim, 4 * MIB, NULL);
    }
    atomic_store(&expected, atomic_load(&sc->plain.accepted));
    if (atomic_load(&arrived) == atomic_load(&expected))
        open_gate();
    if (l)
        end_group(l, &sc->lim);
    end_group(s, &sc->plain);
    return 0;
}

/* Appends what `g` saw to `out`; 0 when nothing accepted was lost. */
static int check_group(const char *what, const group *g, char *out, size_t cap)
{
    int acc = atomic_load(&g->accepted), ran = atomic_load(&g->ran);
    int ok = atomic_load(&g->other) == 0 && ran <= acc;
    if (g->joined) /* its join reports exactly the tasks that never ran */
        ok = ok && (acc == ran ? g->join == 0 : g->join == -ENOMEM) && g->errors == g->nomem &&
             g->nomem <= (size_t)(acc - ran) && (!atomic_load(&g->cancelled) || g->join == -ENOMEM);
    else
        ok = ok && acc == 0;
    size_t n = strlen(out);
    snprintf(out + n, cap - n,
             "; %s: %d accepted, %d ran, %d refused, %d cancelled, %d other, join %d, "
             "%zu of %zu failures -ENOMEM",
             what, acc, ran, atomic_load(&g->refused), atomic_load(&g->cancelled),
             atomic_load(&g->other), g->join, g->nomem, g->errors);
    return ok ? 0 : -1;
}

/* Runs `sc` and reports on `fd`: "ok ..." or "FAIL ...". Exits the child. */
static void run_and_report(int fd, const char *label, scenario *sc, int need_run)
{
    weft_config cfg = {
        .workers = sc->workers ? sc->workers : 2, .stack_size = sc->stack_size, .watchdog_ns = -1};
    if (weft_sem_create(&gate, 1) != 0 || weft_sem_try_acquire(gate) != 0) {
        dprintf(fd, "FAIL %s: no semaphore\n", label);
        _exit(1);
    }
    int rc = weft_run(&cfg, sc->root ? sc->root : root, sc);
    /* The runtime itself may not fit: no memory (-ENOMEM) or no thread (-EAGAIN). */
    int ok = need_run ? rc == 0 : rc == 0 || rc == -ENOMEM || rc == -EAGAIN;
    char line[1024];
    snprintf(line, sizeof(line), "weft_run %d", rc);
    ok = check_group("plain", &sc->plain, line, sizeof(line)) == 0 && ok;
    ok = check_group("limited", &sc->lim, line, sizeof(line)) == 0 && ok;
    if (sc->gib_cannot_map) /* the plain scope had only a 1 GiB task, the limited one first */
        ok = ok && atomic_load(&sc->plain.ran) == 0 &&
             (atomic_load(&sc->lim.accepted) == 0 ||
              atomic_load(&sc->lim.ran) < atomic_load(&sc->lim.accepted));
    if (sc->want_unrun) /* at one worker the limited scope's first child is picked while
                         * allocations fail; at two, perhaps only after */
        ok = ok && atomic_load(&sc->plain.ran) < atomic_load(&sc->plain.accepted) &&
             (cfg.workers > 1 || atomic_load(&sc->lim.ran) < atomic_load(&sc->lim.accepted));
    dprintf(fd, "%s %s: %s\n", ok ? "ok" : "FAIL", label, line);
    if (sc->leak_check)
        exit(ok ? 0 : 1); /* LeakSanitizer looks at exit: all was freed */
    _exit(ok ? 0 : 1);
}

static const size_t mix[] = {0, BIG, 4 * MIB, 0, 256 * KIB};

static void scenario_mix(scenario *sc, int tasks)
{
    memset(sc, 0, sizeof(*sc));
    sc->plain_tasks = tasks;
    sc->plain_sizes = mix;
    sc->nsizes = (int)(sizeof(mix) / sizeof(mix[0]));
    sc->limited = 1;
}

/* ---- the parent ------------------------------------------------------------------------- */

typedef void (*child_fn)(int fd, long param);

/* Runs fn(fd, param) in a child bounded by alarm(CHILD_SECONDS) and checks what it reports. */
static void bounded(const char *label, child_fn fn, long param)
{
    int p[2];
    if (pipe(p) != 0) {
        perror("pipe");
        failures++;
        return;
    }
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        failures++;
        return;
    }
    if (pid == 0) {
        close(p[0]);
        alarm(CHILD_SECONDS);
        fn(p[1], param);
        _exit(2);
    }
    close(p[1]);
    char buf[2048];
    size_t n = 0;
    for (;;) {
        ssize_t r = read(p[0], buf + n, sizeof(buf) - 1 - n);
        if (r > 0)
            n += (size_t)r;
        else if (r == 0 || errno != EINTR || n == sizeof(buf) - 1)
            break;
    }
    buf[n] = 0;
    close(p[0]);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (WIFSIGNALED(status)) {
        int sig = WTERMSIG(status);
        printf("FAIL %s: killed by signal %d%s\n%s", label, sig,
               sig == SIGALRM ? " (still running after the alarm: spinning or hung)" : "", buf);
        failures++;
    } else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || strncmp(buf, "ok ", 3) != 0) {
        printf("FAIL %s: exit status %d\n%s", label, WIFEXITED(status) ? WEXITSTATUS(status) : -1,
               buf);
        failures++;
    } else {
        fputs(buf, stdout);
    }
}

/* ---- 1 and 2: address space ------------------------------------------------------------- */
#ifndef UNDER_SANITIZER /* see main */

static void limit_as(long bytes)
{
    struct rlimit rl = {.rlim_cur = (rlim_t)bytes, .rlim_max = (rlim_t)bytes};
    setrlimit(RLIMIT_AS, &rl);
}

static void child_as_mix(int fd, long bytes)
{
    scenario sc;
    scenario_mix(&sc, 40);
    limit_as(bytes);
    char label[64];
    snprintf(label, sizeof(label), "RLIMIT_AS %ld MiB, mixed stacks", bytes >> 20);
    run_and_report(fd, label, &sc, 0);
}

static const size_t runtime_size[] = {0};

/* More tasks of the runtime's size than a slab of stacks holds: a spawn checks only that its
 * worker has one stack at hand, so where the next slab cannot be mapped, tasks already accepted
 * find none when they start. */
static void child_as_many(int fd, long bytes)
{
    scenario sc = {.plain_tasks = 3000, .plain_sizes = runtime_size, .nsizes = 1};
    limit_as(bytes);
    char label[64];
    snprintf(label, sizeof(label), "RLIMIT_AS %ld MiB, 3000 stacks", bytes >> 20);
    run_and_report(fd, label, &sc, 0);
}

static const size_t one_gib[] = {GIB};

static void child_as_gib(int fd, long bytes)
{
    scenario sc = {
        .plain_tasks = 1, .plain_sizes = one_gib, .nsizes = 1, .limited = 1, .gib_cannot_map = 1};
    limit_as(bytes);
    /* The runtime fits in 256 MiB: it must run. */
    run_and_report(fd, "RLIMIT_AS 256 MiB, a 1 GiB stack", &sc, 1);
}

#endif

/* ---- 3: memory-map entries ----------------------------------------------------------------- */

static long max_map_count(void)
{
    long v = 65530;
    FILE *f = fopen("/proc/sys/vm/max_map_count", "r");
    if (f) {
        if (fscanf(f, "%ld", &v) != 1)
            v = 65530;
        fclose(f);
    }
    return v;
}

static void child_map_count(int fd, long headroom)
{
    long page = sysconf(_SC_PAGESIZE);
    size_t cap = (size_t)max_map_count() + 4096;
    void **maps = mmap(NULL, cap * sizeof(void *), PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (maps == MAP_FAILED) {
        dprintf(fd, "FAIL map entries: no room for the list\n");
        _exit(1);
    }
    /* One page each, protections alternating so that neighbours never merge into one entry. */
    size_t n = 0;
    int err = 0;
    while (n < cap) {
        void *m = mmap(NULL, (size_t)page, n % 2 ? PROT_READ : PROT_NONE,
                       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (m == MAP_FAILED) {
            err = errno;
            break;
        }
        maps[n++] = m;
    }
    if (err != ENOMEM) {
        dprintf(fd, "FAIL map entries: %zu mappings made, then errno %d (want ENOMEM)\n", n, err);
        _exit(1);
    }
    for (long i = 0; i < headroom && n > 0; i++)
        munmap(maps[--n], (size_t)page);
    /* More stacks of their own (one map entry each) than 100 entries hold. */
    scenario sc;
    scenario_mix(&sc, 400);
    char label[96];
    snprintf(label, sizeof(label), "map entries used up (%zu tiny mappings) but %ld", n, headroom);
    run_and_report(fd, label, &sc, 0);
}

/* ---- 4: memory that stays exhausted, under any build -------------------------------------- */

/* Stacks of 4 MiB: a slab holds 16. Every allocation fails from the moment the children are
 * spawned, so the slab is all there is: the root lets the children start (at one worker, one
 * per yield; past 61 picks the injection queue is looked at first), each holds its stack at
 * the gate, and those after the 15th find none. The limited scope's first child holds
 * its slot without the stack of its own size it asked for; its bare successors inherit its
 * record, and find no stack either. */
static int root_refusing(void *arg)
{
    scenario *sc = arg;
    weft_scope *s, *l;
    weft_scope_opts po = {.policy = WEFT_COLLECT};
    weft_scope_opts lo = {.policy = WEFT_COLLECT, .max_concurrency = 1};
    sc->plain.barrier = 1;
    int rc = weft_scope_open(&s, &po);
    if (rc)
        return rc;
    for (int i = 0; i < sc->plain_tasks; i++)
        spawn_into(s, &sc->plain, 0, NULL);
    if ((rc = weft_scope_open(&l, &lo)) != 0) {
        weft_scope_close(s);
        return rc;
    }
    weft__alloc_fail_all(1);
    spawn_into(l, &sc->lim, 256 * KIB, NULL);
    weft__alloc_fail_all(0);
    for (int i = 0; i < 3; i++)
        spawn_into(l, &sc->lim, 0, NULL);
    weft__alloc_fail_all(1);
    for (int i = 0; i < sc->plain_tasks + 64; i++)
        weft_yield();
    /* Every plain child has started by now (it ran, or found no stack and ended unrun) at one
     * worker; at two the other worker may hold some it took and has not started yet, which
     * would start after the allocations come back. Wait for them while allocations still fail. */
    for (long i = 0;
         i < 1000000 && atomic_load(&sc->plain.ran) + (int)weft_scope_error_count_code(s, -ENOMEM) <
                            sc->plain_tasks;
         i++)
        weft_yield();
    weft__alloc_fail_all(0);
    open_gate(); /* not a barrier here: the scope is not fail-fast */
    end_group(l, &sc->lim);
    end_group(s, &sc->plain);
    return 0;
}

static void child_refusing(int fd, long workers)
{
    scenario sc = {.plain_tasks = 40,
                   .root = root_refusing,
                   .workers = (unsigned)workers,
                   .stack_size = 4 * MIB,
                   .want_unrun = 1,
                   .leak_check = 1};
    char label[64];
    snprintf(label, sizeof(label), "every allocation failing, 4 MiB stacks, %ld worker(s)",
             workers);
    run_and_report(fd, label, &sc, 1);
}

int main(void)
{
#ifndef UNDER_SANITIZER
    static const long limits_mib[] = {8, 16, 24, 32, 48, 64, 96, 128, 192, 256, 512, 1024};
    for (size_t i = 0; i < sizeof(limits_mib) / sizeof(limits_mib[0]); i++) {
        char label[64];
        snprintf(label, sizeof(label), "RLIMIT_AS %ld MiB", limits_mib[i]);
        bounded(label, child_as_mix, limits_mib[i] << 20);
    }
    for (size_t i = 0; i < sizeof(limits_mib) / sizeof(limits_mib[0]); i++) {
        char label[64];
        snprintf(label, sizeof(label), "RLIMIT_AS %ld MiB, 3000 stacks", limits_mib[i]);
        bounded(label, child_as_many, limits_mib[i] << 20);
    }
    bounded("RLIMIT_AS 256 MiB, 1 GiB stack", child_as_gib, 256l << 20);
#else
    printf("skipped: the RLIMIT_AS scenarios (1, 2): a sanitizer's shadow memory reserves "
           "terabytes of address space, so the process cannot run under a lowered RLIMIT_AS\n");
#endif
    static const long headroom[] = {0, 10, 100};
    for (size_t i = 0; i < sizeof(headroom) / sizeof(headroom[0]); i++) {
        char label[64];
#ifdef UNDER_TSAN
        printf("skipped: map entries, %ld left: ThreadSanitizer's internal allocator maps "
               "memory as it goes, and aborts the process when map entries run short\n",
               headroom[i]);
        continue;
#elif defined(UNDER_SANITIZER)
        if (headroom[i] < 100) {
            printf("skipped: map entries, %ld left: AddressSanitizer's allocator maps memory as "
                   "it goes, and aborts the process when no map entry is left\n",
                   headroom[i]);
            continue;
        }
#endif
        snprintf(label, sizeof(label), "map entries, %ld left", headroom[i]);
        bounded(label, child_map_count, headroom[i]);
    }
    bounded("allocations failing, 1 worker", child_refusing, 1);
    /* At two workers the children end unrun on either, while the other starts or ends others. */
    for (int i = 0; i < 20; i++)
        bounded("allocations failing, 2 workers", child_refusing, 2);
    printf("stackless: %s, %d failed\n", failures ? "FAIL" : "ok", failures);
    return failures ? 1 : 0;
}
