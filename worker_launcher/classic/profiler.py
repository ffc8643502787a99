"""What `profile-docker-container` and `profile-oci-container` (our verb `nsenter`) share.

Run worker.profiler.script.path inside a container's mount and pid namespaces as the user.
The container must belong to the user: its process runs with the user's uid, in another
mount namespace than ours, in a container cgroup (docker's, or below the policy's cgroup
parent). A pidfd taken first proves the pid still names that process after the checks.
No nsenter binary and no shell: setns, fork (the child joins the pid namespace), become
the user for good, exec the profiler with the command file's arguments.
"""

from __future__ import annotations

import os
import stat

from ..core import identity
from ..core.errors import ExitCode, LauncherError, os_error_text
from ..paths import files

PROFILER_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
PROFILER_UMASK = 0o027
MAX_ARGS_BYTES = 64 * 1024
_HEX = frozenset("0123456789abcdef")


def container_cgroup(cgroup_text: str, parent: str | None) -> bool:
    """True when a line of /proc/<pid>/cgroup puts the process in a container's cgroup:
    /docker/<id>, /system.slice/docker-<id>.scope, or strictly below the cgroup parent.
    Anchored at the root, so a user's own delegated cgroups do not count. Pure."""
    for line in cgroup_text.splitlines():
        path = line.split(":", 2)[-1]
        parts = path.strip("/").split("/")
        if len(parts) == 2 and parts[0] == "docker" and _is_id(parts[1]):
            return True
        if (len(parts) == 2 and parts[0] == "system.slice" and parts[1].startswith("docker-")
                and parts[1].endswith(".scope") and _is_id(parts[1][7:-6])):
            return True
        if parent and parent != "/" and path.startswith(parent.rstrip("/") + "/"):
            return True
    return False


def _is_id(text: str) -> bool:
    return len(text) == 64 and set(text) <= _HEX


def status_uids(status_text: str) -> tuple:
    """The four uids (real, effective, saved, fs) of /proc/<pid>/status. Pure."""
    for line in status_text.splitlines():
        if line.startswith("Uid:"):
            values = line.split()[1:5]
            if len(values) == 4 and all(v.isascii() and v.isdigit() for v in values):
                return tuple(int(v) for v in values)
            return ()
    return ()


def enter(launch, pid: int, command_file: str) -> int:
    profiler = launch.config.profiler_script
    if not profiler:
        raise LauncherError(ExitCode.UNABLE_TO_EXECUTE_CONTAINER_SCRIPT,
                            "worker.profiler.script.path is not set in the config file")
    _check_profiler(profiler)
    from ..core.tokens import split_line

    args = split_line(files.read_as_caller(command_file, MAX_ARGS_BYTES), command_file,
                      "profiler command", ExitCode.CANNOT_READ_FILE)
    mnt_fd, pid_fd = open_container_namespaces(launch, pid)
    from ..privileged import kernel
    import resource  # noqa: F401  used after setns by restore_caller_process_state, where
    import signal  # noqa: F401  the container's file system has no Python library

    try:
        # Safe: the namespaces belong to a container process of the user (checked above);
        # the only thing run inside is the root-owned profiler, after dropping to the user.
        kernel.setns(pid_fd, kernel.CLONE_NEWPID)
        kernel.setns(mnt_fd, kernel.CLONE_NEWNS)
    except OSError as err:
        raise LauncherError(ExitCode.INVALID_CONTAINER_PID,
                            f"cannot enter the namespaces of pid {pid}: {err.strerror}") from None
    finally:
        os.close(mnt_fd)
        os.close(pid_fd)
    child = os.fork()
    if child == 0:
        _exec_profiler(launch, profiler, args)
    _, status = os.waitpid(child, 0)
    code = os.waitstatus_to_exitcode(status)
    return code if code >= 0 else 128 - code


def _check_profiler(profiler: str) -> None:
    from ..paths import trust

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


def _exec_profiler(launch, profiler: str, args: list) -> None:
    """In the child, inside the container's namespaces: drop to the user, exec. Never returns."""
    try:
        _check_profiler(profiler)  # as seen inside the container
        identity.become(launch.user.identity)
        identity.restore_caller_process_state()  # the caller's rlimits, default SIGPIPE/SIGXFSZ
        os.umask(PROFILER_UMASK)
        os.chdir("/")
        launch.before_exec()
        os.execve(profiler, [profiler, *args], PROFILER_ENV)
    except LauncherError as err:
        _child_exit(err.code, err.message)
    except OSError as err:
        _child_exit(ExitCode.UNABLE_TO_EXECUTE_CONTAINER_SCRIPT,
                    f"cannot execute {profiler} in the container: {os_error_text(err)}")
    _child_exit(ExitCode.UNABLE_TO_EXECUTE_CONTAINER_SCRIPT, "exec returned")


def _child_exit(code: int, message: str) -> None:
    try:
        os.write(2, f"worker-launcher: {message}\n".encode())
    finally:
        os._exit(code)


def open_container_namespaces(launch, pid: int) -> tuple:
    """(mnt fd, pid fd) of `pid`'s namespaces once it is shown to be a container process of
    the user; exit 9 otherwise."""
    def refuse(why):
        return LauncherError(ExitCode.INVALID_CONTAINER_PID, f"refusing pid {pid}: {why}")

    if pid <= 1:
        raise refuse("not a container process")
    try:
        pidfd = os.pidfd_open(pid)
    except OSError as err:
        raise refuse(os_error_text(err)) from None
    fds = []
    try:
        try:
            proc = os.open(f"/proc/{pid}", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
            fds.append(proc)
            status = _read_at(proc, "status")
            cgroups = _read_at(proc, "cgroup")
            fds.append(os.open("ns/mnt", os.O_RDONLY | os.O_CLOEXEC, dir_fd=proc))
            fds.append(os.open("ns/pid", os.O_RDONLY | os.O_CLOEXEC, dir_fd=proc))
            ours = os.stat("/proc/self/ns/mnt")
            theirs = os.fstat(fds[1])
            import signal

            signal.pidfd_send_signal(pidfd, 0)  # still the process the pidfd was taken for
        except OSError as err:
            raise refuse(os_error_text(err)) from None
        uid = launch.user.identity.uid
        if set(status_uids(status)) != {uid}:
            raise refuse(f"it does not run as {launch.user.name} (uid {uid})")
        if (ours.st_dev, ours.st_ino) == (theirs.st_dev, theirs.st_ino):
            raise refuse("it shares the host's mount namespace (not in a container)")
        if not container_cgroup(cgroups, launch.policy.cgroup_parent):
            raise refuse("it is not in a container's cgroup")
        result = (fds.pop(1), fds.pop(1))
        return result
    finally:
        for fd in fds:
            os.close(fd)
        os.close(pidfd)


def _read_at(dir_fd: int, name: str) -> str:
    fd = os.open(name, os.O_RDONLY | os.O_CLOEXEC, dir_fd=dir_fd)
    try:
        return os.read(fd, 65536).decode("ascii", "replace")
    finally:
        os.close(fd)
