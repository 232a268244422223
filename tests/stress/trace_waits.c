// SPDX-License-Identifier: MIT
/*
 * A traced run of tasks that wait, at one worker, where the order of what runs is fixed: a task
 * that sleeps, one that reads an empty pipe until another writes it (a park on a descriptor: a
 * kind of wait too large for the event's first byte, and a descriptor number as its argument),
 * and one that yields, under a named scope and with names. check_trace_waits.py reads the file:
 * each park with what it waited on, its wake-up, the resumes, the names. Usage: trace_waits FILE
 * PYTHON CHECKER.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "../support.h"

static int fds[2];
static atomic_int reading;

static int sleeper(void *arg)
{
    (void)arg;
    return weft_sleep_for(WEFT_MSEC);
}

/* At one worker nothing runs between the flag and the read's park: the pipe is still empty. */
static int reader(void *arg)
{
    (void)arg;
    char c;
    atomic_store(&reading, 1);
    return weft_read(fds[0], &c, 1) == 1 && c == 'x' ? 0 : -EIO;
}

static int writer(void *arg)
{
    (void)arg;
    while (!atomic_load(&reading))
        if (weft_yield() != 0)
            return -ECANCELED;
    return weft_write(fds[1], "x", 1) == 1 ? 0 : -EIO;
}

static int yielder(void *arg)
{
    (void)arg;
    for (int i = 0; i < 3; i++)
        if (weft_yield() != 0)
            return -ECANCELED;
    return 0;
}

static int root(void *arg)
{
    (void)arg;
    weft_scope *s;
    weft_scope_opts so = {.name = "waits-scope-of-24-bytes!"};
    if (weft_scope_open(&s, &so) != 0)
        return -EIO;
    static const struct {
        const char *name;
        weft_fn fn;
    } tasks[] = {
        {"sleeper", sleeper}, {"writer", writer}, {"reader", reader}, {"yielder", yielder}};
    for (size_t i = 0; i < sizeof(tasks) / sizeof(tasks[0]); i++) {
        weft_spawn_opts o = {.name = tasks[i].name};
        if (weft_spawn_ex(s, tasks[i].fn, NULL, &o) != 0)
            abort();
    }
    return weft_scope_close(s);
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: trace_waits FILE PYTHON CHECKER\n");
        return 2;
    }
    /* A descriptor number the checker knows, and over a varint byte's 127. */
    int p[2];
    if (pipe2(p, O_NONBLOCK | O_CLOEXEC) != 0 || dup3(p[0], 200, O_CLOEXEC) != 200) {
        perror("pipe");
        return 1;
    }
    fds[0] = 200;
    fds[1] = p[1];
    close(p[0]);
    weft_config cfg = {.workers = 1, .trace_path = argv[1]};
    int rc = weft_run(&cfg, root, NULL);
    if (rc != 0) {
        fprintf(stderr, "weft_run: %d\n", rc);
        return 1;
    }
    execl(argv[2], argv[2], argv[3], argv[1], "200", (char *)NULL);
    perror("exec");
    return 1;
}
