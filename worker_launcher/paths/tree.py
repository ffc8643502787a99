"""Walks of directory trees, entirely on file descriptors: listing, opening children,
emptying a tree (`remove_below`). No symlink is followed (a symlink is skipped or unlinked,
its target never touched) and no mount point is entered (another file system, or a bind). Only `*at` calls relative
to directory fds we hold are used, so renaming entries under us can change what we see but
never make us act outside the tree we opened. (The ownership walk is privileged.ownership.)
"""

import errno
import posix as os
import stat

from ..core.errors import ExitCode, LauncherError, os_error_text

DIR_READ_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK|O_NOCTTY: opening a fifo swapped in under us neither blocks nor grabs a tty.
FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY
# Storm exits -1 (255) when a tree cannot be set up or removed; we use its code for a
# failed user-directory set-up instead of a number outside its table.
TREE_FAILED = ExitCode.INITIALIZE_USER_FAILED
_VANISHED = (FileNotFoundError, NotADirectoryError)  # raced away or replaced: skip it


def make_dirs(path: str, mode: int) -> None:
    """os.makedirs(path, mode, exist_ok=True) for an absolute path (the os module is not
    imported: see worker_launcher/__init__.py): missing parents get the default mode."""
    parts = path.split("/")
    for end in range(2, len(parts) + 1):
        try:
            os.mkdir("/".join(parts[:end]), mode if end == len(parts) else 0o777)
        except FileExistsError:
            pass


def list_dir(fd: int, path: str) -> list:
    """[(name, S_IFMT kind)] of directory `fd`, from d_type (lstat where it is unknown)."""
    try:
        with os.scandir(fd) as entries:
            return [(entry.name, _kind(entry, fd)) for entry in entries]
    except OSError as err:
        raise LauncherError(TREE_FAILED, f"cannot list {path}: {os_error_text(err)}") from None


def _kind(entry, fd: int) -> int:
    if entry.is_symlink():
        return stat.S_IFLNK
    if entry.is_dir(follow_symlinks=False):
        return stat.S_IFDIR
    if entry.is_file(follow_symlinks=False):
        return stat.S_IFREG
    try:
        return stat.S_IFMT(os.stat(entry.name, dir_fd=fd, follow_symlinks=False).st_mode)
    except _VANISHED:
        return stat.S_IFLNK  # gone: nothing to do, like a symlink


def open_child(fd: int, name: str, flags: int, where: str):
    """(fd, fstat) of `name` under `fd`, or None when it vanished or became a symlink."""
    try:
        child = os.open(name, flags, dir_fd=fd)
    except _VANISHED:
        return None
    except OSError as err:
        if err.errno == errno.ELOOP:  # replaced by a symlink, which we never follow
            return None
        raise LauncherError(TREE_FAILED, f"cannot open {where}: {os_error_text(err)}") from None
    return child, os.fstat(child)


MOUNT_POINT = "is a mount point (another file system or a bind); not entered"


def mount_id(fd: int) -> int:
    """The id of the mount `fd` is on (/proc/self/fdinfo, Linux 3.15+). A bind of a
    directory of the same file system has the same st_dev but a mount id of its own."""
    info = os.open(f"/proc/self/fdinfo/{fd}", os.O_RDONLY | os.O_CLOEXEC)
    try:
        data = os.read(info, 4096)
    finally:
        os.close(info)
    for line in data.split(b"\n"):
        if line.startswith(b"mnt_id:"):
            return int(line[7:])
    raise OSError(errno.ENOTSUP, f"no mnt_id in /proc/self/fdinfo/{fd}")


def remove_below(top_fd: int, top_path: str, errors: list, open_dir,
                 one_mount: bool = False) -> None:
    """Delete everything below directory `top_fd` with unlinkat/rmdir relative to fds we
    hold; symlinks are unlinked, never followed; a mount point below is not entered (rmdir
    says EBUSY, or the directory opened is on another device; with `one_mount`, for walks
    as root, also on another mount of the same device: a bind), so its mount point fails to
    go, which is reported. Carries on past failures, which are appended to `errors`.
    `open_dir(parent_fd, name, where)` -> (fd, st) or None."""
    top_dev = os.fstat(top_fd).st_dev
    top_mount = mount_id(top_fd) if one_mount else None
    # One frame per level: [fd, path, name in parent, subdirectories still to do].
    stack = [[top_fd, top_path, None, _unlink_files(top_fd, top_path, errors)]]
    try:
        while stack:
            fd, path, name, pending = stack[-1]
            if pending:
                child_name = pending.pop()
                where = f"{path}/{child_name}"
                try:  # an empty directory (most of a container's upper layer) goes at once
                    os.rmdir(child_name, dir_fd=fd)
                    continue
                except FileNotFoundError:
                    continue
                except OSError as err:
                    if err.errno == errno.EBUSY:
                        errors.append(f"{where} {MOUNT_POINT}")
                        continue
                    # not empty, not ours to remove, replaced: see below
                opened = open_dir(fd, child_name, where)
                if opened is None:
                    continue
                if opened[1].st_dev != top_dev or (
                        top_mount is not None and mount_id(opened[0]) != top_mount):
                    os.close(opened[0])
                    errors.append(f"{where} {MOUNT_POINT}")
                    continue
                subdirs = _unlink_files(opened[0], where, errors)
                stack.append([opened[0], where, child_name, subdirs])
                continue
            stack.pop()
            if not stack:
                return
            os.close(fd)
            try:
                os.rmdir(name, dir_fd=stack[-1][0])
            except FileNotFoundError:
                pass
            except OSError as err:
                errors.append(f"cannot remove {path}: {os_error_text(err)}")
    finally:
        for frame in stack[1:]:
            os.close(frame[0])


def _unlink_files(fd: int, path: str, errors: list) -> list:
    """Unlink every non-directory in `fd`; return the names of its subdirectories."""
    try:
        listing = list_dir(fd, path)
    except LauncherError as err:
        errors.append(err.message)
        return []
    subdirs = []
    for name, kind in listing:
        if kind == stat.S_IFDIR:
            subdirs.append(name)
            continue
        try:
            os.unlink(name, dir_fd=fd)  # unlinkat: removes a symlink itself, never its target
        except FileNotFoundError:
            pass
        except IsADirectoryError:
            subdirs.append(name)  # became a directory meanwhile
        except OSError as err:
            errors.append(f"cannot remove {path}/{name}: {os_error_text(err)}")
    return subdirs
