"""Storm's `profile-oci-container <pid> <command-file>`: the profiler in a runc worker.

Storm sends the host pid of the container's init (runc's pid file). It names a container
only if this launcher started one with that init for the user: a container directory in
the run root (root-only) whose runc pid file holds the pid and whose config.json, written
by runc-run, runs the process as the user; runc's state confirms the container is running
with that init and our bundle, and a pidfd taken first shows the pid still names that
init afterwards. Anything else is refused with exit 9. The profiler then runs with
`runc exec` (classic/profiler.py).
"""

import posix as os

from ..classic import profiler
from ..core.errors import ExitCode, LauncherError, os_error_text
from .spec import valid_container_id

PID_FILE = "container.pid"  # runc's, in <run-root>/<container-id> (see launch.runc_run)


def profile_oci_container(launch, pid_text: str, command_file: str) -> int:
    if not (pid_text.isdigit() and pid_text.isascii() and len(pid_text) <= 10
            and str(int(pid_text)) == pid_text):
        raise LauncherError(ExitCode.INVALID_CONTAINER_PID, f"invalid container pid {pid_text!r}")
    script = profiler.profiler_path(launch)
    arguments = profiler.read_arguments(launch, command_file)
    target = find_container(launch, int(pid_text))
    try:
        return profiler.run(launch, target, script, arguments)
    finally:
        target.close()


def find_container(launch, pid: int) -> profiler.Target:
    """The user's running container whose init is `pid`, or exit 9."""
    what = f"pid {pid}"
    pidfd = profiler.open_pidfd(pid, what)
    try:
        run_root = _run_root(launch)
        container_id = container_of(run_root, pid)
        if container_id is None:
            raise profiler.refuse(what, "it is not the init of a container this launcher "
                                        "started")
        bundle = f"{run_root}/{container_id}"
        who = launch.user.identity
        runs_as = bundle_user(bundle)
        if runs_as != (who.uid, who.gid):
            raise profiler.refuse(what, f"container {container_id} runs as uid:gid "
                                        f"{runs_as[0]}:{runs_as[1]}, not as {launch.user.name} "
                                        f"({who.uid}:{who.gid})")
        problem = profiler.state_problem(profiler.runc_state(launch, None, container_id),
                                         pid, bundle)
        if problem:
            raise profiler.refuse(what, f"container {container_id}: {problem}")
        # As in bundle.runtime_config: the primary group is not repeated.
        groups = [gid for gid in who.groups if gid != who.gid]
        return profiler.Target(container_id, None, pid, pidfd, groups, container_id)
    except BaseException:
        os.close(pidfd)
        raise


def _run_root(launch) -> str:
    """The run root's canonical path, found on descriptors from / with every directory on
    the way root's alone (paths.trust.root_chain); nothing is created or changed."""
    from ..paths.trust import root_chain

    fd, path, problem = root_chain(launch.config.run_root)
    if fd is not None:
        os.close(fd)
    if problem:
        raise LauncherError(ExitCode.INVALID_CONFIG_FILE,
                            f"run root {launch.config.run_root} is not safe: {problem}")
    return path


def container_of(run_root: str, pid: int):
    """The id of the container directory under the (root-only) run root whose runc pid
    file holds `pid`, or None."""
    try:
        names = os.listdir(run_root)
    except FileNotFoundError:
        return None
    wanted = str(pid).encode()
    for name in sorted(names):
        if not valid_container_id(name):
            continue
        try:
            fd = os.open(f"{run_root}/{name}/{PID_FILE}",
                         os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
        except OSError:
            continue
        try:
            if os.read(fd, 32).strip() == wanted:
                return name
        finally:
            os.close(fd)
    return None


def bundle_user(bundle: str) -> tuple:
    """(uid, gid) of process.user in the config.json runc-run wrote (root-only)."""
    from ..core.fastjson import loads
    from ..paths.files import read_limited

    try:
        fd = os.open(f"{bundle}/config.json", os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            config = loads(read_limited(fd, 4 << 20).decode("utf-8"))
        finally:
            os.close(fd)
        user = config["process"]["user"]
        return int(user["uid"]), int(user["gid"])
    except (OSError, ValueError, KeyError, TypeError) as err:
        reason = os_error_text(err) if isinstance(err, OSError) else "not runc-run's"
        raise LauncherError(ExitCode.INVALID_CONTAINER_PID,
                            f"cannot read {bundle}/config.json: {reason}") from None
