#include "proc.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "mem.h"

extern char **environ;

struct proc_buf {
    char *data;
    size_t len, cap, max;
};

static void proc_buf_append(struct proc_buf *b, const char *src, size_t n)
{
    if (b->len + n > b->max)
        n = b->max - b->len;
    if (n == 0)
        return;
    if (b->len + n + 1 > b->cap) {
        b->cap = (b->len + n + 1) * 2;
        b->data = bh_xrealloc(b->data, b->cap);
    }
    memcpy(b->data + b->len, src, n);
    b->len += n;
    b->data[b->len] = '\0';
}

static long long proc_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int proc_spawn(const char *const argv[], const struct bh_proc_opts *o, int pin[2],
                      int pout[2], int perr[2], pid_t *pid)
{
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    if (o->stdin_data)
        posix_spawn_file_actions_adddup2(&fa, pin[0], 0);
    else
        posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    if (o->stdout_fd >= 0) {
        posix_spawn_file_actions_adddup2(&fa, o->stdout_fd, 1);
        posix_spawn_file_actions_adddup2(&fa, o->stdout_fd, 2);
    } else {
        posix_spawn_file_actions_adddup2(&fa, pout[1], 1);
        posix_spawn_file_actions_adddup2(&fa, perr[1], 2);
    }
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    sigset_t none;
    sigemptyset(&none);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK);
    int r = posix_spawnp(pid, argv[0], &fa, &attr, (char *const *)argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    return r;
}

/* Pumps stdin/stdout/stderr until both outputs close or the deadline passes. */
static int proc_pump(const struct bh_proc_opts *o, int in_fd, int out_fd, int err_fd,
                     struct proc_buf *out, struct proc_buf *errb)
{
    size_t in_off = 0;
    long long deadline = o->timeout_ms > 0 ? proc_now_ms() + o->timeout_ms : 0;
    char buf[8192];
    while (out_fd >= 0 || err_fd >= 0) {
        struct pollfd p[3] = {{out_fd, POLLIN, 0}, {err_fd, POLLIN, 0}, {in_fd, POLLOUT, 0}};
        int wait = deadline ? (int)(deadline - proc_now_ms()) : -1;
        if (deadline && wait <= 0)
            return -1;
        if (poll(p, 3, wait) < 0 && errno != EINTR)
            return -1;
        if (p[2].revents & (POLLOUT | POLLERR | POLLHUP)) {
            ssize_t w = write(in_fd, o->stdin_data + in_off, o->stdin_len - in_off);
            in_off += w > 0 ? (size_t)w : 0;
            if (w < 0 || in_off >= o->stdin_len) {
                close(in_fd);
                in_fd = -1;
            }
        }
        for (int i = 0; i < 2; i++) {
            int *fd = i == 0 ? &out_fd : &err_fd;
            if (!(p[i].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            ssize_t r = read(*fd, buf, sizeof(buf));
            if (r > 0)
                proc_buf_append(i == 0 ? out : errb, buf, (size_t)r);
            else if (r == 0 || errno != EINTR) {
                close(*fd);
                *fd = -1;
            }
        }
    }
    if (in_fd >= 0)
        close(in_fd);
    return 0;
}

int bh_proc_run(const char *const argv[], const struct bh_proc_opts *opts,
                struct bh_proc_result *res, struct bh_err *err)
{
    struct bh_proc_opts o = {.stdout_fd = -1};
    if (opts)
        o = *opts;
    memset(res, 0, sizeof(*res));
    int pin[2] = {-1, -1}, pout[2] = {-1, -1}, perr[2] = {-1, -1};
    if ((o.stdin_data && pipe2(pin, O_CLOEXEC) < 0) || pipe2(pout, O_CLOEXEC) < 0 ||
        pipe2(perr, O_CLOEXEC) < 0)
        return bh_err_errno(err, BH_EIO, "pipe for %s", argv[0]);
    pid_t pid;
    int r = proc_spawn(argv, &o, pin, pout, perr, &pid);
    close(pout[1]);
    close(perr[1]);
    if (pin[0] >= 0)
        close(pin[0]);
    if (r != 0) {
        close(pout[0]), close(perr[0]);
        if (pin[1] >= 0)
            close(pin[1]);
        errno = r;
        return bh_err_errno(err, BH_EIO, "cannot run %s", argv[0]);
    }
    size_t max = o.max_output ? o.max_output : (1u << 20);
    struct proc_buf out = {.max = max}, errb = {.max = max};
    int timed_out = proc_pump(&o, pin[1], pout[0], perr[0], &out, &errb) < 0;
    if (timed_out)
        kill(pid, SIGKILL);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    /* proc_pump closes what it finished; on timeout close the rest here. */
    if (timed_out) {
        close(pout[0]), close(perr[0]);
        if (pin[1] >= 0)
            close(pin[1]);
    }
    res->exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    res->out = out.data ? out.data : bh_xstrdup("");
    res->out_len = out.len;
    res->errout = errb.data ? errb.data : bh_xstrdup("");
    res->err_len = errb.len;
    if (timed_out)
        return bh_err_set(err, BH_ETIMEOUT, "%s timed out after %d ms", argv[0], o.timeout_ms);
    return 0;
}

int bh_proc_check(const char *const argv[], struct bh_err *err)
{
    struct bh_proc_result res;
    if (bh_proc_run(argv, NULL, &res, err) < 0) {
        bh_proc_result_free(&res);
        return -1;
    }
    int rc = 0;
    if (res.exit_code != 0) {
        size_t n = res.err_len;
        while (n > 0 && (res.errout[n - 1] == '\n' || res.errout[n - 1] == ' '))
            res.errout[--n] = '\0';
        rc = bh_err_set(err, BH_EIO, "%s %s exited %d: %.300s", argv[0], argv[1] ? argv[1] : "",
                        res.exit_code, res.errout);
    }
    bh_proc_result_free(&res);
    return rc;
}

void bh_proc_result_free(struct bh_proc_result *res)
{
    free(res->out);
    free(res->errout);
    res->out = res->errout = NULL;
}
