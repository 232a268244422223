// SPDX-License-Identifier: MIT
/*
 * The worker loop and main() of the io_uring peers (uring_echo.c, uring_http.c), written once.
 * Included at the end of a peer, after it has defined UP_NAME (its program name), its `worker`
 * (a `up u` ring, a `conn head` list, and under io_uring's own receives a `starved` list) and
 * its handlers: on_accept (URING_POLL: the listener is readable) or on_accepted (a connection
 * came), feed_starved (buffers came back), and on_conn (a completion of a connection's).
 */
#ifndef UP_NAME
#error "define UP_NAME before including uring_loop.h"
#endif

static void *worker_main(void *arg)
{
    worker *w = arg;
    w->head.next = w->head.prev = &w->head;
    up_start(&w->u, UP_NAME);
    for (int running = 1; running;) {
#ifndef URING_POLL
        if (w->u.recycled > 0 && w->starved != NULL) {
            up_publish(&w->u);
            feed_starved(w);
        }
#endif
        up_wait(&w->u, UP_NAME);
        unsigned head, seen = 0;
        struct io_uring_cqe *cqe;
        io_uring_for_each_cqe(&w->u.ring, head, cqe)
        {
            seen++;
            uint64_t ud = io_uring_cqe_get_data64(cqe);
            unsigned tag = (unsigned)(ud & UP_TAGS);
            void *p = (void *)(uintptr_t)(ud & ~(uint64_t)UP_TAGS);
            if (ud == UP_IGNORE)
                continue;
            if (ud == UP_STOP) {
                running = 0;
                break;
            }
            if (ud == UP_LISTEN) {
#ifdef URING_POLL
                on_accept(w);
#else
                if (cqe->res >= 0)
                    on_accepted(w, cqe->res);
                else if (cqe->res != -EINTR && cqe->res != -ECONNABORTED)
                    fprintf(stderr, UP_NAME ": accept: %s\n", strerror(-cqe->res));
#endif
                if (!(cqe->flags & IORING_CQE_F_MORE))
                    up_listen(&w->u);
                continue;
            }
            on_conn(w, p, tag, cqe);
        }
        io_uring_cq_advance(&w->u.ring, seen);
    }
    /* Tearing the ring down ends every operation in flight; then nothing refers to a
     * connection any more. */
    up_stop(&w->u);
    while (w->head.next != &w->head) {
        conn *c = w->head.next;
        c->prev->next = c->next;
        c->next->prev = c->prev;
        close(c->fd);
        free(c);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    io_opts o;
    io_parse(argc, argv, &o);
    io_raise_nofile();
    worker *ws = calloc(o.threads, sizeof *ws);
    if (ws == NULL) {
        perror(UP_NAME);
        return 1;
    }
    int rc = up_main(&o, ws, sizeof *ws, worker_main, UP_NAME);
    free(ws);
    return rc;
}
