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
 *   - job control cannot stop the launcher: SIGTSTP, SIGTTIN and SIGTTOU are
 *     ignored, and the core runs in a session of its own, with no controlling
 *     terminal, so no key pressed on the caller's terminal reaches it (see
 *     own_session: a process-group leader cannot start a session, so then the
 *     stub forks once and waits for the child, relaying its exit status);
 *   - soft resource limits are set to what the launcher needs for its own work,
 *     within the caller's hard limits, which are never changed; hard limits too
 *     small for that work (e.g. RLIMIT_FSIZE 0, which would kill it with SIGXFSZ
 *     half-way through a set-up) are refused with one clear line, exit 20. The
 *     caller's soft limits go to the core in WL_CALLER_RLIMITS, which restores
 *     them right before it execs a worker or profiler (see own_limits).
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
#include <sys/wait.h>
#include <unistd.h>

#ifndef WL_PYTHON
#error WL_PYTHON must be defined
#endif
#ifndef WL_ENTRY
#error WL_ENTRY must be defined
#endif

#define EXIT_USAGE 1
#define EXIT_SETUP 20
#define EXIT_SETSID 25
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
        /* Job-control stops are ignored (the core gives the worker the defaults back
         * right before its exec); everything else gets its default. */
        int stop = sig == SIGTSTP || sig == SIGTTIN || sig == SIGTTOU;
        signal(sig, stop ? SIG_IGN : SIG_DFL); /* fails harmlessly for reserved numbers */
    }
}

/* The signals a caller uses to cancel a call (Storm's Process.destroy() sends SIGTERM;
 * a terminal sends SIGINT, SIGQUIT, SIGHUP). The core turns them into an undo. */
static const int cancel_signals[] = { SIGTERM, SIGINT, SIGHUP, SIGQUIT };
#define N_CANCEL (sizeof cancel_signals / sizeof cancel_signals[0])
static volatile pid_t session_child;

static void forward_signal(int sig)
{
    /* The parent still runs with euid 0, so it may signal the child whatever ids the
     * child has taken; it only ever passes on the four signals above. */
    int saved = errno;
    if (session_child > 0)
        kill(session_child, sig);
    errno = saved;
}

/* Start a session with no controlling terminal for the core. setsid() fails (EPERM) only
 * for a process-group leader: a shell with job control makes every command one, Storm's
 * JVM never does. Then the stub forks once: the child starts the session and execs the
 * core; this process stays in the caller's process group, ignores job-control stops like
 * the rest, forwards cancel_signals to the child and exits as the child did (the same
 * code, or the same signal), so the caller sees one process with the child's outcome.
 * Returns in the process that goes on to exec the core. */
static void own_session(void)
{
    if (setsid() >= 0)
        return;
    if (errno != EPERM) {
        dprintf(2, "worker-launcher: setsid failed: %s\n", strerror(errno));
        _exit(EXIT_SETSID);
    }
    sigset_t cancel, none;
    sigemptyset(&cancel);
    sigemptyset(&none);
    for (size_t i = 0; i < N_CANCEL; i++)
        sigaddset(&cancel, cancel_signals[i]);
    if (sigprocmask(SIG_BLOCK, &cancel, NULL) != 0)
        die("cannot block signals");
    pid_t child = fork();
    if (child < 0) {
        dprintf(2, "worker-launcher: cannot fork to leave the caller's session: %s\n",
                strerror(errno));
        _exit(EXIT_SETSID);
    }
    if (child == 0) {
        if (setsid() < 0) {
            dprintf(2, "worker-launcher: setsid failed: %s\n", strerror(errno));
            _exit(EXIT_SETSID);
        }
        if (sigprocmask(SIG_SETMASK, &none, NULL) != 0)
            die("cannot reset the signal mask");
        return;
    }
    session_child = child;
    struct sigaction forward;
    memset(&forward, 0, sizeof forward);
    forward.sa_handler = forward_signal;
    forward.sa_flags = SA_RESTART;
    sigfillset(&forward.sa_mask);
    for (size_t i = 0; i < N_CANCEL; i++)
        if (sigaction(cancel_signals[i], &forward, NULL) != 0)
            die("cannot forward signals");
    if (sigprocmask(SIG_SETMASK, &none, NULL) != 0)
        die("cannot reset the signal mask");
    int status;
    while (waitpid(child, &status, 0) < 0) {
        if (errno != EINTR)
            die("cannot wait for the launcher");
    }
    if (WIFEXITED(status))
        _exit(WEXITSTATUS(status));
    int sig = WTERMSIG(status);
    signal(sig, SIG_DFL);
    sigset_t only;
    sigemptyset(&only);
    sigaddset(&only, sig);
    sigprocmask(SIG_UNBLOCK, &only, NULL);
    raise(sig); /* core dumps are disabled (PR_SET_DUMPABLE 0, RLIMIT_CORE 0) */
    _exit(128 + sig);
}

