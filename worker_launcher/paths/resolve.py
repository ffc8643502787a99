"""Resolving a path a caller names to a file descriptor, following nothing a caller planted.

The rules, for every caller-named path:
- it must be absolute and normalized (no '.', '..' or empty components that could mean two
  things), and never under /proc, /sys or /dev: where a host file is expected, a pseudo file
  (a magic link such as /proc/<pid>/cwd or /proc/self/fd/N, a device) is never one;
- a symlink on the way is followed only if only root could have put it there: owned by root,
  in a root-owned directory neither group nor others can write (e.g. /var/storm ->
  /data/storm); any other is refused, and a final symlink is returned as the link itself;
- the result is a descriptor; the verbs act through it (or relative to it) and never open
  the path string again. A canonical path string comes with it for messages and for the
  policy's decisions, which are then applied to that very descriptor.

With openat2 (Linux 5.6+) one call resolves the whole path with RESOLVE_NO_SYMLINKS (which
implies RESOLVE_NO_MAGICLINKS); when it meets a symlink, or the kernel has no openat2, the
path is walked one component at a time with O_NOFOLLOW, holding a descriptor of each
directory, so renaming a component under us cannot move us elsewhere.
"""

import errno
import posix as os
import stat
import sys

from ..core.errors import ExitCode, LauncherError, os_error_text
from ..core.config import is_within, normalize

MAX_SYMLINKS = 40
DIR_PATH_FLAGS = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
PSEUDO_ROOTS = ("/proc", "/sys", "/dev")
_VANISHED = (FileNotFoundError, NotADirectoryError)
_FS_ENCODING = sys.getfilesystemencoding()
_state = {"openat2": None}  # None: not probed yet; then the wrapper or False


# --- openat2 -----------------------------------------------------------------------------
def _openat2():
    """The openat2 wrapper, or None on kernels (or seccomp filters) without it."""
    if _state["openat2"] is None:
        _state["openat2"] = False
        try:
            from ._resolve import ffi, lib
        except ImportError:
            from .. import _build

            if _build.BINARY_PATH:  # installed: a missing shim is a broken install
                raise LauncherError(ExitCode.INVALID_CONTAINER_EXEC_PERMISSIONS,
                                    "the openat2 shim worker_launcher/paths/_resolve is "
                                    "missing from the install") from None
            return None  # the source tree (unit tests): the component walk only
        probe = lib.wl_openat2(-100, b"/", os.O_PATH | os.O_CLOEXEC, 0)
        if probe >= 0:
            os.close(probe)

            def openat2(dir_fd: int, path: str, flags: int, resolve: int) -> int:
                fd = lib.wl_openat2(dir_fd, _fsencode(path), flags | os.O_CLOEXEC, resolve)
                if fd < 0:
                    code = ffi.errno
                    raise OSError(code, os.strerror(code), path)
                return fd

            openat2.NO_SYMLINKS = lib.RESOLVE_NO_SYMLINKS | lib.RESOLVE_NO_MAGICLINKS
            openat2.BENEATH = lib.RESOLVE_BENEATH
            _state["openat2"] = openat2
    return _state["openat2"] or None


AT_FDCWD = -100


# --- pure rules --------------------------------------------------------------------------
def _fsencode(text: str) -> bytes:
    """os.fsencode (the os module is not imported: see worker_launcher/__init__.py)."""
    return text.encode(_FS_ENCODING, "surrogateescape")


def pseudo_root(path: str) -> "str | None":
    """The pseudo file system (/proc, /sys, /dev) `path` (normalized) is in, or None."""
    for root in PSEUDO_ROOTS:
        if is_within(path, root):
            return root
    return None


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


def trusted_target(name: str, dir_fd: int, link: os.stat_result):
    """The target of the symlink `name` in directory `dir_fd` (lstat `link`) when it may be
    followed, else None: only root could have put it there (trusted_link) and it is a
    symlink stored on a file system, whose size is its target's length. A kernel-made link
    (procfs's /proc/<pid>/cwd, /proc/self/fd/N, wherever a procfs is mounted) has size 0:
    it is never followed, not even by its target's name."""
    if not trusted_link(link, os.fstat(dir_fd)):
        return None
    target = os.readlink(name, dir_fd=dir_fd)
    return target if link.st_size == len(_fsencode(target)) > 0 else None


