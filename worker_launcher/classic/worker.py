"""Storm's `worker` and `profiler`: run the supervisor's script in a workdir as the user.

The script is read with the supervisor account's rights; its copy, workdir/launch_container.sh,
is written after root has been dropped for good, so it is owned by the user and nothing done
to create it exceeds the user's own rights. Storm's order otherwise: setsid, drop to the
user, write the copy, umask 0027, chdir, exec the copy by its full path (its #! line picks
the interpreter).
"""

import posix as os
import stat

from ..core import identity
from ..core.errors import ExitCode, LauncherError, os_error_text
from ..paths import files, resolve
from . import dirs

CONTAINER_SCRIPT = "launch_container.sh"
MAX_SCRIPT_BYTES = 16 * 1024 * 1024
WORKER_UMASK = 0o027


def worker(launch, workdir: str, script: str) -> int:
    """Storm `worker <workdir> <script>`: set up the workdir as artifacts-dir (workdir/tmp
    without setgid), then run the script there as the user."""
    dirs.prepare_workdir(launch, workdir)
    return exec_script(launch, workdir, script)


def profiler(launch, workdir: str, script: str) -> int:
    """Storm `profiler <workdir> <script>`: as worker, without the directory set-up."""
    return exec_script(launch, workdir, script)


def exec_script(launch, workdir: str, script: str) -> int:
    """Copy `script` to workdir/launch_container.sh and exec it as the user; returns only
    by raising LauncherError."""
    text = files.read_as_caller(script, MAX_SCRIPT_BYTES)
    workdir_fd = _open_workdir(launch, workdir)
    if os.getsid(0) != os.getpid():  # the stub already started a session (own_session)
        try:
            os.setsid()
        except OSError as err:
            raise LauncherError(ExitCode.SETSID_OPER_FAILED,
                                f"setsid failed: {os_error_text(err)}") from None
    # For good: real, effective and saved ids and the user's groups; verified by become().
    identity.become(launch.user.identity)
    target = f"{workdir.rstrip('/')}/{CONTAINER_SCRIPT}"
    write_launch_file(workdir_fd, text, target)
    os.umask(WORKER_UMASK)
    try:
        os.fchdir(workdir_fd)
    except OSError as err:
        raise LauncherError(ExitCode.UNABLE_TO_EXECUTE_CONTAINER_SCRIPT,
                            f"cannot change directory to {workdir}: {os_error_text(err)}") from None
    os.close(workdir_fd)
    identity.restore_caller_process_state()  # the caller's rlimits, default SIGPIPE/SIGXFSZ
    launch.before_exec()
    try:
        os.execv(target, [target])  # Storm: execlp(dest, dest, NULL)
    except OSError as err:
        raise LauncherError(ExitCode.UNABLE_TO_EXECUTE_CONTAINER_SCRIPT,
                            f"cannot execute {target}: {os_error_text(err)}") from None
    return ExitCode.UNABLE_TO_EXECUTE_CONTAINER_SCRIPT  # not reached


def _open_workdir(launch, workdir: str) -> int:
    """An O_PATH fd of the workdir, located as the supervisor account and confined to the
    directories the policy allows."""
    entry = dirs.locate_confined(launch, workdir)
    try:
        if entry.st is None:
            raise LauncherError(ExitCode.UNABLE_TO_BUILD_PATH, f"path does not exist: {workdir}")
        if stat.S_ISLNK(entry.st.st_mode):
            raise LauncherError(ExitCode.INVALID_NM_ROOT_DIRS,
                                f"refusing {workdir}: it is a symlink")
        if not stat.S_ISDIR(entry.st.st_mode):
            raise LauncherError(ExitCode.UNABLE_TO_BUILD_PATH, f"{workdir} is not a directory")
        return resolve.open_entry(entry, resolve.DIR_PATH_FLAGS)
    finally:
        entry.close()


def write_launch_file(workdir_fd: int, text: bytes, where: str) -> None:
    """Create launch_container.sh afresh, 0700, never through what was there (paths.files.
    replace). Runs with the user's rights only."""
    try:
        files.replace(workdir_fd, CONTAINER_SCRIPT, text, 0o700)
    except OSError as err:
        raise LauncherError(ExitCode.UNABLE_TO_EXECUTE_CONTAINER_SCRIPT,
                            f"cannot create {where}: {os_error_text(err)}") from None
