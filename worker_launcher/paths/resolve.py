"""Locating a path the caller names, without following a symlink the caller could plant.

`locate` walks the path one component at a time from `/` with O_NOFOLLOW, holding a file
descriptor of each directory, so renaming a component under us cannot move us elsewhere.
A symlink is followed only if only root could have put it there (e.g. /var/storm ->
/data/storm); any other symlink before the end is refused, and a final one is returned as
the link itself. The verbs then act relative to the returned directory fd.
"""

import os
import stat

from ..core.errors import ExitCode, LauncherError, os_error_text

MAX_SYMLINKS = 40
DIR_PATH_FLAGS = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_VANISHED = (FileNotFoundError, NotADirectoryError)


def follow_link(prefix: str, target: str, rest: list) -> str:
    """The path after replacing a symlink at `prefix`/<link> (prefix has no symlinks) by
    `target`, then `rest`; '..' is applied lexically. Pure."""
    parts = [] if target.startswith("/") else [p for p in prefix.split("/") if p]
    for part in target.split("/") + list(rest):
        if part in ("", "."):
            continue
        if part == "..":
            if parts:
                parts.pop()
        else:
            parts.append(part)
    return "/" + "/".join(parts)


def trusted_link(link: os.stat_result, parent: os.stat_result) -> bool:
    """A symlink only root can have put there: root-owned, in a root-owned directory that
    neither group nor others can write. Such a link (e.g. /var/storm -> /data/storm) is
    followed; any other symlink in a path is refused."""
    return (link.st_uid == 0 and parent.st_uid == 0
            and not parent.st_mode & (stat.S_IWGRP | stat.S_IWOTH))


class Entry:
    """Where a named path is: `parent_fd` (O_PATH) and `name` in it, the path with trusted
    symlinks resolved, and its lstat (None when it does not exist)."""

    __slots__ = ("parent_fd", "name", "path", "st")

    def __init__(self, parent_fd, name, path, st):
        self.parent_fd, self.name, self.path, self.st = parent_fd, name, path, st

    def close(self) -> None:
        if self.parent_fd is not None:
            os.close(self.parent_fd)
            self.parent_fd = None


def locate(path: str) -> Entry:
    """Find `path` one component at a time from `/` with O_NOFOLLOW. Call it with the
    rights of whoever names the path. An untrusted symlink is refused (exit 5) before the
    end and returned as such (never followed) at the end."""
    current = path
    for _ in range(MAX_SYMLINKS):
        found = _walk(current)
        if isinstance(found, Entry):
            return found
        current = found
    raise LauncherError(ExitCode.INVALID_NM_ROOT_DIRS, f"too many symlinks in {path}")


def _walk(path: str):
    """An Entry, or the next path to walk when a trusted symlink was met."""
    parts = [part for part in path.split("/") if part]
    if not parts:
        raise LauncherError(ExitCode.INVALID_NM_ROOT_DIRS, "refusing to act on /")
    fd = os.open("/", DIR_PATH_FLAGS)
    try:
        for index, name in enumerate(parts):
            here = "/" + "/".join(parts[:index + 1])
            try:
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            except _VANISHED:
                return Entry(None, name, path, None)
            last = index == len(parts) - 1
            if stat.S_ISLNK(st.st_mode):
                if trusted_link(st, os.fstat(fd)):
                    return follow_link(here.rsplit("/", 1)[0], os.readlink(name, dir_fd=fd),
                                       parts[index + 1:])
                if not last:
                    raise LauncherError(ExitCode.INVALID_NM_ROOT_DIRS,
                                        f"refusing {path}: {here} is a symlink")
            if last:
                found, fd = Entry(fd, name, path, st), None
                return found
            if not stat.S_ISDIR(st.st_mode):
                raise LauncherError(ExitCode.UNABLE_TO_BUILD_PATH,
                                    f"cannot use {path}: {here} is not a directory")
            child = _descend(fd, name, st, here)
            os.close(fd)
            fd = child
    except OSError as err:
        raise LauncherError(ExitCode.UNABLE_TO_STAT_FILE,
                            f"cannot reach {path}: {os_error_text(err)}") from None
    finally:
        if fd is not None:
            os.close(fd)


def _descend(fd: int, name: str, seen: os.stat_result, where: str) -> int:
    """Open directory `name` under `fd`; it must be what lstat saw."""
    child = os.open(name, DIR_PATH_FLAGS, dir_fd=fd)
    if not same_file(os.fstat(child), seen):
        os.close(child)
        raise LauncherError(ExitCode.INVALID_NM_ROOT_DIRS, f"{where} changed while it was checked")
    return child


def same_file(a: os.stat_result, b: os.stat_result) -> bool:
    return a.st_dev == b.st_dev and a.st_ino == b.st_ino


def open_entry(entry: Entry, flags: int) -> int:
    """Open the located entry itself (never through a symlink) and check it is the same."""
    try:
        fd = os.open(entry.name, flags, dir_fd=entry.parent_fd)
    except OSError as err:
        raise LauncherError(ExitCode.UNABLE_TO_STAT_FILE,
                            f"cannot open {entry.path}: {os_error_text(err)}") from None
    if not same_file(os.fstat(fd), entry.st):
        os.close(fd)
        raise LauncherError(ExitCode.INVALID_NM_ROOT_DIRS,
                            f"{entry.path} changed while it was checked")
    return fd
