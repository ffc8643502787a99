"""Bind sources pinned before runc sees them.

runc resolves a bind mount's source path itself, long after the launcher checked it; a user
who owns a directory on that path (the workdir, so workdir/tmp) could swap it for a symlink
in between. So each checked source is opened (O_PATH, never through a symlink, with the
supervisor's rights), bound through that descriptor onto <run-root>/<id>/binds/<n>, and runc
is given that root-only path instead: what runc binds is exactly what was checked.
"""

import os
import stat

from .. import kernel
from ..errors import ExitCode, LauncherError, os_error_text

BINDS = "binds"


def stage(container_dir: str, source_fds: list, undo: list) -> tuple:
    """Bind every source fd onto <container_dir>/binds/<n>; returns those paths in order.
    Safe: the mount source is /proc/self/fd/<fd>, the very object checked by the policy (the
    kernel follows that magic link to the open file, not to any path), and the target is a
    fresh root-owned entry in the root-only container directory."""
    top = f"{container_dir}/{BINDS}"
    os.mkdir(top, 0o700)
    undo.append(lambda: release(container_dir))
    targets = []
    for index, fd in enumerate(source_fds):
        target = f"{top}/{index}"
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            os.mkdir(target, 0o700)
        else:
            os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                             | os.O_CLOEXEC, 0o600))
        kernel.mount(f"/proc/self/fd/{fd}", target, None, kernel.MS_BIND | kernel.MS_REC)
        targets.append(target)
    return tuple(targets)


def release(container_dir: str) -> None:
    """Detach and remove every staged bind of a container. Raises if one cannot be removed,
    so the caller never deletes the container directory through a bind still mounted (that
    would delete the user's files). Safe: UMOUNT_NOFOLLOW on entries of our own directory."""
    top = f"{container_dir}/{BINDS}"
    try:
        names = os.listdir(top)
    except FileNotFoundError:
        return
    for name in names:
        target = f"{top}/{name}"
        try:
            kernel.umount2(target, kernel.MNT_DETACH | kernel.UMOUNT_NOFOLLOW)
        except OSError:
            pass  # not mounted (a launch killed before its mount): removal below decides
        try:
            if stat.S_ISDIR(os.lstat(target).st_mode):
                os.rmdir(target)  # fails on anything still mounted or not empty: nothing lost
            else:
                os.unlink(target)
        except OSError as err:
            raise LauncherError(ExitCode.OCI_REAP_FAILED,
                                f"cannot remove bind {target}: {os_error_text(err)}") from None
    os.rmdir(top)
