// SPDX-License-Identifier: MIT
/*
 * The accept loop, worker loop and main() of the epoll peers (epoll_echo.c, epoll_http.c),
 * written once. Included at the end of a peer, after it has defined EP_NAME (its program name),
 * its `conn` (fd, prev, next), its `worker` (lfd, ep, a `conn head` list), `stop_fd`, and
 * conn_start (a new connection's own state) and conn_run (run a connection until it would
 * block; -1 to close).
 */
#ifndef EP_NAME
#error "define EP_NAME before including epoll_loop.h"
#endif

static void conn_close(conn *c)
{
    c->prev->next = c->next;
    c->next->prev = c->prev;
    close(c->fd); /* also leaves the epoll set */
    free(c);
}

static void accept_all(worker *w)
{
    for (;;) {
        int fd = accept4(w->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno != EAGAIN)
                perror(EP_NAME ": accept4");
            return; /* EAGAIN, or out of descriptors: the next edge retries */
        }
        io_nodelay(fd);
        conn *c = malloc(sizeof *c);
        if (c == NULL) {
            close(fd);
            continue;
        }
        c->fd = fd;
        conn_start(c);
        c->next = w->head.next;
        c->prev = &w->head;
        c->next->prev = c;
        w->head.next = c;
        struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
                                 .data.ptr = c};
        if (epoll_ctl(w->ep, EPOLL_CTL_ADD, fd, &ev) != 0 || conn_run(c) < 0)
            conn_close(c);
    }
}

static void *worker_main(void *arg)
{
    worker *w = arg;
    w->head.next = w->head.prev = &w->head;
    w->ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event lev = {.events = EPOLLIN | EPOLLET, .data.ptr = w};
    struct epoll_event sev = {.events = EPOLLIN, .data.ptr = NULL};
    if (w->ep < 0 || epoll_ctl(w->ep, EPOLL_CTL_ADD, w->lfd, &lev) != 0 ||
        epoll_ctl(w->ep, EPOLL_CTL_ADD, stop_fd, &sev) != 0) {
        perror(EP_NAME ": epoll");
        exit(1);
    }
    struct epoll_event evs[256];
    for (int running = 1; running;) {
        int n = epoll_wait(w->ep, evs, 256, -1);
        if (n < 0 && errno != EINTR) {
            perror(EP_NAME ": epoll_wait");
            exit(1);
        }
        for (int i = 0; i < n; i++) {
            if (evs[i].data.ptr == NULL)
                running = 0;
            else if (evs[i].data.ptr == w)
                accept_all(w);
            else if (conn_run(evs[i].data.ptr) < 0)
                conn_close(evs[i].data.ptr);
        }
    }
    while (w->head.next != &w->head)
        conn_close(w->head.next);
    close(w->lfd);
    close(w->ep);
    return NULL;
}

int main(int argc, char **argv)
{
    io_opts o;
    io_parse(argc, argv, &o);
    io_raise_nofile();

    /* Blocked here, before any thread starts, so that only sigwait below takes them. */
    sigset_t sigs;
    io_block_stop_signals(&sigs);

    stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    worker *ws = calloc(o.threads, sizeof *ws);
    pthread_t *tids = calloc(o.threads, sizeof *tids);
    if (stop_fd < 0 || ws == NULL || tids == NULL) {
        perror(EP_NAME);
        return 1;
    }
    int port = o.port;
    for (unsigned i = 0; i < o.threads; i++) {
        ws[i].lfd = io_listen(port, 1, &port);
        if (ws[i].lfd < 0) {
            fprintf(stderr, EP_NAME ": listen on 127.0.0.1:%d: %s\n", port, strerror(-ws[i].lfd));
            return 1;
        }
    }
    printf("port=%d\n", port);
    fflush(stdout);
    for (unsigned i = 0; i < o.threads; i++)
        if (pthread_create(&tids[i], NULL, worker_main, &ws[i]) != 0) {
            fprintf(stderr, EP_NAME ": pthread_create failed\n");
            return 1;
        }

    int sig;
    sigwait(&sigs, &sig);
    uint64_t one = 1;
    if (write(stop_fd, &one, sizeof one) != sizeof one)
        perror(EP_NAME ": eventfd");
    for (unsigned i = 0; i < o.threads; i++)
        pthread_join(tids[i], NULL);
    return 0;
}