def same_file(a: os.stat_result, b: os.stat_result) -> bool:
    return a.st_dev == b.st_dev and a.st_ino == b.st_ino


def checked_path(path, code: int = ExitCode.INVALID_NM_ROOT_DIRS, pseudo_ok: bool = False) -> str:
    """`path` normalized, or LauncherError(code) when it is relative, has '.' or '..', or
    names a pseudo file system (unless `pseudo_ok`: for paths root configured)."""
    normal = normalize(path)
    if normal is None:
        raise LauncherError(code, f"{path!r} is not an absolute path without '.' or '..'")
    root = None if pseudo_ok else pseudo_root(normal)
    if root:
        raise LauncherError(code, f"refusing {normal}: paths under {root} are never used as "
                                  f"host files")
    return normal


# --- locating ----------------------------------------------------------------------------
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

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()
        return False


def locate(path: str, pseudo_ok: bool = False, walk: bool = False) -> Entry:
    """Find `path` without following an untrusted symlink. Call it with the rights of whoever
    names the path. A symlink is refused (exit 5) before the end and returned as such (never
    followed) at the end; a missing path comes back with entry.st None. Paths under /proc,
    /sys and /dev are refused unless `pseudo_ok` (a path root configured, e.g. the cgroup
    root); a trusted link never leads into one either way. `walk`: the component walk
    even where openat2 exists (same result)."""
    current = checked_path(path, pseudo_ok=pseudo_ok)
    for _ in range(MAX_SYMLINKS):
        found = _locate_once(current, walk)
        if isinstance(found, Entry):
            return found
        current = checked_path(found)
    raise LauncherError(ExitCode.INVALID_NM_ROOT_DIRS, f"too many symlinks in {path}")


def _locate_once(path: str, walk: bool = False):
    """An Entry, or the next path to try when a trusted symlink was met."""
    if path == "/":
        raise LauncherError(ExitCode.INVALID_NM_ROOT_DIRS, "refusing to act on /")
    openat2 = None if walk else _openat2()
    if openat2 is None:
        return _walk(path)
    parent, name = path.rsplit("/", 1)
    try:
        fd = openat2(AT_FDCWD, parent or "/", DIR_PATH_FLAGS, openat2.NO_SYMLINKS)
    except FileNotFoundError:
        return Entry(None, name, path, None)
    except OSError as err:
        if err.errno in (errno.ELOOP, errno.ENOTDIR, errno.EXDEV):
            return _walk(path)  # a symlink on the way (maybe a trusted one), or a precise error
        raise LauncherError(ExitCode.UNABLE_TO_STAT_FILE,
                            f"cannot reach {path}: {os_error_text(err)}") from None
    return _final(fd, name, path)


def _final(fd: int, name: str, path: str):
    """The entry `name` in directory `fd` (which it takes over), or a trusted link's path."""
    try:
        st = os.stat(name, dir_fd=fd, follow_symlinks=False)
    except FileNotFoundError:
        return Entry(fd, name, path, None)
    except OSError as err:
        os.close(fd)
        raise LauncherError(ExitCode.UNABLE_TO_STAT_FILE,
                            f"cannot reach {path}: {os_error_text(err)}") from None
    if stat.S_ISLNK(st.st_mode):
        try:
            target = trusted_target(name, fd, st)
        except OSError:
            target = None
        if target is not None:
            os.close(fd)
            return follow_link(path.rsplit("/", 1)[0], target, [])
    return Entry(fd, name, path, st)


