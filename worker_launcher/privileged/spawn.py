"""The one way the launcher starts a root child (runc, docker).

`run` starts `argv` with posix_spawn: no shell, argv only; an environment we give (empty by
default, never the caller's); a new session, so no terminal signal of the caller reaches it;
every signal at its default disposition and none blocked (CPython ignores SIGPIPE and
SIGXFSZ, which a child must not inherit); stdin /dev/null unless told otherwise. No other
descriptor reaches the child: the stub closed everything above 2 and Python opens files
close-on-exec. The child is waited for through a pidfd, so its exit wakes us at once; after
`timeout` seconds, or when the wait is interrupted (the caller cancelled the launch: a
cancel signal raises core.interrupts.Cancelled out of the wait), it is killed and reaped: a
child never outlives the call that started it. A call already cancelled starts no child.
(glibc's own signals
32 and 33 are the exception to "default": its posix_spawn sets them to SIG_IGN in every
child and they cannot be named in setsigdef; glibc programs install their handlers when
they use them.)

Two additions for the callers that need them: `fds` hands the child further descriptors as
3, 4, ... (runc reads a process.json we built from /proc/self/fd/3, never from a file anyone
else could touch), and `umask` is the umask the child starts with (runc exec gives it to the
process it starts, see classic/profiler.py). `output` runs a child whose stdout and stderr
we read back (runc state, docker inspect), through memfds: unbounded, so a chatty child can
never block on a full pipe, and nothing is written to a file system.
"""

import posix as os

from ..core import interrupts

def run(argv: list, *, stdout: int = 1, stderr: int = 2, stdin=None, env=None,
        timeout=None, fds=(), umask=None):
    """Run `argv[0]` (an absolute path) to completion. Returns its exit code (negative: the
    signal that killed it), or None when it was killed after `timeout` seconds. `fds` become
    the child's descriptors 3, 4, ...; `umask` (None: ours, 022 from the stub) its umask.
    Safe: argv[0] comes from worker-launcher.cfg and is refused here unless it and every
    directory above it are root's alone (paths.trust); every argument was validated by the
    caller of run; nothing of the caller's process reaches the child (see the module
    docstring)."""
    return wait_exit(start(argv, stdout=stdout, stderr=stderr, stdin=stdin, env=env, fds=fds,
                           umask=umask), timeout)


def start(argv: list, *, stdout: int = 1, stderr: int = 2, stdin=None, env=None, fds=(),
          umask=None) -> int:
    """Start `argv` as `run` does and return its pid, for a caller that waits its own way;
    it must end with `wait_exit`, `reap` or `stop` (safe as `run`)."""
    interrupts.checkpoint()
    require_root_program(argv[0])
    null = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC) if stdin is None else None
    extra, previous = [], None
    try:
        for fd in fds:  # copies above any target number, so placing one overwrites no other
            extra.append(_dup_high(fd, 3 + len(fds)))
        actions = [(os.POSIX_SPAWN_DUP2, stdin if null is None else null, 0),
                   (os.POSIX_SPAWN_DUP2, stdout, 1),
                   (os.POSIX_SPAWN_DUP2, stderr, 2)]
        actions += [(os.POSIX_SPAWN_DUP2, fd, 3 + index) for index, fd in enumerate(extra)]
        previous = None if umask is None else os.umask(umask)
        pid = os.posix_spawn(argv[0], list(argv), {} if env is None else env, setsid=True,
                             setsigdef=_all_signals(), setsigmask=(), file_actions=actions)
    finally:
        if previous is not None:
            os.umask(previous)
        for fd in extra:
            os.close(fd)
        if null is not None:
            os.close(null)
    return pid


def require_root_program(program: str) -> None:
    """A program run as root must be changeable by root alone: a runc or docker binary the
    supervisor account could replace would run its code as root (exit 22, like the binary's
    own check). `run` checks every time; a verb checks first too, before it changes anything."""
    from ..core.errors import ExitCode, LauncherError
    from ..paths import trust

    problem = trust.chain_problem(program)
    if problem:
        raise LauncherError(ExitCode.INVALID_CONTAINER_EXEC_PERMISSIONS,
                            f"refusing to run {program} as root: {problem}")


