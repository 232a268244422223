// SPDX-License-Identifier: MIT
/*
 * What every example shares: EXPECT, the check that makes an example a test, and the port of
 * the server that with_servers started for it.
 */
#ifndef WEFT_EXAMPLE_H
#define WEFT_EXAMPLE_H

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

/* Ends the program with status 1 and the failed condition when `cond` is false. _exit, not
 * exit: a runtime still running need not be torn down for a failure to be reported. */
#define EXPECT(cond)                                                                               \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: expected %s\n", __FILE__, __LINE__, #cond);                    \
            fflush(stdout);                                                                        \
            fflush(stderr);                                                                        \
            _exit(1);                                                                              \
        }                                                                                          \
    } while (0)

/* The port of example_server (with_servers sets EXAMPLE_SERVER_PORT). */
static inline int example_server_port(void)
{
    const char *v = getenv("EXAMPLE_SERVER_PORT");
    if (v == NULL || atoi(v) <= 0) {
        fprintf(stderr, "EXAMPLE_SERVER_PORT is not set: run this example under with_servers\n");
        _exit(2);
    }
    return atoi(v);
}

#endif
