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

import os
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
    if pid <= 1:
        raise refuse(what, "not a container's init")
    try:
        return os.pidfd_open(pid)
    except OSError as err:
        raise refuse(what, os_error_text(err)) from None


def exited(pidfd: int) -> bool:
    """True once the process behind `pidfd` has exited (the pidfd polls readable)."""
    import select

    poller = select.poll()
    poller.register(pidfd, select.POLLIN)
    return bool(poller.poll(0))


def runc_state(launch, root, container_id: str):
    """`runc [--root <root>] state <id>` as a dict, or None when runc does not know it."""
    from ..core.jsontext import loads
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
    """`runc exec` the profiler into `target`; its exit status (a signal N as 128 + N)."""
    from ..core import audit
    from ..core.jsontext import dumps
    from ..paths import files
    from ..privileged import spawn

    spec = process_spec(launch.user.identity, target.additional_gids, [profiler, *arguments],
                        caller_rlimits())
    argv = [launch.config.runc, *_root_args(target.runc_root), "exec", "--process",
            "/proc/self/fd/3", target.container_id]
    audit.note(container=target.name)
    held(target, target.name)
    spec_fd = os.memfd_create("profiler-process.json", os.MFD_CLOEXEC)
    try:
        files.write_all(spec_fd, dumps(spec).encode())
        # Safe: runc (root) joins the container's namespaces and drops to the user before
        # it execs the root-owned profiler; the launcher itself stays on the host.
        code = spawn.run(argv, env=RUNC_ENV, fds=(spec_fd,), umask=PROFILER_UMASK,
                         timeout=PROFILER_TIMEOUT)
    except OSError as err:
        raise LauncherError(ExitCode.UNABLE_TO_EXECUTE_CONTAINER_SCRIPT,
                            f"cannot run {launch.config.runc} exec: {os_error_text(err)}") from None
    finally:
        os.close(spec_fd)
    audit.child_exit("runc exec", code)
    problem = None if exited(target.pidfd) else user_namespace_problem(target)
    if problem:
        raise LauncherError(ExitCode.INVALID_CONTAINER_PID,
                            f"profiling {target.name}: {problem} while runc started the "
                            f"profiler")
    if code is None:
        raise LauncherError(ExitCode.UNABLE_TO_EXECUTE_CONTAINER_SCRIPT,
                            f"the profiler in {target.name} did not finish in "
                            f"{PROFILER_TIMEOUT} s; runc exec was killed")
    return code if code >= 0 else 128 - code
