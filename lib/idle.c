/* A worker's sleep on a futex word; see idle.h. */
#include "idle.h"

#include "futex.h"

void weft__idle_init(weft__idle *i)
{
    atomic_init(&i->seq, 0);
}

void weft__idle_sleep(weft__idle *i, uint32_t ticket, weft_time deadline)
{
    weft__futex_wait(&i->seq, ticket, deadline);
}

void weft__idle_wake(weft__idle *i)
{
    weft__futex_bump(&i->seq);
}