def output(argv: list, *, env=None, timeout=None, limit: int = 1 << 20) -> tuple:
    """Run `argv` as `run` does, with its stdout and stderr captured. Returns (exit code or
    None as `run`, at most `limit` bytes of stdout, at most 64 KiB of stderr)."""
    out = os.memfd_create("wl-child-stdout", os.MFD_CLOEXEC)
    err = os.memfd_create("wl-child-stderr", os.MFD_CLOEXEC)
    try:
        code = run(argv, stdout=out, stderr=err, env=env, timeout=timeout)
        return code, os.pread(out, limit, 0), os.pread(err, 65536, 0)
    finally:
        os.close(out)
        os.close(err)


def _dup_high(fd: int, lowest: int) -> int:
    """A close-on-exec copy of `fd` numbered `lowest` or above (the stub lets a caller's hard
    NOFILE be as low as 64, so no fixed high number)."""
    import fcntl

    return fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, lowest)


def _all_signals() -> tuple:
    """Every standard signal but SIGKILL and SIGSTOP (which have no disposition to reset)."""
    return tuple(number for number in range(1, 32) if number not in (9, 19))


def wait_exit(pid: int, timeout=None):
    """The exit code of child `pid` (negative: killed by that signal), or None after killing
    it when it ran longer than `timeout` seconds (None: no limit). Kernels before 5.3 (no
    pidfd_open) get a short-interval poll instead."""
    try:
        pidfd = os.pidfd_open(pid)
    except OSError:
        return _poll_exit(pid, timeout)
    try:
        import select

        poller = select.poll()
        poller.register(pidfd, select.POLLIN)
        with interrupts.waiting():
            exited = bool(poller.poll(None if timeout is None else timeout * 1000))
    except BaseException:
        _kill_and_reap(pid)
        raise
    finally:
        os.close(pidfd)
    if not exited:
        _kill_and_reap(pid)
        return None
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def reap(pid: int) -> int:
    """The exit code of child `pid`, which has exited (negative: the signal that killed it)."""
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def stop(pid: int) -> None:
    """Kill child `pid` with its process group and reap it (see _kill_and_reap)."""
    _kill_and_reap(pid)


def _kill_and_reap(pid: int) -> None:
    """SIGKILL to the child's process group (run started it in a session of its own, so
    that is the child and whatever it started and left there, e.g. a helper of runc's),
    then the child itself; then reap it. Safe: the group id is the child's pid, which we
    have not reaped yet, so no other process can hold it."""
    for target in (-pid, pid):
        try:
            os.kill(target, 9)
        except ProcessLookupError:
            pass
    os.waitpid(pid, 0)


def _poll_exit(pid: int, timeout):
    import time

    deadline, delay = None if timeout is None else time.monotonic() + timeout, 0.001
    try:
        while deadline is None or time.monotonic() < deadline:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                return os.waitstatus_to_exitcode(status)
            with interrupts.waiting():
                time.sleep(delay)
            delay = min(delay * 2, 0.02)
    except BaseException:
        _kill_and_reap(pid)
        raise
    _kill_and_reap(pid)
    return None


_GUARD_PIPES = []  # write ends of guards' pipes: held until this process ends


def guard(cleanup, keep=()) -> None:
    """Fork a guard that runs `cleanup()` once this process has ended, however it ended
    (SIGKILL included), then exits. It waits for end-of-file on a pipe whose only write end
    this process holds (close-on-exec: no child inherits it). The guard keeps nothing but
    that pipe and the descriptors in `keep` (e.g. a lock that must stay held until the
    cleanup is done); it runs in a session of its own, ignores the cancel signals and
    cannot be reached by the caller (all its ids are root). Safe: it runs no program and
    reads no input; `cleanup` is code of ours on paths of the root-only run root."""
    import _signal  # `signal` imports enum

    read_end, write_end = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid:
        os.close(read_end)
        _GUARD_PIPES.append(write_end)
        return
    try:
        os.setsid()
        for number in (_signal.SIGTERM, _signal.SIGINT, _signal.SIGHUP, _signal.SIGQUIT):
            _signal.signal(number, _signal.SIG_IGN)
        null = os.open("/dev/null", os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)  # the caller's pipes see end-of-file when the launcher ends
        for name in os.listdir("/proc/self/fd"):
            fd = int(name)
            if fd > 2 and fd != read_end and fd not in keep:
                try:
                    os.close(fd)
                except OSError:
                    pass
        while os.read(read_end, 1):
            pass
        cleanup()
    finally:
        os._exit(0)
