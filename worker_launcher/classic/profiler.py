"""What `profile-oci-container` and `profile-docker-container` (our verb `nsenter`) share:
run worker.profiler.script.path in the user's running container with the worker's own
confinement, through the exec of the runtime that started the container (`runc exec`).

The launcher never enters a container's namespaces. Everything that needs the host happens
here, in the host's namespaces, before anything starts: the config, the user database, the
profiler-script check, the command file (read with the user's rights), the identification
of the container (oci/profile.py, docker/profile.py), the audit line. Then runc joins the
container: `runc exec --process /proc/self/fd/3 <id>`, the process.json built here and
handed over in a memfd (no file anyone could swap). runc applies to it what it applies to
every process of the container: all of the container's namespaces (mount, pid, net, ipc,
uts, cgroup, and user when it has one), its cgroups, its seccomp filter, its LSM label.
process.json adds the user's uid, gid and groups from the host's user database, no new
privileges, no capability in any set (bounding included), the caller's soft resource
limits, cwd / and a fixed environment. runc 1.1 ignores process.user.umask on exec and the
process keeps runc's umask, so runc starts with umask 0027 (process.json asks for it too,
for the runc versions that apply it).

runc joins the namespaces its container's init has when runc runs (/proc/<init>/ns/*). An
unprivileged process can change its namespaces only after making a user namespace of its
own, and can never go back to its parent's; so the init's user namespace is checked before
runc runs (a refusal) and again after (a failure): an init still in the user namespace the
container was started in (the host's: Storm's workers have none) had not left the
container's namespaces when runc joined them.
"""

from __future__ import annotations

import posix as os
import stat

from ..core.errors import ExitCode, LauncherError, os_error_text

PROFILER_ENV = ("PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/")
PROFILER_UMASK = 0o027
PROFILER_CWD = "/"
PROFILER_TIMEOUT = 3600  # seconds; then runc is killed (the profiler, confined, may go on)
RUNC_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
STATE_TIMEOUT = 60
MAX_ARGS_BYTES = 64 * 1024
CAPABILITY_SETS = ("bounding", "effective", "inheritable", "permitted", "ambient")
RLIMIT_NAMES = ("RLIMIT_CPU", "RLIMIT_FSIZE", "RLIMIT_DATA", "RLIMIT_STACK", "RLIMIT_CORE",
                "RLIMIT_RSS", "RLIMIT_NPROC", "RLIMIT_NOFILE", "RLIMIT_MEMLOCK", "RLIMIT_AS",
                "RLIMIT_LOCKS", "RLIMIT_SIGPENDING", "RLIMIT_MSGQUEUE", "RLIMIT_NICE",
                "RLIMIT_RTPRIO", "RLIMIT_RTTIME")  # by resource number (Linux)
RLIM_INFINITY = (1 << 64) - 1


class Target:
    """A running container of the user's, found from the host: its runc id and the runc
    state directory that knows it (None: runc's default), its init's host pid, a pidfd on
    that init, the supplementary groups its processes get, and its name for messages."""

    __slots__ = ("container_id", "runc_root", "pid", "pidfd", "additional_gids", "name")

    def __init__(self, container_id, runc_root, pid, pidfd, additional_gids, name):
        self.container_id, self.runc_root, self.pid = container_id, runc_root, pid
        self.pidfd, self.additional_gids, self.name = pidfd, tuple(additional_gids), name

    def close(self) -> None:
        if self.pidfd is not None:
            os.close(self.pidfd)
            self.pidfd = None


def refuse(what: str, why: str) -> LauncherError:
    return LauncherError(ExitCode.INVALID_CONTAINER_PID, f"refusing {what}: {why}")


# --- on the host, before anything runs ----------------------------------------------------
def profiler_path(launch) -> str:
    """worker.profiler.script.path, root-owned all the way up and a regular file, as seen on
    the host. runc resolves the same path again inside the container, where Storm binds
    storm.home read-only at the same path: the same file."""
    from ..paths import trust

    profiler = launch.config.profiler_script
    if not profiler:
        raise LauncherError(ExitCode.UNABLE_TO_EXECUTE_CONTAINER_SCRIPT,
                            "worker.profiler.script.path is not set in the config file")
    problem = trust.chain_problem(profiler)
    if problem is None:
        try:
            if not stat.S_ISREG(os.stat(profiler).st_mode):
                problem = f"{profiler} is not a regular file"
        except OSError as err:
            problem = f"cannot stat {profiler}: {os_error_text(err)}"
    if problem:
        raise LauncherError(ExitCode.UNABLE_TO_EXECUTE_CONTAINER_SCRIPT,
                            f"unsafe profiler script {profiler}: {problem}")
    return profiler


