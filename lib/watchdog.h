// SPDX-License-Identifier: MIT
/* The watchdog (watchdog.c). */
#ifndef WEFT_WATCHDOG_H
#define WEFT_WATCHDOG_H

#include "runtime.h"

/** Starts the watchdog thread of `rt` if its configuration asks for one. */
void weft__watchdog_start(weft_runtime *rt);
/** Stops it, if it runs. */
void weft__watchdog_stop(weft_runtime *rt);

/** The runtime whose watchdog thread the caller is (inside a report callback), else NULL. */
weft_runtime *weft__watchdog_runtime(void);

#endif
