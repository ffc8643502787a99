"""The runc half of a launch: files the container's owner gets, config.json, runc itself.

runc runs as root on a root-only bundle directory (<run-root>/<id>): it reads config.json
from there and writes its pid file there, so no file the supervisor or the user can touch
is ever read or written by root. The copies Storm expects (workdir/config.json, the pid
file, the runc-<id>.out/.err logs) are written with the supervisor's or the user's rights.
"""

import posix as os

from ..core import identity
from ..core.errors import ExitCode, LauncherError, os_error_text
from . import bundle

RUNC_TIMEOUT = 120
CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def _fail(message: str) -> LauncherError:
    return LauncherError(ExitCode.OCI_RUN_FAILED, message)


def open_runc_outputs(launch, request) -> tuple:
    """runc-<id>.out and .err, created by the user in the artifacts directory held by
    request.artifacts_fd (Storm's link resolved by descriptor): whatever is there, a planted
    symlink or a hard link to root's file included, is unlinked, never written through."""
    name = f"runc-{request.spec.container_id}"
    fds = []
    try:
        with identity.acting_as(launch.user.identity):
            for suffix in ("out", "err"):
                try:
                    os.unlink(f"{name}.{suffix}", dir_fd=request.artifacts_fd)
                except FileNotFoundError:
                    pass
                fds.append(os.open(f"{name}.{suffix}", CREATE, 0o640,
                                   dir_fd=request.artifacts_fd))
    except OSError as err:
        for fd in fds:
            os.close(fd)
        raise _fail(f"cannot create {name}.out/.err in the artifacts directory "
                    f"{request.artifacts_path}: {os_error_text(err)}") from None
    return tuple(fds)


def write_configs(launch, request, rootfs: str) -> None:
    """config.json into the root-only bundle directory (what runc reads), and a copy into
    the workdir (held by request.workdir_fd) written as the supervisor account, never
    through a symlink (paths.files.replace)."""
    from ..core.fastjson import dumps
    from ..paths import files

    config = bundle.runtime_config(request.spec, launch.user.identity, rootfs,
                                   os.uname().nodename, request.bind_sources)
    data = dumps(config).encode()
    _write_new(None, f"{request.container_dir}/config.json", data, 0o600)
    with identity.acting_as(launch.caller):
        try:
            files.replace(request.workdir_fd, "config.json", data, 0o640)
        except OSError as err:
            raise _fail(f"cannot write {request.spec.workdir}/config.json: "
                        f"{os_error_text(err)}") from None


def _write_new(dir_fd, name: str, data: bytes, mode: int) -> None:
    fd = os.open(name, CREATE, mode, dir_fd=dir_fd)
    try:
        os.fchmod(fd, mode)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)


def _run_runc(launch, args: list, out_fd: int, err_fd: int):
    """runc with `args` (privileged.spawn: argv only, an empty environment, a new session,
    stdin /dev/null). Returns its exit code, or None when it was killed after RUNC_TIMEOUT
    seconds."""
    from ..core import audit
    from ..privileged import spawn

    code = spawn.run([launch.config.runc, *args], stdout=out_fd, stderr=err_fd,
                     timeout=RUNC_TIMEOUT)
    audit.child_exit(f"runc {args[0]}", code)
    return code


def runc_run(launch, request, outputs: tuple) -> None:
    """`runc run -d --pid-file <bundle>/container.pid -b <bundle> <id>`, stdout and stderr to
    the runc-<id> logs."""
    cdir, container_id = request.container_dir, request.spec.container_id
    try:
        code = _run_runc(launch, ["run", "-d", "--pid-file", f"{cdir}/container.pid", "-b", cdir,
                                  container_id], *outputs)
    except OSError as err:
        raise _fail(f"cannot run {launch.config.runc}: {os_error_text(err)}") from None
    finally:
        for fd in outputs:
            os.close(fd)
    if code is None:
        raise _fail(f"runc run {container_id} did not finish in {RUNC_TIMEOUT} s")
    if code != 0:
        raise _fail(f"runc run {container_id} failed with exit {code}; "
                    f"see runc-{container_id}.err in the artifacts directory")


def publish_pid(launch, request) -> None:
    """Copy runc's pid file (in the root-only bundle directory) to the pidFile Storm asked
    for: created by the user, O_EXCL|O_NOFOLLOW, in the directory held by
    request.pid_dir_fd (checked before anything was mounted)."""
    with open(f"{request.container_dir}/container.pid", "rb") as handle:
        pid = handle.read().strip()
    if not pid.isdigit():
        raise _fail(f"runc wrote no pid for {request.spec.container_id}")
    with identity.acting_as(launch.user.identity):
        try:
            _write_new(request.pid_dir_fd, request.pid_name, pid, 0o644)
        except OSError as err:
            raise LauncherError(ExitCode.WRITE_PIDFILE_FAILED,
                                f"cannot write pid file {request.spec.pid_file}: "
                                f"{os_error_text(err)}") from None


def runc_delete(launch, container_id: str) -> None:
    """`runc delete --force <id>`; a container runc does not know is fine.

    --force because reap is Storm's last word on the worker (already killed, or given up on):
    without it runc refuses a container still running, which would keep its overlay and layers
    mounted and its processes alive after Storm has forgotten them. runc's stderr goes to a
    memfd: unbounded, so a chatty runc can never block on a full pipe."""
    err_fd = os.memfd_create("runc-delete-stderr", os.MFD_CLOEXEC)
    try:
        null = os.open("/dev/null", os.O_WRONLY | os.O_CLOEXEC)
        try:
            code = _run_runc(launch, ["delete", "--force", container_id], null, err_fd)
        finally:
            os.close(null)
        message = os.pread(err_fd, 65536, 0).decode(errors="replace").strip()
    except OSError as err:
        raise LauncherError(ExitCode.OCI_REAP_FAILED, f"cannot run {launch.config.runc} delete: "
                                                      f"{os_error_text(err)}") from None
    finally:
        os.close(err_fd)
    if code != 0 and "does not exist" not in message:
        detail = (message.splitlines()[-1] if message
                  else "timed out" if code is None else f"exit {code}")
        raise LauncherError(ExitCode.OCI_REAP_FAILED, f"runc delete {container_id} failed: {detail}")