def read_arguments(launch, command_file: str) -> list:
    """The profiler's arguments from Storm's command file, read with the target user's
    rights (as the C launcher did). Storm writes it into the user's own artifacts
    directory; the user's rights give the supervisor nothing new (it runs any program as
    the user with `worker`), while a file the user plants there is never read with rights
    the user lacks."""
    from ..core.tokens import split_arguments
    from ..paths import files

    data = files.read_as(launch.user.identity, command_file, MAX_ARGS_BYTES)
    return split_arguments(data, command_file)


def open_pidfd(pid: int, what: str) -> int:
    """A descriptor that stays with process `pid` (not with its number): a pidfd, or on
    kernels before 5.3 (RHEL 8) its /proc/<pid> directory, whose entries vanish (ESRCH)
    once that very process has exited, whatever takes its number later."""
    import errno

    if pid <= 1:
        raise refuse(what, "not a container's init")
    try:
        return os.pidfd_open(pid)
    except OSError as err:
        if err.errno != errno.ENOSYS:
            raise refuse(what, os_error_text(err)) from None
    try:
        return os.open(f"/proc/{pid}", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as err:
        raise refuse(what, os_error_text(err)) from None


def exited(handle: int) -> bool:
    """True once the process behind `handle` (open_pidfd) has exited: a pidfd polls
    readable; an O_PATH /proc/<pid> directory (which polls invalid) no longer shows it."""
    import select

    poller = select.poll()
    poller.register(handle, select.POLLIN)
    events = poller.poll(0)
    if not events or not events[0][1] & select.POLLNVAL:
        return bool(events)
    try:
        os.stat("stat", dir_fd=handle)
        return False
    except OSError:
        return True


def runc_state(launch, root, container_id: str):
    """`runc [--root <root>] state <id>` as a dict, or None when runc does not know it."""
    from ..core.fastjson import loads
    from ..privileged import spawn

    argv = [launch.config.runc, *_root_args(root), "state", container_id]
    try:
        code, out, _ = spawn.output(argv, env=RUNC_ENV, timeout=STATE_TIMEOUT)
    except OSError as err:
        raise LauncherError(ExitCode.UNABLE_TO_EXECUTE_CONTAINER_SCRIPT,
                            f"cannot run {launch.config.runc} state: {os_error_text(err)}") from None
    if code != 0:
        return None
    try:
        state = loads(out.decode("utf-8"))
    except ValueError:
        return None
    return state if isinstance(state, dict) else None


def state_problem(state, pid: int, bundle=None):
    """Why runc's state of a container does not show it running with init `pid` (and the
    given bundle), or None. Pure."""
    if not isinstance(state, dict):
        return "runc does not know it"
    if state.get("status") != "running":
        return f"it is {state.get('status')!r}, not running"
    if state.get("pid") != pid:
        return f"its init is pid {state.get('pid')}, not {pid}"
    if bundle is not None and state.get("bundle") != bundle:
        return f"its bundle is {state.get('bundle')!r}, not {bundle}"
    return None


def user_namespace_problem(target: Target):
    """Why the init of `target` is not (or no longer) in the user namespace the launcher
    runs in, or None. Read from /proc, then the pidfd shows /proc/<pid> was that init."""
    try:
        ours = os.stat("/proc/self/ns/user")
        theirs = os.stat(f"/proc/{target.pid}/ns/user")
    except OSError as err:
        return f"cannot read the user namespace of pid {target.pid}: {os_error_text(err)}"
    if exited(target.pidfd):
        return f"pid {target.pid} exited"
    if (ours.st_dev, ours.st_ino) != (theirs.st_dev, theirs.st_ino):
        return (f"its init (pid {target.pid}) left the container's user namespace (it made "
                f"one of its own)")
    return None


def held(target: Target, what: str) -> None:
    """The last check before runc runs: the init is alive, in the user namespace the
    container was started in."""
    problem = user_namespace_problem(target)
    if problem:
        raise refuse(what, problem)


# --- the process runc starts ----------------------------------------------------------------
def caller_rlimits() -> list:
    """[(name, soft, hard)]: the caller's soft limits (which the stub replaced by the
    launcher's own) within the hard limits, which the stub never changes."""
    import resource

    from ..core import identity

    limits = []
    for number, soft in identity.caller_limits():
        if 0 <= number < len(RLIMIT_NAMES):
            hard = resource.getrlimit(number)[1]
            limits.append((RLIMIT_NAMES[number], soft, hard))
    return limits


def _limit(value: int) -> int:
    return RLIM_INFINITY if value < 0 else value


def process_spec(who, additional_gids, argv: list, rlimits: list) -> dict:
    """runc's process.json for the profiler. Pure."""
    return {
        "terminal": False,
        "user": {"uid": who.uid, "gid": who.gid, "additionalGids": list(additional_gids),
                 "umask": PROFILER_UMASK},
        "args": list(argv),
        "env": list(PROFILER_ENV),
        "cwd": PROFILER_CWD,
        "capabilities": {name: [] for name in CAPABILITY_SETS},
        "noNewPrivileges": True,
        "rlimits": [{"type": name, "hard": _limit(hard), "soft": _limit(soft)}
                    for name, soft, hard in rlimits],
    }


def _root_args(root) -> list:
    return [] if root is None else ["--root", root]


def run(launch, target: Target, profiler: str, arguments: list) -> int:
    """`runc exec` the profiler into `target`; its exit status (a signal N as 128 + N).

    runc copies the profiler's output from pipes until every writer has closed them, and
    any process of the container (the same user) may open /proc/<profiler>/fd/1 and hold
    it. So runc never gets the caller's descriptors (its output goes to memfds, relayed
    afterwards one escaped line each, so the container cannot forge the supervisor's log),
    and it is stopped once the profiler itself has been gone for OUTPUT_GRACE seconds
    (runc's --pid-file, in a root-only directory, names the profiler)."""
    from ..core import audit
    from ..core.fastjson import dumps
    from ..paths import files
    from ..privileged import spawn

    spec = process_spec(launch.user.identity, target.additional_gids, [profiler, *arguments],
                        caller_rlimits())
    audit.note(container=target.name)
    held(target, target.name)
    directory = _private_directory(launch)
    pid_file = f"{directory}/profiler.pid"
    argv = [launch.config.runc, *_root_args(target.runc_root), "exec", "--process",
            "/proc/self/fd/3", "--pid-file", pid_file, target.container_id]
    spec_fd = os.memfd_create("profiler-process.json", os.MFD_CLOEXEC)
    out = os.memfd_create("profiler-stdout", os.MFD_CLOEXEC)
    err = os.memfd_create("profiler-stderr", os.MFD_CLOEXEC)
    try:
        files.write_all(spec_fd, dumps(spec).encode())
        # Safe: runc (root) joins the container's namespaces and drops to the user before
        # it execs the root-owned profiler; the launcher itself stays on the host.
        child = spawn.start(argv, stdout=out, stderr=err, env=RUNC_ENV, fds=(spec_fd,),
                            umask=PROFILER_UMASK)
        try:
            code = _wait(child, pid_file, target.name)
        finally:
            _relay(out, 1)
            _relay(err, 2)
    except OSError as err_:
        raise LauncherError(ExitCode.UNABLE_TO_EXECUTE_CONTAINER_SCRIPT,
                            f"cannot run {launch.config.runc} exec: {os_error_text(err_)}") from None
    finally:
        for fd in (spec_fd, out, err):
            os.close(fd)
        _remove_private_directory(directory)
    audit.child_exit("runc exec", code)
    problem = None if exited(target.pidfd) else user_namespace_problem(target)
    if problem:
        raise LauncherError(ExitCode.INVALID_CONTAINER_PID,
                            f"profiling {target.name}: {problem} while runc started the "
                            f"profiler")
    return code if code >= 0 else 128 - code


OUTPUT_GRACE = 5  # seconds runc may go on copying once the profiler has exited
POLL_STEP = 0.02  # seconds between looks for runc's pid file


def _wait(child: int, pid_file: str, name: str) -> int:
    """runc's exit code; runc is stopped (and the call fails) PROFILER_TIMEOUT seconds after
    it started, or OUTPUT_GRACE seconds after the profiler exited."""
    import select
    import time

    from ..core import interrupts
    from ..privileged import spawn

    try:
        runc_fd = os.pidfd_open(child)
    except OSError:  # before Linux 5.3: runc's own exit, within the time limit, is all we see
        code = spawn.wait_exit(child, PROFILER_TIMEOUT)
        if code is None:
            raise _timed_out(name) from None
        return code
    profiler_fd = gone = None
    deadline = time.monotonic() + PROFILER_TIMEOUT
    try:
        poller = select.poll()
        poller.register(runc_fd, select.POLLIN)
        while True:
            waiting_for_pid = profiler_fd is None and gone is None
            with interrupts.waiting():
                ready = {fd for fd, _ in poller.poll(POLL_STEP * 1000 if waiting_for_pid
                                                     else 250)}
            now = time.monotonic()
            if runc_fd in ready:
                return spawn.reap(child)
            if waiting_for_pid:
                profiler_fd = _open_profiler(pid_file)
                if profiler_fd == -1:
                    profiler_fd, gone = None, now
                elif profiler_fd is not None:
                    poller.register(profiler_fd, select.POLLIN)
            elif profiler_fd in ready:
                poller.unregister(profiler_fd)
                os.close(profiler_fd)
                profiler_fd, gone = None, now
            if gone is not None and now - gone > OUTPUT_GRACE:
                spawn.stop(child)
                raise LauncherError(ExitCode.UNABLE_TO_EXECUTE_CONTAINER_SCRIPT,
                                    f"the profiler in {name} exited, but a process of the "
                                    f"container held its output open; runc exec was stopped")
            if now > deadline:
                spawn.stop(child)
                raise _timed_out(name)
    except LauncherError:
        raise
    except BaseException:
        spawn.stop(child)
        raise
    finally:
        os.close(runc_fd)
        if profiler_fd is not None:
            os.close(profiler_fd)


def _timed_out(name: str) -> LauncherError:
    return LauncherError(ExitCode.UNABLE_TO_EXECUTE_CONTAINER_SCRIPT,
                         f"the profiler in {name} did not finish in {PROFILER_TIMEOUT} s; "
                         f"runc exec was stopped")


def _open_profiler(pid_file: str):
    """A pidfd on the profiler once runc has written its pid file (None before; -1 when the
    profiler has already gone)."""
    try:
        with open(pid_file, "rb") as handle:
            text = handle.read(32).strip()
    except FileNotFoundError:
        return None
    if not text.isdigit():
        return None  # being written
    try:
        return os.pidfd_open(int(text))
    except ProcessLookupError:
        return -1


def _relay(fd: int, to: int) -> None:
    """What runc captured, at most 64 KiB, as lines of ours: `profiler: <line>` with control
    characters escaped (errors.one_line), so nothing can pass for a line of the launcher's."""
    from ..core.errors import one_line
    from ..paths import files

    data = os.pread(fd, 65536, 0)
    if not data:
        return
    lines = data.decode("utf-8", "replace").splitlines()
    text = "".join(f"profiler: {one_line(line)}\n" for line in lines)
    try:
        files.write_all(to, text.encode("utf-8", "replace"))
    except OSError:
        pass  # the caller stopped reading: its loss


def _private_directory(launch) -> str:
    """A new root-only directory for runc's pid file, under the run root."""
    from ..paths import trust
    from ..paths.tree import make_dirs

    run_root = launch.config.run_root
    make_dirs(run_root, 0o700)
    problem = trust.chain_problem(run_root)
    if problem:
        raise LauncherError(ExitCode.INVALID_CONFIG_FILE, f"run root {run_root} is not safe: "
                                                          f"{problem}")
    path = f"{run_root}/profile-{os.getpid()}-{os.urandom(4).hex()}"
    os.mkdir(path, 0o700)
    return path


def _remove_private_directory(path: str) -> None:
    try:
        os.unlink(f"{path}/profiler.pid")
    except FileNotFoundError:
        pass
    os.rmdir(path)
