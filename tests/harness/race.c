// SPDX-License-Identifier: MIT
/* Self-check of the test harness (WEFT_TEST_HARNESS_SELFCHECK): a stress program with a data race
 * (and, under ASan, a leak) that exits 0. Registered with WILL_FAIL, so it passes only if the
 * sanitizer's report makes the program fail by its exit status alone. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "weft.h"

static long counter;
static void *volatile sink;

static void *bump(void *arg)
{
    (void)arg;
    for (int i = 0; i < 100000; i++)
        counter++;
    return NULL;
}

int main(void)
{
    sink = malloc(77);
    sink = NULL;
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        pthread_create(&t[i], NULL, bump, NULL);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    printf("counter=%ld at %lld ns\n", counter, (long long)weft_now());
    return 0;
}
