// SPDX-License-Identifier: MIT
/*
 * with_servers [--server VAR=PROGRAM]... [--nginx VAR] -- COMMAND [ARG]...
 *
 * The launcher of the examples that need a server: starts each server on 127.0.0.1 and a free
 * port, puts the port into the environment variable VAR, runs COMMAND, then stops every server
 * by its PID and waits for it, whatever COMMAND did. Exits with COMMAND's status, or 1 when a
 * server could not start or did not stop cleanly (a sanitizer report at its exit included).
 *
 * COMMAND also finds the servers' PIDs in WITH_SERVERS_PIDS (for the launcher's own test).
 *
 * A --server PROGRAM is one of weft's servers: started as `PROGRAM --port 0 --threads 2`, it
 * prints port=P once it listens, and exits 0 on SIGTERM. --nginx starts nginx with a private
 * configuration in a temporary folder (as tools/bench does), serving GET / as weft_http does;
 * when nginx is not installed VAR is left unset and COMMAND says so, when it is installed and
 * does not start the launcher fails with the reason.
 *
 * Children are asked to die with the launcher (PR_SET_PDEATHSIG), so that a launcher killed by
 * CTest's timeout leaves no server behind either. nginx's workers are its master's children,
 * which no such signal reaches, and its folder needs removing: a guard process, forked at the
 * start in a session of its own, learns of nginx's process group and folder through a pipe, and
 * when the launcher ends without saying it cleaned up (a signal, SIGKILL included, closes the
 * pipe) kills the group and removes the folder.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <grp.h>
#include <netinet/in.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_SERVERS 8
#define START_LIMIT_MS 10000
#define STOP_LIMIT_MS 10000

typedef struct server {
    const char *var;
    const char *program;
    pid_t pid;
    int out;   /* the read end of its stdout, kept open so that a late line cannot SIGPIPE it */
    int nginx; /* its own process group, stopped as a group */
} server;

static server servers[MAX_SERVERS];
static int n_servers;
static char nginx_prefix[64];

static long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* The guard's end of its pipe: "pg N" and "dir PATH" lines name what it cleans up, "done" says
 * the launcher did. -1: no guard. */
static int guard_fd = -1;

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw);

static void guard_run(int fd)
{
    char buf[4096];
    size_t len = 0;
    ssize_t n;
    while (len < sizeof buf - 1 &&
           ((n = read(fd, buf + len, sizeof buf - 1 - len)) > 0 || (n < 0 && errno == EINTR)))
        if (n > 0)
            len += (size_t)n;
    buf[len] = '\0';
    if (strstr(buf, "done\n"))
        _exit(0);
    for (char *line = strtok(buf, "\n"); line; line = strtok(NULL, "\n")) {
        if (strncmp(line, "pg ", 3) == 0)
            kill(-(pid_t)atoi(line + 3), SIGKILL);
        else if (strncmp(line, "dir ", 4) == 0)
            nftw(line + 4, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    }
    _exit(0);
}

static void guard_start(void)
{
    /* A socket pair, not a pipe: a write to a guard that is gone fails with EPIPE, without the
     * SIGPIPE that would end the launcher before its own stop. */
    int p[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, p) != 0)
        return; /* no guard: the launcher's own stop still runs unless it is killed */
    pid_t g = fork();
    if (g == 0) {
        close(p[1]);
        setsid(); /* a terminal's Ctrl-C is for the launcher, not for its guard */
        signal(SIGINT, SIG_IGN);
        signal(SIGTERM, SIG_IGN);
        signal(SIGHUP, SIG_IGN);
        guard_run(p[0]);
    }
    close(p[0]);
    if (g > 0)
        guard_fd = p[1];
    else
        close(p[1]);
}

static void guard_tell(const char *what, const char *value)
{
    if (guard_fd < 0)
        return;
    char line[128];
    int n = snprintf(line, sizeof line, "%s%s\n", what, value);
    if (n > 0 && (size_t)n < sizeof line && send(guard_fd, line, (size_t)n, MSG_NOSIGNAL) != n)
        perror("with_servers: guard");
}

/* In a forked child: die with the launcher. */
static void die_with_parent(pid_t parent)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
        _exit(127); /* the launcher is gone already */
}

