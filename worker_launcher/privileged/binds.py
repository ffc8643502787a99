"""Bind mounts pinned by file descriptor: the one way docker and runc get bind sources.

dockerd and runc resolve a bind source path themselves, as root, some time after the
launcher checked it; the supervisor or a user could swap a component for a symlink in
between. So each source is opened once, the policy judges the object behind that fd, and
that very object is bind-mounted onto a fresh entry of a root-only directory; docker or runc
is given that path.

For docker there is a second form that leaves nothing behind whatever kills the launcher: a
detached tree (a tmpfs mounted nowhere, reachable only through the launcher's descriptor)
holding detached clones of the pinned objects. dockerd and runc reach them through
/proc/<launcher pid>/fd/<tree>/<n>; the kernel dissolves the tree when the launcher exits.
Binding from a detached tree into another mount namespace (runc's) needs Linux 6.15 or
later; `attach_detached` raises OSError on older kernels, and docker then stages in the run
root (`bind_fd`).
"""

import errno
import posix as os
import stat

from . import kernel
from ..core.errors import os_error_text


def bind_fd(fd: int, target: str) -> None:
    """Bind the object behind `fd` onto `target`, a new entry created here.

    Safe: the mount source is /proc/self/fd/<fd>, which the kernel follows to the open file,
    not to any path; the target is created afresh (O_EXCL, mkdir) in a root-only directory."""
    if stat.S_ISDIR(os.fstat(fd).st_mode):
        os.mkdir(target, 0o700)
    else:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        os.close(os.open(target, flags, 0o600))
    kernel.mount(f"/proc/self/fd/{fd}", target, None, kernel.MS_BIND | kernel.MS_REC)


AT_FDCWD = -100


def restrict(target: str, read_only: bool, dir_fd: int = AT_FDCWD) -> bool:
    """nosuid and nodev, and read-only if `read_only`, on the staged bind at `target` (of
    `dir_fd`; "" for `dir_fd` itself) and on every mount below it: runc and docker apply a
    bind's ro, nosuid and nodev to its top mount only, so a source's submounts (each cgroup
    hierarchy below a v1 /sys/fs/cgroup) kept their own flags. False before Linux 5.12
    (no mount_setattr): then only the top mount gets them.

    Safe: it only ever adds restrictions (nothing is cleared, propagation untouched), to
    the mounts of our own staged copy, an entry we just bound in a root-only directory (or
    a detached tree); the host's own mounts of the source keep their flags."""
    try:
        kernel.restrict_tree(dir_fd, target, read_only, target or "a staged bind")
    except OSError as err:
        if err.errno == errno.ENOSYS:
            return False
        raise
    return True


def detached_tree() -> int:
    """A new staging tree: a tmpfs, root-only, nosuid/nodev/noexec, attached nowhere.

    Safe: nothing is mounted in any namespace; the returned descriptor (close-on-exec, so no
    child inherits it) is the only way in, and closing it, by exit or SIGKILL, dissolves
    the tree and every clone attached to it."""
    return kernel.detached_tmpfs()


def attach_detached(tree_fd: int, name: str, fd: int, what: str) -> None:
    """Attach a detached recursive clone of the object behind `fd` onto a new entry `name`
    of the detached tree, then check a clone of that entry can be taken again (what runc's
    bind from its own namespace does). Raises OSError (EINVAL before Linux 6.15).

    Safe: the clone is of the very object `fd` names (open_tree on the descriptor, no
    path); it is attached inside the detached tree only, never in a namespace; the entry
    is created afresh (O_EXCL, mkdir) in the root-only tree."""
    if stat.S_ISDIR(os.fstat(fd).st_mode):
        os.mkdir(name, 0o700, dir_fd=tree_fd)
    else:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        os.close(os.open(name, flags, 0o600, dir_fd=tree_fd))
    clone = kernel.clone_tree(fd, what)
    try:
        restrict("", False, clone)  # docker applies ro itself (to the top mount)
        kernel.move_into(clone, tree_fd, name, what)
    finally:
        os.close(clone)
    entry = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=tree_fd)
    try:
        os.close(kernel.clone_tree(entry, what))
    finally:
        os.close(entry)


def release(directory: str) -> list:
    """Detach and remove every entry of `directory`, then the directory; returns what could
    not be removed. Safe: a staging tmpfs (an older launcher mounted one on an OCI
    container's binds/) goes with everything mounted on it in one lazy unmount, and the
    directory is then removed only if nothing is mounted there any more; otherwise entries
    go by rmdir or unlink only, never recursively, so a bind that is somehow still mounted
    loses nothing of what it shows; UMOUNT_NOFOLLOW throughout; only staging directories of
    the root-only run root are passed in."""
    try:
        kernel.umount2(directory, kernel.MNT_DETACH | kernel.UMOUNT_NOFOLLOW)
    except FileNotFoundError:
        return []
    except OSError:
        pass  # not a mount point: entry by entry
    else:
        try:
            os.rmdir(directory)  # fails (EBUSY) if anything is still mounted there
        except OSError as err:
            return [f"cannot remove {directory}: {os_error_text(err)}"]
        return []
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    problems = []
    for name in names:
        target = f"{directory}/{name}"
        try:
            kernel.umount2(target, kernel.MNT_DETACH | kernel.UMOUNT_NOFOLLOW)
        except OSError:
            pass  # not a mount point (a cid file, a launch killed before mounting)
        try:
            if stat.S_ISDIR(os.lstat(target).st_mode):
                os.rmdir(target)
            else:
                os.unlink(target)
        except OSError as err:
            problems.append(f"cannot remove {target}: {os_error_text(err)}")
    try:
        os.rmdir(directory)
    except OSError as err:
        problems.append(f"cannot remove {directory}: {os_error_text(err)}")
    return problems
