// SPDX-License-Identifier: MIT
/* A program built against an installed weft only, as a user builds one (tests/package/check.sh):
 * a runtime, a scope, a child, its failure read back, the version and an error text. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <weft.h>

static int child(void *arg)
{
    (void)arg;
    return weft_fail(-EIO, "child %d", 7);
}

static int root(void *arg)
{
    (void)arg;
    weft_scope *s;
    int rc = weft_scope_open(&s, NULL);
    if (rc)
        return rc;
    rc = weft_spawn(s, child, NULL);
    if (rc)
        return rc;
    rc = weft_scope_join(s);
    const weft_error *e = weft_scope_error(s, 0);
    int ok = rc == -EIO && e && strcmp(e->message, "child 7") == 0;
    weft_scope_release(s);
    return ok ? 0 : -EPROTO;
}

int main(void)
{
    if (weft_version() != WEFT_VERSION) {
        fprintf(stderr, "consumer: library %d, header %d\n", weft_version(), WEFT_VERSION);
        return 1;
    }
    int rc = weft_run(&(weft_config){.workers = 2}, root, NULL);
    if (rc) {
        fprintf(stderr, "consumer: weft_run: %s\n", weft_strerror(rc));
        return 1;
    }
    printf("weft %s ok\n", WEFT_VERSION_STRING);
    return 0;
}