/* Starts a weft server and reads its port=P line. The port, or -1 with a message. */
static int start_weft_server(server *s)
{
    int pipefd[2];
    if (pipe2(pipefd, O_CLOEXEC) != 0) {
        perror("with_servers: pipe");
        return -1;
    }
    pid_t parent = getpid();
    s->pid = fork();
    if (s->pid < 0) {
        perror("with_servers: fork");
        return -1;
    }
    if (s->pid == 0) {
        die_with_parent(parent);
        dup2(pipefd[1], STDOUT_FILENO);
        execl(s->program, s->program, "--port", "0", "--threads", "2", (char *)NULL);
        fprintf(stderr, "with_servers: exec %s: %s\n", s->program, strerror(errno));
        _exit(127);
    }
    close(pipefd[1]);
    char line[64];
    size_t len = 0;
    long until = now_ms() + START_LIMIT_MS;
    int port = -1;
    while (port < 0) {
        long left = until - now_ms();
        struct pollfd p = {.fd = pipefd[0], .events = POLLIN};
        int r = left > 0 ? poll(&p, 1, (int)left) : 0;
        if (r == 0) {
            fprintf(stderr, "with_servers: %s printed no port within %d ms\n", s->program,
                    START_LIMIT_MS);
            break;
        }
        if (r < 0 && errno == EINTR)
            continue;
        ssize_t n = read(pipefd[0], line + len, sizeof line - 1 - len);
        if (n <= 0) {
            fprintf(stderr, "with_servers: %s exited before it listened\n", s->program);
            break;
        }
        len += (size_t)n;
        line[len] = '\0';
        if (strchr(line, '\n') != NULL) {
            if (sscanf(line, "port=%d", &port) != 1 || port <= 0) {
                fprintf(stderr, "with_servers: %s printed '%s', not port=P\n", s->program, line);
                break;
            }
        } else if (len == sizeof line - 1) {
            fprintf(stderr, "with_servers: %s printed no port line\n", s->program);
            break;
        }
    }
    s->out = pipefd[0];
    return port;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static const char *find_nginx(void)
{
    static const char *const paths[] = {"/usr/sbin/nginx", "/usr/local/sbin/nginx",
                                        "/usr/bin/nginx"};
    for (size_t i = 0; i < sizeof paths / sizeof *paths; i++)
        if (access(paths[i], X_OK) == 0)
            return paths[i];
    return NULL;
}

/* A port free on 127.0.0.1 now, for nginx, which cannot pick its own and print it. */
static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof a;
    int port = -1;
    if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &alen) == 0)
        port = ntohs(a.sin_port);
    if (fd >= 0)
        close(fd);
    return port;
}