#define MIB ((rlim_t)1024 * 1024)
#define SOFT_ZERO ((rlim_t)-2) /* core dumps: soft limit 0, whatever the hard limit */

/* The soft limits the launcher runs with (at most the caller's hard limit, which is never
 * changed: raising it would need CAP_SYS_RESOURCE, which root may lack, and lowering it
 * would stop the worker getting the caller's limits back), and the least hard limit it
 * can do its work with: below that it refuses to start rather than be killed half-way
 * (SIGXFSZ, SIGXCPU, SIGSEGV) with a set-up half done. Other limits stay the caller's. */
static const struct {
    int resource;
    const char *name;
    rlim_t soft;
    rlim_t least_hard;
} own_limits[] = {
    { RLIMIT_NOFILE, "NOFILE", 4096, 64 },
    { RLIMIT_FSIZE, "FSIZE", RLIM_INFINITY, 64 * MIB },
    { RLIMIT_STACK, "STACK", 8 * MIB, 1 * MIB },
    { RLIMIT_AS, "AS", RLIM_INFINITY, 512 * MIB },
    { RLIMIT_DATA, "DATA", RLIM_INFINITY, 256 * MIB },
    { RLIMIT_CPU, "CPU", RLIM_INFINITY, 60 },
    { RLIMIT_CORE, "CORE", SOFT_ZERO, 0 },
};
#define N_LIMITS (sizeof own_limits / sizeof own_limits[0])
/* "WL_CALLER_RLIMITS=<resource>=<soft>,..." ("inf" for RLIM_INFINITY): the caller's soft
 * limits, which the core restores right before it execs a worker or profiler. */
static char caller_limits[32 + N_LIMITS * 32];

static int append_limit(size_t *used, int resource, rlim_t soft)
{
    char soft_text[24] = "inf";
    if (soft != RLIM_INFINITY)
        snprintf(soft_text, sizeof soft_text, "%llu", (unsigned long long)soft);
    int n = snprintf(caller_limits + *used, sizeof caller_limits - *used, "%s%d=%s",
                     *used > sizeof "WL_CALLER_RLIMITS=" - 1 ? "," : "", resource, soft_text);
    if (n < 0 || (size_t)n >= sizeof caller_limits - *used)
        return -1;
    *used += (size_t)n;
    return 0;
}

static void reset_limits(void)
{
    size_t used = (size_t)snprintf(caller_limits, sizeof caller_limits, "WL_CALLER_RLIMITS=");
    for (size_t i = 0; i < N_LIMITS; i++) {
        struct rlimit rl;
        if (getrlimit(own_limits[i].resource, &rl) != 0)
            die("getrlimit");
        if (append_limit(&used, own_limits[i].resource, rl.rlim_cur) != 0) {
            errno = ENAMETOOLONG;
            die("cannot record the caller's resource limits");
        }
        if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < own_limits[i].least_hard) {
            dprintf(2, "worker-launcher: the hard RLIMIT_%s of the caller is %llu, below the "
                       "%llu the launcher needs; raise it for the supervisor account\n",
                    own_limits[i].name, (unsigned long long)rl.rlim_max,
                    (unsigned long long)own_limits[i].least_hard);
            _exit(EXIT_SETUP);
        }
        rlim_t soft = own_limits[i].soft == SOFT_ZERO ? 0 : own_limits[i].soft;
        rl.rlim_cur = rl.rlim_max != RLIM_INFINITY && (soft == RLIM_INFINITY || soft > rl.rlim_max)
                          ? rl.rlim_max : soft;
        if (setrlimit(own_limits[i].resource, &rl) != 0)
            die("setrlimit");
    }
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
    reset_limits(); /* first: close_other_fds' fallback loop goes up to RLIMIT_NOFILE */
    close_other_fds();
    reset_signals();
    umask(022);
    if (chdir("/") != 0)
        die("cannot change directory to /");
    own_session(); /* last: the child inherits all of the above */

    char *const clean_env[] = {
        "PATH=/usr/sbin:/usr/bin:/sbin:/bin",
        "LC_ALL=C.UTF-8",
        caller_limits,
        NULL,
    };
    static char *py_argv[MAX_ARGS + 8]; /* static: 32 KiB would not fit a tiny caller stack */
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
