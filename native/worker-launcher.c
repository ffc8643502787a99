/*
 * worker-launcher setuid entry.
 *
 * This is the only native executable of worker-launcher. It is installed
 * root:<launcher group> mode 6550. Its one job is to take away everything the
 * caller could use to influence the privileged Python core, then exec the
 * system interpreter in isolated mode on the installed entry script:
 *
 *   - argc == 0 is answered with usage and exit 1;
 *   - fds 0-2 are made valid (opened on /dev/null when closed), all other fds
 *     are closed;
 *   - the environment is replaced by a fixed minimal one (CPython ignores
 *     AT_SECURE, so nothing of the caller's environment may reach it);
 *   - umask, signal dispositions and the signal mask are reset, core dumps are
 *     disabled, the cwd becomes "/";
 *   - soft rlimits the caller lowered are raised back to their hard limits
 *     (a caller can do that itself, so this grants nothing).
 *
 * The interpreter, the entry script and the config path are fixed at build
 * time (see Makefile); no caller input selects any of them.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef WL_PYTHON
#error WL_PYTHON must be defined
#endif
#ifndef WL_ENTRY
#error WL_ENTRY must be defined
#endif

#define EXIT_USAGE 1
#define EXIT_SETUP 20
#define MAX_ARGS 4096

static void die(const char *what)
{
    /* fds 0-2 are valid here, so stderr is safe to use. */
    dprintf(2, "worker-launcher: %s: %s\n", what, strerror(errno));
    _exit(EXIT_SETUP);
}

static void make_stdio_valid(void)
{
    for (int fd = 0; fd <= 2; fd++) {
        if (fcntl(fd, F_GETFD) != -1 || errno != EBADF)
            continue;
        int nfd = open("/dev/null", O_RDWR | O_NOFOLLOW);
        if (nfd != fd)
            _exit(EXIT_SETUP); /* cannot report: stderr may be what failed */
    }
}

static void close_other_fds(void)
{
#ifdef SYS_close_range
    if (syscall(SYS_close_range, 3U, ~0U, 0U) == 0)
        return;
#endif
    struct rlimit rl;
    long max = 65536;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_max != RLIM_INFINITY)
        max = (long)rl.rlim_max;
    for (long fd = 3; fd < max; fd++)
        close((int)fd);
}

static void reset_signals(void)
{
    sigset_t all;
    sigemptyset(&all);
    if (sigprocmask(SIG_SETMASK, &all, NULL) != 0)
        die("cannot reset the signal mask");
    for (int sig = 1; sig < NSIG; sig++) {
        if (sig == SIGKILL || sig == SIGSTOP)
            continue;
        signal(sig, SIG_DFL); /* fails harmlessly for reserved numbers */
    }
}

static void reset_limits(void)
{
    static const int raise_to_hard[] = { RLIMIT_NOFILE, RLIMIT_FSIZE, RLIMIT_STACK,
                                         RLIMIT_AS, RLIMIT_DATA, RLIMIT_CPU };
    struct rlimit rl;
    for (size_t i = 0; i < sizeof raise_to_hard / sizeof raise_to_hard[0]; i++) {
        if (getrlimit(raise_to_hard[i], &rl) != 0)
            die("getrlimit");
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(raise_to_hard[i], &rl) != 0)
            die("setrlimit");
    }
    rl.rlim_cur = rl.rlim_max = 0;
    if (setrlimit(RLIMIT_CORE, &rl) != 0)
        die("cannot disable core dumps");
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0)
        die("cannot disable core dumps");
}

int main(int argc, char **argv)
{
    make_stdio_valid();
    if (argc < 1 || argv[0] == NULL) {
        dprintf(1, "Usage: worker-launcher --check-config\n"
                   "Usage: worker-launcher <user> <command> <args...>\n");
        return EXIT_USAGE;
    }
    if (argc > MAX_ARGS) {
        dprintf(2, "worker-launcher: too many arguments (%d, at most %d)\n", argc, MAX_ARGS);
        return EXIT_USAGE;
    }
    close_other_fds();
    reset_signals();
    reset_limits();
    umask(022);
    if (chdir("/") != 0)
        die("cannot change directory to /");

    static char *const clean_env[] = {
        "PATH=/usr/sbin:/usr/bin:/sbin:/bin",
        "LC_ALL=C.UTF-8",
        NULL,
    };
    char *py_argv[MAX_ARGS + 8];
    int n = 0;
    /* An absolute argv[0]: CPython derives sys.executable from argv[0] (searching PATH
     * when it is a bare name), and nothing of that should depend on a name. */
    py_argv[n++] = WL_PYTHON;
    py_argv[n++] = "-I";
    py_argv[n++] = "-S";
    py_argv[n++] = "-B";
    py_argv[n++] = "--";
    py_argv[n++] = WL_ENTRY;
    for (int i = 1; i < argc; i++)
        py_argv[n++] = argv[i];
    py_argv[n] = NULL;

    execve(WL_PYTHON, py_argv, clean_env);
    die("cannot execute " WL_PYTHON);
    return EXIT_SETUP;
}