static int accepts(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((unsigned short)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int ok = fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
    if (fd >= 0)
        close(fd);
    return ok;
}

/* Whether the socket listening on `port` is one of the process group `pgid`'s: a process that
 * took the free port before nginx could bind it accepts too, and nginx then exits after its
 * bind retries. */
static int listens_itself(int port, pid_t pgid)
{
    char want[32][40];
    int n = 0;
    const char *tables[] = {"/proc/net/tcp", "/proc/net/tcp6"};
    for (int t = 0; t < 2; t++) {
        FILE *f = fopen(tables[t], "r");
        if (f == NULL)
            continue;
        char row[512];
        while (fgets(row, sizeof row, f) && n < 32) {
            char local[64];
            unsigned state;
            unsigned long inode;
            if (sscanf(row, " %*d: %63s %*s %x %*s %*s %*s %*s %*s %lu", local, &state, &inode) !=
                3)
                continue;
            char *colon = strrchr(local, ':');
            if (state == 0x0A && colon && strtol(colon + 1, NULL, 16) == port)
                snprintf(want[n++], sizeof want[0], "socket:[%lu]", inode);
        }
        fclose(f);
    }
    int found = 0;
    DIR *procs = opendir("/proc");
    struct dirent *p;
    while (n > 0 && !found && procs && (p = readdir(procs)) != NULL) {
        pid_t pid = (pid_t)atoi(p->d_name);
        if (pid <= 0 || getpgid(pid) != pgid)
            continue;
        char dir[64];
        snprintf(dir, sizeof dir, "/proc/%d/fd", (int)pid);
        DIR *fds = opendir(dir);
        struct dirent *e;
        while (!found && fds && (e = readdir(fds)) != NULL) {
            char path[384], target[64];
            snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
            ssize_t len = readlink(path, target, sizeof target - 1);
            if (len <= 0)
                continue;
            target[len] = '\0';
            for (int i = 0; i < n && !found; i++)
                found = strcmp(target, want[i]) == 0;
        }
        if (fds)
            closedir(fds);
    }
    if (procs)
        closedir(procs);
    return found;
}

static void print_file(const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return;
    char buf[512];
    while (fgets(buf, sizeof buf, f))
        fprintf(stderr, "  %s", buf);
    fclose(f);
}

/* Starts nginx with a configuration of its own in a temporary folder. The port; 0 when nginx
 * is not installed; -1 with the reason when it is and did not start. */
static int start_nginx(server *s)
{
    const char *nginx = find_nginx();
    if (nginx == NULL) {
        fprintf(stderr, "with_servers: nginx is not installed; %s is not set\n", s->var);
        return 0;
    }
    strcpy(nginx_prefix, "/tmp/weft-example-nginx-XXXXXX");
    int port = free_port();
    int made = mkdtemp(nginx_prefix) != NULL;
    if (made)
        guard_tell("dir ", nginx_prefix);
    if (!made || port < 0) {
        perror("with_servers: nginx folder or port");
        nginx_prefix[0] = '\0';
        return -1;
    }
    char user[96] = "";
    if (geteuid() == 0) {
        /* The workers leave root for nobody, who must be able to enter the prefix. */
        chmod(nginx_prefix, 0755);
        struct passwd *pw = getpwnam("nobody");
        struct group *gr = pw ? getgrgid(pw->pw_gid) : NULL;
        if (pw && gr)
            snprintf(user, sizeof user, "user nobody %s;", gr->gr_name);
        else
            snprintf(user, sizeof user, "user root;");
    }
    /* Every temporary path the package was configured with, moved into the prefix (a
     * directive of a module left out of the build would stop nginx). */
    char temp_paths[1024] = "";
    char cmd[300];
    snprintf(cmd, sizeof cmd, "%s -V 2>&1", nginx);
    FILE *v = popen(cmd, "r");
    char configure[8192] = "";
    if (v != NULL) {
        size_t got = fread(configure, 1, sizeof configure - 1, v);
        configure[got] = '\0';
        pclose(v);
    }
    static const char *const kinds[] = {"client-body", "proxy", "fastcgi", "uwsgi", "scgi"};
    for (size_t k = 0; k < sizeof kinds / sizeof *kinds; k++) {
        char with[64], without[64], directive[32];
        snprintf(with, sizeof with, "--http-%s-temp-path=", kinds[k]);
        snprintf(without, sizeof without, "--without-http_%s_module", kinds[k]);
        if (strstr(configure, with) == NULL || strstr(configure, without) != NULL)
            continue;
        snprintf(directive, sizeof directive, "%s", kinds[k]);
        for (char *d = directive; *d; d++)
            if (*d == '-')
                *d = '_';
        size_t used = strlen(temp_paths);
        snprintf(temp_paths + used, sizeof temp_paths - used, "  %s_temp_path %s/%s;\n", directive,
                 nginx_prefix, directive);
    }
    char conf[256], errlog[256];
    snprintf(conf, sizeof conf, "%s/nginx.conf", nginx_prefix);
    snprintf(errlog, sizeof errlog, "%s/error.log", nginx_prefix);
    FILE *f = fopen(conf, "w");
    if (f == NULL) {
        perror("with_servers: nginx.conf");
        return -1;
    }
    fprintf(f,
            "%s\nworker_processes 1;\npid %s/nginx.pid;\nerror_log %s warn;\n"
            "events { worker_connections 256; }\n"
            "http {\n  access_log off;\n%s"
            "  server {\n    listen 127.0.0.1:%d;\n"
            "    location = / { default_type text/plain; return 200 \"Hello, World!\"; }\n"
            "  }\n}\n",
            user, nginx_prefix, errlog, temp_paths, port);
    fclose(f);

    pid_t parent = getpid();
    s->pid = fork();
    if (s->pid < 0) {
        perror("with_servers: fork");
        return -1;
    }
    if (s->pid == 0) {
        die_with_parent(parent);
        setpgid(0, 0); /* master and workers go together */
        execl(nginx, nginx, "-p", nginx_prefix, "-c", conf, "-e", errlog, "-g", "daemon off;",
              (char *)NULL);
        fprintf(stderr, "with_servers: exec %s: %s\n", nginx, strerror(errno));
        _exit(127);
    }
    setpgid(s->pid, s->pid);
    s->nginx = 1;
    char pg[16];
    snprintf(pg, sizeof pg, "%d", (int)s->pid);
    guard_tell("pg ", pg);
    /* nginx says nothing when it is ready: it is once it accepts. */
    for (long until = now_ms() + START_LIMIT_MS; now_ms() < until; sleep_ms(10)) {
        int status;
        if (waitpid(s->pid, &status, WNOHANG) == s->pid) {
            fprintf(stderr, "with_servers: nginx exited at start (status %d):\n", status);
            print_file(errlog);
            s->pid = 0;
            return -1;
        }
        if (accepts(port) && listens_itself(port, s->pid))
            return port;
    }
    fprintf(stderr,
            "with_servers: nginx did not accept on port %d within %d ms (or another "
            "process holds the port):\n",
            port, START_LIMIT_MS);
    print_file(errlog);
    return -1;
}

/* SIGTERM, then SIGKILL after STOP_LIMIT_MS. 0 if the server exited with status 0 (nginx:
 * any exit after the signal). */
static int stop(server *s)
{
    if (s->pid <= 0)
        return 0;
    kill(s->nginx ? -s->pid : s->pid, SIGTERM);
    int status = 0;
    long until = now_ms() + STOP_LIMIT_MS;
    pid_t r;
    while ((r = waitpid(s->pid, &status, WNOHANG)) == 0 && now_ms() < until)
        sleep_ms(5);
    if (r == 0) {
        fprintf(stderr, "with_servers: %s did not stop within %d ms; killed\n", s->program,
                STOP_LIMIT_MS);
        kill(s->nginx ? -s->pid : s->pid, SIGKILL);
        waitpid(s->pid, &status, 0);
        return 1;
    }
    if (s->nginx) {
        kill(-s->pid, SIGKILL); /* workers that outlived their master */
        return 0;
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "with_servers: %s ended badly (status 0x%x)\n", s->program, status);
        return 1;
    }
    return 0;
}

