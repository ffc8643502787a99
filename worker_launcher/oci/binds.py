"""Bind sources pinned before runc sees them.

runc resolves a bind mount's source path itself, long after the launcher checked it; a user
who owns a directory on that path (the workdir, so workdir/tmp) could swap it for a symlink
in between. So each checked source is opened (O_PATH, never through a symlink, with the
supervisor's rights), bound through that descriptor onto <run-root>/<id>/binds/<n>, and runc
is given that root-only path instead: what runc binds is exactly what was checked.
"""

import posix as os

from ..privileged import binds as pinned
from ..core.errors import ExitCode, LauncherError

BINDS = "binds"


def stage(container_dir: str, source_fds: list, read_only: list, undo: list) -> tuple:
    """Bind every source fd onto <container_dir>/binds/<n> (pinned.bind_fd, in the root-only
    container directory, a tmpfs whose lazy unmount at reap takes them all), nosuid, nodev
    and, where `read_only` says so, read-only all the way down (pinned.restrict); returns
    those paths in order."""
    top = f"{container_dir}/{BINDS}"
    os.mkdir(top, 0o700)
    undo.append(lambda: release(container_dir))
    targets = []
    for index, fd in enumerate(source_fds):
        pinned.bind_fd(fd, f"{top}/{index}")
        pinned.restrict(f"{top}/{index}", read_only[index])
        targets.append(f"{top}/{index}")
    return tuple(targets)


def release(container_dir: str) -> None:
    """Detach and remove every staged bind of a container. Raises if one cannot be removed,
    so the caller never deletes the container directory through a bind still mounted (that
    would delete the user's files)."""
    problems = pinned.release(f"{container_dir}/{BINDS}")
    if problems:
        raise LauncherError(ExitCode.OCI_REAP_FAILED, problems[0])
