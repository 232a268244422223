// SPDX-License-Identifier: MIT
/*
 * A C++ exception that escapes a function weft calls ends the process in std::terminate, wherever
 * the function runs: on a task's own stack, inline on its joiner's stack inside the joiner's own
 * try block, as the piece of a parallel loop its caller runs itself, in a reduce's combine, on a
 * thread of the blocking pool, or in the report callback the end of a runtime calls (a trace it
 * could not write). It never unwinds through weft's frames into a catch beyond them (which
 * skipped the end of the task and left its scope waiting for ever, or a runtime's end half
 * done). An exception caught inside the task is plain C++.
 *
 * Each case runs in a child process (bounded by alarm) that must die of SIGABRT; reaching the
 * parent's catch exits 3, a run that returns exits 4.
 */
#include <cerrno>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <sys/wait.h>
#include <unistd.h>

#include "weft.h"

namespace
{

int thrower(void *)
{
    throw std::runtime_error("escaped a task");
}

// The child has a stack of its own: a join never runs it inline.
int own_stack(void *)
{
    weft_scope *s;
    if (weft_scope_open(&s, nullptr))
        return -EIO;
    weft_spawn_opts o{};
    o.stack_size = 128 * 1024;
    try {
        weft_spawn_ex(s, thrower, nullptr, &o);
        weft_scope_close(s);
    } catch (...) {
        _exit(3);
    }
    return 0;
}

// One worker: the join runs the child inline, below this try block.
int inline_child(void *)
{
    try {
        weft_scope *s;
        if (weft_scope_open(&s, nullptr))
            return -EIO;
        weft_spawn(s, thrower, nullptr);
        weft_scope_close(s);
    } catch (...) {
        _exit(3);
    }
    return 0;
}

int range_thrower(int64_t, int64_t, void *)
{
    throw std::runtime_error("escaped a loop");
}

// A range of one index: the caller runs the only piece itself.
int loop_piece(void *)
{
    try {
        weft_parallel_for(0, 1, 1, range_thrower, nullptr);
    } catch (...) {
        _exit(3);
    }
    return 0;
}

int nothing(void *);

// A fork that nobody takes (one worker): the caller runs the forked function itself.
int fork_caller(void *)
{
    try {
        weft_fork_join(thrower, nullptr, nothing, nullptr);
    } catch (...) {
        _exit(3);
    }
    return 0;
}

int map_sum(int64_t b, int64_t e, void *partial, void *)
{
    *static_cast<int64_t *>(partial) += e - b;
    return 0;
}

void combine_thrower(void *, const void *, void *)
{
    throw std::runtime_error("escaped combine");
}

int reduce_combine(void *)
{
    int64_t zero = 0, out = 0;
    try {
        weft_parallel_reduce(0, 8, 1, sizeof(int64_t), &zero, map_sum, combine_thrower, nullptr,
                             &out);
    } catch (...) {
        _exit(3);
    }
    return 0;
}

int blocking_thrower(void *)
{
    throw std::runtime_error("escaped a blocking call");
}

int blocking_call(void *)
{
    try {
        int r = 0;
        weft_blocking(blocking_thrower, nullptr, &r);
    } catch (...) {
        _exit(3);
    }
    return 0;
}

// Caught where it is thrown: nothing of weft's is involved.
int caught_inside(void *)
{
    try {
        throw std::runtime_error("caught");
    } catch (const std::runtime_error &) {
        return 0;
    }
}

// The report callback, called as the runtime ends with a trace it could not write: it throws.
void throwing_report(void *, int, const char *)
{
    throw std::runtime_error("escaped a report callback");
}

int nothing(void *)
{
    return 0;
}

struct scenario {
    const char *name;
    weft_fn root;
    unsigned workers;
    bool aborts;
    bool report_throws = false; // a trace on /dev/full, reported through throwing_report
};

// 0 if the case ended as it must, else 1 (with a line saying how it ended).
int run_case(const scenario &c)
{
    std::fflush(nullptr);
    pid_t pid = fork();
    if (pid < 0) {
        std::perror("fork");
        return 1;
    }
    if (pid == 0) {
        alarm(20); // a hang (the bug this guards against) dies of SIGALRM, not of SIGABRT
        weft_config cfg{};
        cfg.workers = c.workers;
        if (c.report_throws) {
            cfg.trace_path = "/dev/full";
            cfg.report = throwing_report;
        }
        int rc = 0;
        try {
            rc = weft_run(&cfg, c.root, nullptr);
        } catch (...) {
            _exit(3);
        }
        _exit(rc == 0 ? 0 : 4);
    }
    int st = 0;
    if (waitpid(pid, &st, 0) != pid) {
        std::perror("waitpid");
        return 1;
    }
    bool ok = c.aborts ? WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT
                       : WIFEXITED(st) && WEXITSTATUS(st) == 0;
    if (ok) {
        std::printf("%s: %s, as it must\n", c.name, c.aborts ? "std::terminate" : "exit 0");
        return 0;
    }
    if (WIFSIGNALED(st))
        std::printf("FAIL %s: killed by signal %d\n", c.name, WTERMSIG(st));
    else
        std::printf("FAIL %s: exit status %d (3: caught beyond weft's frames, 4: run returned)\n",
                    c.name, WEXITSTATUS(st));
    return 1;
}

} // namespace

int main()
{
    const scenario cases[] = {
        {"own stack", own_stack, 2, true},
        {"inline child", inline_child, 1, true},
        {"loop piece", loop_piece, 1, true},
        {"reduce combine", reduce_combine, 2, true},
        {"blocking pool", blocking_call, 1, true},
        {"caught inside", caught_inside, 1, false},
        {"report callback", nothing, 1, true, true},
        {"forked, run by its caller", fork_caller, 1, true},
    };
    int failed = 0;
    for (const scenario &c : cases)
        failed += run_case(c);
    return failed ? 1 : 0;
}
