"""Walks of directory trees for the directory verbs, entirely on file descriptors.

`fix_tree` applies Storm's owner and mode rule to a tree; `remove_below` empties one.
Neither follows a symlink (a symlink is skipped or unlinked, its target never touched) nor
enters another file system. Only fchown/fchmod on fds we opened with O_NOFOLLOW and `*at`
calls relative to directory fds we hold are used, so renaming entries under us can change
what we see but never make us act outside the tree we opened.
"""

import errno
import os
import stat

from ..errors import ExitCode, LauncherError, os_error_text

DIR_READ_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK|O_NOCTTY: opening a fifo swapped in under us neither blocks nor grabs a tty.
FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY
# Storm exits -1 (255) when a tree cannot be set up or removed; we use its code for a
# failed user-directory set-up instead of a number outside its table.
TREE_FAILED = ExitCode.INITIALIZE_USER_FAILED
_VANISHED = (FileNotFoundError, NotADirectoryError)  # raced away or replaced: skip it


def storm_mode(mode: int, user_writable: bool, setgid_dirs: bool) -> int:
    """Storm's rule: keep the owner's r/x, add group rw, owner w if user-writable;
    directories also get group x and (unless told otherwise) setgid. Others get nothing."""
    new = (mode & (stat.S_IRUSR | stat.S_IXUSR)) | stat.S_IRGRP | stat.S_IWGRP
    if user_writable:
        new |= stat.S_IWUSR
    if stat.S_ISDIR(mode):
        new |= stat.S_IXGRP
        if setgid_dirs:
            new |= stat.S_ISGID
    return new


class Rule:
    """Owner, group and mode rule for one subtree."""

    __slots__ = ("uid", "gid", "user_writable", "setgid_dirs")

    def __init__(self, uid, gid, user_writable, setgid_dirs=True):
        self.uid, self.gid = uid, gid
        self.user_writable, self.setgid_dirs = user_writable, setgid_dirs


def apply_rule(fd: int, st: os.stat_result, rule: Rule, where: str) -> None:
    """fchown/fchmod the open entry; each call only where something changes. A file with
    other hard links is taken over only if the user owns it already: it could be a link to
    a file of someone else's (another user's, the supervisor's, root's) where the kernel
    does not forbid such links (fs.protected_hardlinks=0)."""
    if stat.S_ISREG(st.st_mode) and st.st_nlink > 1 and st.st_uid != rule.uid:
        raise LauncherError(TREE_FAILED,
                            f"refusing {where}: a hard link to a file of uid {st.st_uid}")
    mode = storm_mode(st.st_mode, rule.user_writable, rule.setgid_dirs)
    try:
        if st.st_uid != rule.uid or st.st_gid != rule.gid:
            os.fchown(fd, rule.uid, rule.gid)
            os.fchmod(fd, mode)  # chown may have cleared set-id bits: always set the mode
        elif stat.S_IMODE(st.st_mode) != mode:
            os.fchmod(fd, mode)
    except OSError as err:
        raise LauncherError(TREE_FAILED, f"cannot set owner or mode of {where}: "
                                         f"{os_error_text(err)}") from None


def fix_tree(top_fd: int, top_path: str, rule: Rule, child_rules=None) -> None:
    """Apply `rule` to the open entry `top_fd` and, if a directory, to everything below it
    on the same file system. `child_rules` maps names directly below the top to another
    rule for their subtree. Symlinks are skipped; other mounts are neither touched nor
    entered; devices, fifos and sockets are refused as Storm does."""
    top_st = os.fstat(top_fd)
    apply_rule(top_fd, top_st, rule, top_path)
    if not stat.S_ISDIR(top_st.st_mode):
        return
    # One open directory per level: (fd, path, [(subdirectory name, rule)] still to do).
    stack = [(top_fd, top_path, _fix_files(top_fd, top_path, rule, child_rules))]
    try:
        while stack:
            fd, path, pending = stack[-1]
            if not pending:
                stack.pop()
                if fd != top_fd:
                    os.close(fd)
                continue
            name, sub_rule = pending.pop()
            where = f"{path}/{name}"
            child = _open_child(fd, name, DIR_READ_FLAGS, where)
            if child is None:
                continue
            child_fd, st = child
            if st.st_dev != top_st.st_dev:  # a mount point: neither touched nor entered
                os.close(child_fd)
                continue
            stack.append((child_fd, where, []))
            apply_rule(child_fd, st, sub_rule, where)
            stack[-1][2].extend(_fix_files(child_fd, where, sub_rule, None))
    finally:
        for fd, _, _ in stack:
            if fd != top_fd:
                os.close(fd)


def _fix_files(fd: int, path: str, rule: Rule, child_rules) -> list:
    """Apply the rule to the files in directory `fd`; return [(subdir name, rule)]."""
    subdirs = []
    for name, kind in list_dir(fd, path):
        entry_rule = child_rules.get(name, rule) if child_rules else rule
        if kind == stat.S_IFDIR:
            subdirs.append((name, entry_rule))
        elif kind == stat.S_IFREG:
            child = _open_child(fd, name, FILE_FLAGS, f"{path}/{name}")
            if child is None:
                continue
            child_fd, st = child
            try:
                if not stat.S_ISREG(st.st_mode):
                    raise LauncherError(TREE_FAILED, f"{path}/{name} changed while it was set up")
                apply_rule(child_fd, st, entry_rule, f"{path}/{name}")
            finally:
                os.close(child_fd)
        elif kind != stat.S_IFLNK:
            raise LauncherError(TREE_FAILED, f"refusing {path}/{name}: not a regular file, "
                                             f"directory or symlink")
    subdirs.reverse()  # popped from the end: keeps directory order
    return subdirs


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


def _open_child(fd: int, name: str, flags: int, where: str):
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


def remove_below(top_fd: int, top_path: str, errors: list, open_dir) -> None:
    """Delete everything below directory `top_fd` with unlinkat/rmdir relative to fds we
    hold; symlinks are unlinked, never followed; another file system below is not entered
    (its mount point then fails to go, which is reported). Carries on past failures, which
    are appended to `errors`. `open_dir(parent_fd, name, where)` -> (fd, st) or None."""
    top_dev = os.fstat(top_fd).st_dev
    # One frame per level: [fd, path, name in parent, subdirectories still to do].
    stack = [[top_fd, top_path, None, _unlink_files(top_fd, top_path, errors)]]
    try:
        while stack:
            fd, path, name, pending = stack[-1]
            if pending:
                child_name = pending.pop()
                where = f"{path}/{child_name}"
                opened = open_dir(fd, child_name, where)
                if opened is None:
                    continue
                if opened[1].st_dev != top_dev:
                    os.close(opened[0])
                    errors.append(f"{where} is another file system; not entered")
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