static void usage(void)
{
    fprintf(stderr, "usage: with_servers [--server VAR=PROGRAM]... [--nginx VAR] -- COMMAND...\n");
    exit(2);
}

int main(int argc, char **argv)
{
    int i = 1;
    for (; i < argc && strcmp(argv[i], "--") != 0; i++) {
        if (i + 1 >= argc || n_servers == MAX_SERVERS)
            usage();
        server *s = &servers[n_servers++];
        if (strcmp(argv[i], "--server") == 0) {
            char *eq = strchr(argv[++i], '=');
            if (eq == NULL)
                usage();
            *eq = '\0';
            s->var = argv[i];
            s->program = eq + 1;
        } else if (strcmp(argv[i], "--nginx") == 0) {
            s->var = argv[++i];
            s->program = "nginx";
            s->nginx = 1;
        } else {
            usage();
        }
    }
    if (i + 1 >= argc)
        usage();
    char **command = argv + i + 1;

    guard_start();
    int status = 1, failed = 0;
    for (int k = 0; k < n_servers && !failed; k++) {
        server *s = &servers[k];
        int port = s->nginx ? start_nginx(s) : start_weft_server(s);
        if (port < 0) {
            failed = 1;
        } else if (port > 0) {
            char text[16];
            snprintf(text, sizeof text, "%d", port);
            setenv(s->var, text, 1);
        }
    }
    if (!failed) {
        /* For tests of this launcher: the servers' PIDs, to check that they are gone after. */
        char pids[MAX_SERVERS * 12] = "";
        for (int k = 0; k < n_servers; k++)
            if (servers[k].pid > 0)
                snprintf(pids + strlen(pids), sizeof pids - strlen(pids), "%s%d", k ? " " : "",
                         (int)servers[k].pid);
        setenv("WITH_SERVERS_PIDS", pids, 1);
        pid_t parent = getpid();
        pid_t pid = fork();
        if (pid == 0) {
            die_with_parent(parent);
            execvp(command[0], command);
            fprintf(stderr, "with_servers: exec %s: %s\n", command[0], strerror(errno));
            _exit(127);
        }
        if (pid < 0 || waitpid(pid, &status, 0) != pid) {
            perror("with_servers: running the command");
            status = 1;
        } else if (WIFSIGNALED(status)) {
            fprintf(stderr, "with_servers: %s killed by signal %d\n", command[0], WTERMSIG(status));
            status = 128 + WTERMSIG(status);
        } else {
            status = WEXITSTATUS(status);
        }
    }
    for (int k = n_servers - 1; k >= 0; k--) {
        failed |= stop(&servers[k]);
        if (servers[k].out > 0)
            close(servers[k].out);
    }
    if (nginx_prefix[0] != '\0')
        nftw(nginx_prefix, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    guard_tell("done", "");
    return status != 0 ? status : failed;
}
