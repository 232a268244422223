// SPDX-License-Identifier: MIT
/*
 * weft where membarrier(2) is refused (a sandbox's seccomp filter, an old kernel): the runtime
 * must keep the fences that the asymmetric barrier replaces elsewhere (lib/barrier.h), so that
 * fork-join, a spawn waited for by a task that computes, and spawns into a scope by tasks that
 * do not own it all still work at two workers.
 *
 * The program installs a seccomp filter that makes membarrier fail with ENOSYS (as a kernel
 * without it would), checks that the call is refused, then runs at two workers:
 *   - fib(22) with a task per call: the result must be right;
 *   - a task that spawns a child and then waits for it in a plain loop: the other worker must
 *     take the child (with the barrier, a rescue steal would; without, an ordinary steal);
 *   - a scope into which 64 siblings spawn, each from a task that does not own it: every one must
 *     run once before the scope's join returns.
 *
 * Usage: no_membarrier
 * Prints one line per check; exits 0 when all held, 1 when one failed or when no seccomp filter
 * could be installed (the reason is printed).
 */
#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <linux/membarrier.h>

#include "../support.h"
#include "weft.h"

/* A filter that fails membarrier with ENOSYS and allows every other call. */
static int refuse_membarrier(void)
{
    struct sock_filter code[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_membarrier, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (ENOSYS & SECCOMP_RET_DATA)),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = {.len = sizeof(code) / sizeof(code[0]), .filter = code};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
        return -errno;
    if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) != 0)
        return -errno;
    return 0;
}

/* ---- fib ---- */

static int fib_root(void *p)
{
    *(long *)p = support_fib(22, NULL);
    return 0;
}

/* ---- a spawn waited for in a plain loop ---- */

typedef struct compute {
    atomic_int child_ran, timed_out;
} compute;

static int set_flag(void *p)
{
    atomic_store(&((compute *)p)->child_ran, 1);
    return 0;
}

static int spawn_then_spin(void *p)
{
    compute *c = p;
    weft_scope *s;
    int rc = weft_scope_open(&s, NULL);
    if (rc)
        return rc;
    rc = weft_spawn(s, set_flag, c);
    weft_time safety = weft_now() + 10 * WEFT_SEC;
    while (rc == 0 && !atomic_load(&c->child_ran) && weft_now() < safety)
        ;
    if (!atomic_load(&c->child_ran))
        atomic_store(&c->timed_out, 1);
    int jrc = weft_scope_close(s);
    return rc ? rc : jrc;
}

/* ---- siblings ---- */

#define SIBLINGS 64

typedef struct siblings {
    weft_scope *scope;
    atomic_int ran, joined, late, spawn_errors;
} siblings;

static int sibling(void *p)
{
    siblings *sb = p;
    if (atomic_load(&sb->joined))
        atomic_fetch_add(&sb->late, 1);
    atomic_fetch_add(&sb->ran, 1);
    return 0;
}

/* A child of the scope that spawns a sibling into it: a spawn by a task that is not the owner. */
static int spawner(void *p)
{
    siblings *sb = p;
    if (weft_spawn(sb->scope, sibling, sb) != 0)
        atomic_fetch_add(&sb->spawn_errors, 1);
    return 0;
}

static int siblings_root(void *p)
{
    siblings *sb = p;
    int rc = weft_scope_open(&sb->scope, NULL);
    if (rc)
        return rc;
    for (int i = 0; i < SIBLINGS && rc == 0; i++)
        rc = weft_spawn(sb->scope, spawner, sb);
    int jrc = weft_scope_join(sb->scope);
    atomic_store(&sb->joined, 1);
    weft_scope_release(sb->scope);
    return rc ? rc : jrc;
}

int main(void)
{
    int rc = refuse_membarrier();
    if (rc) {
        printf("no_membarrier: FAILED: no seccomp filter could be installed: %s\n", strerror(-rc));
        return 1;
    }
    errno = 0;
    long q = syscall(SYS_membarrier, MEMBARRIER_CMD_QUERY, 0, 0);
    if (q != -1 || errno != ENOSYS) {
        printf("no_membarrier: FAILED: the filter did not refuse membarrier (%ld, %s)\n", q,
               strerror(errno));
        return 1;
    }
    int failed = 0;

    long f = 0;
    rc = run_on(2, fib_root, &f);
    printf("no_membarrier: fib(22) at two workers: %ld (want 17711), weft_run %d\n", f, rc);
    failed |= rc != 0 || f != 17711;

    compute c;
    memset(&c, 0, sizeof(c));
    rc = run_on(2, spawn_then_spin, &c);
    printf("no_membarrier: a spawn waited for in a plain loop: child ran %d, timed out %d, "
           "weft_run %d\n",
           atomic_load(&c.child_ran), atomic_load(&c.timed_out), rc);
    failed |= rc != 0 || !atomic_load(&c.child_ran) || atomic_load(&c.timed_out);

    siblings sb;
    memset(&sb, 0, sizeof(sb));
    rc = run_on(2, siblings_root, &sb);
    printf("no_membarrier: %d siblings spawned by tasks that do not own their scope: ran %d, "
           "after the join %d, refused %d, weft_run %d\n",
           SIBLINGS, atomic_load(&sb.ran), atomic_load(&sb.late), atomic_load(&sb.spawn_errors),
           rc);
    failed |= rc != 0 || atomic_load(&sb.ran) != SIBLINGS || atomic_load(&sb.late) ||
              atomic_load(&sb.spawn_errors);

    printf("no_membarrier: %s\n", failed ? "FAILED" : "OK");
    return failed;
}