def _walk(path: str):
    """The component walk: an Entry, or the next path to try when a trusted symlink was met."""
    parts = [part for part in path.split("/") if part]
    fd = os.open("/", DIR_PATH_FLAGS)
    try:
        for index, name in enumerate(parts[:-1]):
            here = "/" + "/".join(parts[:index + 1])
            try:
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            except _VANISHED:
                return Entry(None, parts[-1], path, None)
            if stat.S_ISLNK(st.st_mode):
                target = trusted_target(name, fd, st)
                if target is not None:
                    return follow_link(here.rsplit("/", 1)[0], target, parts[index + 1:])
                raise LauncherError(ExitCode.INVALID_NM_ROOT_DIRS,
                                    f"refusing {path}: {here} is a symlink")
            if not stat.S_ISDIR(st.st_mode):
                raise LauncherError(ExitCode.UNABLE_TO_BUILD_PATH,
                                    f"cannot use {path}: {here} is not a directory")
            child = _descend(fd, name, st, here)
            os.close(fd)
            fd = child
        found, fd = _final(fd, parts[-1], path), None
        return found
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


# --- opening -----------------------------------------------------------------------------
def open_entry(entry: Entry, flags: int) -> int:
    """Open the located entry itself (never through a symlink, never blocking on a fifo,
    never taking a terminal) and check it is what was located."""
    if not flags & os.O_PATH:
        flags |= os.O_NONBLOCK | os.O_NOCTTY
    try:
        fd = os.open(entry.name, flags | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=entry.parent_fd)
    except OSError as err:
        raise LauncherError(ExitCode.UNABLE_TO_STAT_FILE,
                            f"cannot open {entry.path}: {os_error_text(err)}") from None
    if entry.st is not None and not same_file(os.fstat(fd), entry.st):
        os.close(fd)
        raise LauncherError(ExitCode.INVALID_NM_ROOT_DIRS,
                            f"{entry.path} changed while it was checked")
    return fd


def open_path(path: str, flags: int = os.O_PATH) -> tuple:
    """(fd, canonical path) of an existing entry that is not a symlink; exit 12 when it does
    not exist, 5 when it is a symlink."""
    with locate(path) as entry:
        if entry.st is None:
            raise LauncherError(ExitCode.UNABLE_TO_STAT_FILE, f"{path} does not exist")
        if stat.S_ISLNK(entry.st.st_mode):
            raise LauncherError(ExitCode.INVALID_NM_ROOT_DIRS, f"refusing {path}: it is a symlink")
        return open_entry(entry, flags), entry.path


def open_beneath(dir_fd: int, relative: str, flags: int, where: str) -> int:
    """Open `relative` (no '..', no symlink anywhere, no magic link) strictly below the
    directory `dir_fd`. `where` names the result in messages."""
    parts = [part for part in relative.split("/") if part]
    if not parts or any(part in (".", "..") for part in parts) or relative.startswith("/"):
        raise LauncherError(ExitCode.INVALID_NM_ROOT_DIRS, f"refusing {where}: not a plain "
                                                           f"relative path {relative!r}")
    if not flags & os.O_PATH:
        flags |= os.O_NONBLOCK | os.O_NOCTTY
    openat2 = _openat2()
    try:
        if openat2 is not None:
            return openat2(dir_fd, "/".join(parts), flags | os.O_NOFOLLOW,
                           openat2.NO_SYMLINKS | openat2.BENEATH)
        fd = os.dup(dir_fd)
        try:
            for name in parts[:-1]:
                child = os.open(name, DIR_PATH_FLAGS, dir_fd=fd)
                os.close(fd)
                fd = child
            return os.open(parts[-1], flags | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
        finally:
            os.close(fd)
    except OSError as err:
        reason = "a symlink is on the way" if err.errno == errno.ELOOP else os_error_text(err)
        raise LauncherError(ExitCode.UNABLE_TO_STAT_FILE,
                            f"cannot open {where}: {reason}") from None


def canonical(path: str, pseudo_ok: bool = False) -> str:
    """`path` with trusted symlinks resolved (it need not exist); exit 5 or 12 as locate.
    By the component walk: for the few paths a policy names, cheaper than loading the
    openat2 shim (cffi), which --check-config would load for nothing else (~0.5 ms)."""
    with locate(path, pseudo_ok, walk=True) as entry:
        return entry.path


def fd_path(fd: int) -> str:
    """A path naming the open file itself, for a tool that needs a path: the kernel follows
    /proc/self/fd/N to the open file, not to any name."""
    return f"/proc/self/fd/{fd}"
