// SPDX-License-Identifier: MIT
/*
 * Dumps of a runtime's tree (dump.c): weft_dump, the process's list of runtimes (which the dump
 * signal and the debugger script walk), and the dump signal's handler and thread.
 */
#ifndef WEFT_DUMP_H
#define WEFT_DUMP_H

#include "weft.h"

/** Lists `rt` among the process's runtimes and, when its configuration names a dump signal,
 *  installs the handler for it (and starts the process's dump thread the first time). 0, or
 *  -EAGAIN when the dump thread or its pipe cannot be made. Called by the runtime's creation,
 *  once its workers run. */
int weft__dump_register(weft_runtime *rt);

/** Takes `rt` off the list (waiting for a dump the signal started to end), puts the signal's
 *  previous action back when no other runtime wants it, and closes `rt` to dumps: a weft_dump
 *  running on another thread ends first, a later one returns -ESHUTDOWN. Called by the
 *  runtime's end before it frees anything a dump reads. */
void weft__dump_unregister(weft_runtime *rt);

/** Makes `rt` a runtime dumps may read (its lock). Called at the runtime's creation. */
void weft__dump_init(weft_runtime *rt);

#endif
