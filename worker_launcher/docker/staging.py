"""Bind sources and the cid file of a `docker run`, pinned where only root can change them.

dockerd resolves a `-v` source path itself, as root, some time after we checked it; the
user (or the supervisor account) could swap a component for a symlink in between. So each
source is opened once (O_PATH, with the supervisor account's rights, never through a final
symlink), the policy judges the object that fd names, and that very object is bind-mounted
from the fd onto a staging path in a root-only directory under the run root. docker gets
the staging path. Once `docker run -d` has returned the container holds its own copies of
the mounts, so the staging mounts are detached and the directory removed.
"""

from __future__ import annotations

import os
import stat

from ..core import identity
from ..core.errors import ExitCode, LauncherError, os_error_text

STAGING_DIR = "docker"  # under the run root, root-only


def open_source(launch, source: str) -> tuple:
    """(O_PATH fd, real path) of a bind source, opened with the supervisor account's rights,
    or (None, why not): it does not exist, cannot be reached, or is itself a symlink."""
    with identity.acting_as(launch.caller):
        try:
            fd = os.open(source, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as err:
            return None, f"cannot reach {source}: {os_error_text(err)}"
    if stat.S_ISLNK(os.fstat(fd).st_mode):
        os.close(fd)
        return None, f"{source} is a symlink"
    return fd, os.readlink(f"/proc/self/fd/{fd}")


def private_directory(launch) -> str:
    """<run root>/docker, created root-owned 0700 if missing; refused if anyone else could
    change it."""
    directory = f"{launch.config.run_root}/{STAGING_DIR}"
    try:
        os.makedirs(directory, 0o700, exist_ok=True)
        st = os.lstat(directory)
    except OSError as err:
        raise LauncherError(ExitCode.DOCKER_RUN_FAILED,
                            f"cannot create {directory}: {os_error_text(err)}") from None
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != 0 or st.st_mode & 0o077:
        raise LauncherError(ExitCode.DOCKER_RUN_FAILED,
                            f"{directory} must be a root-owned directory, mode 0700")
    return directory


class Staging:
    """A directory of staged bind sources and the private cid file of one `docker run`.
    `close` detaches every mount and removes everything, whatever happened before."""

    def __init__(self, launch, name: str):
        directory = private_directory(launch)
        remove_abandoned(directory)
        # <worker id>.<our pid>.<random>: a later call can tell a launch that was killed
        self.path = f"{directory}/{name}.{os.getpid()}.{os.urandom(4).hex()}"
        self.mounts = []
        try:
            os.mkdir(self.path, 0o700)
        except OSError as err:
            raise LauncherError(ExitCode.DOCKER_RUN_FAILED,
                                f"cannot create {self.path}: {os_error_text(err)}") from None
        self.cidfile = f"{self.path}/container.cid"

    def bind(self, fd: int, real: str) -> str:
        """Bind-mount the object behind `fd` onto a new staging path; returns that path.
        docker applies its own ro/rw on top."""
        from ..privileged import binds as pinned

        target = f"{self.path}/{len(self.mounts)}"
        try:
            pinned.bind_fd(fd, target)
        except OSError as err:
            raise LauncherError(ExitCode.DOCKER_RUN_FAILED,
                                f"cannot stage the bind source {real}: {os_error_text(err)}"
                                ) from None
        self.mounts.append(target)
        return target

    def read_cid(self) -> bytes | None:
        try:
            with open(self.cidfile, "rb") as handle:
                return handle.read(256)
        except FileNotFoundError:
            return None

    def close(self) -> None:
        clear(self.path)


def clear(path: str) -> None:
    """Detach every staged mount in `path` and remove it; what cannot go is left for the
    next call (nothing of the user's is ever deleted: no recursive removal)."""
    from ..privileged import binds as pinned

    pinned.release(path)


def remove_abandoned(directory: str) -> None:
    """Staging left by a docker-run that was killed (its pid is gone): cleared, so a kill -9
    leaves no mount behind for long."""
    for name in os.listdir(directory):
        parts = name.rsplit(".", 2)
        if len(parts) != 3 or not parts[1].isdigit():
            continue
        if int(parts[1]) != os.getpid() and not os.path.exists(f"/proc/{parts[1]}"):
            clear(f"{directory}/{name}")
