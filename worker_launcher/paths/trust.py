"""Ownership checks on what the launcher trusts: its config, policy, binary and own code.

Every call runs the code-trust check and reads the config through here: paths.resolve is
imported only when a chain has a symlink (most have none), and no annotation needs
`from __future__ import annotations`."""

import posix as os
import stat
import sys

from ..core.config import normalize
from ..core.errors import ExitCode, LauncherError, os_error_text

MAX_SYMLINKS = 40  # as paths.resolve
_DIR_PATH = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC  # resolve.DIR_PATH_FLAGS


def root_only_writable(st: os.stat_result) -> bool:
    return st.st_uid == 0 and not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


def _owner_problem(where: str, st: os.stat_result) -> "str | None":
    if root_only_writable(st):
        return None
    return (f"{where} is owned by uid {st.st_uid} with mode {stat.S_IMODE(st.st_mode):04o}; "
            f"it must be root-owned and not group- or world-writable")


def root_chain(path: str) -> tuple:
    """Walk `path` from / on descriptors: every directory on the way and the entry itself
    must be changeable by root alone, and a symlink is followed only if trusted (see
    resolve.trusted_link). Returns (O_PATH fd of the entry, or None when it is missing;
    the canonical path; the problem, or None). A missing path is judged by its parents.

    A directory found root-only with all its parents is remembered (_root_only_dirs), and a
    later walk starts at the deepest remembered directory above the path instead of at /:
    only root can change such a chain, so it still leads where it led. (Module files share a
    few long directory chains: the code-trust check walks each once, not once per file.)"""
    current = normalize(path)
    if current is None:
        return None, path, f"{path!r} is not an absolute path without '.' or '..'"
    for _ in range(MAX_SYMLINKS):
        try:
            fd, start = _walk_start(current)
        except OSError as err:
            return None, current, f"cannot check {current}: {os_error_text(err)}"
        try:
            found = _root_chain_once(fd, start, current)
        except OSError as err:
            return None, current, f"cannot check {current}: {os_error_text(err)}"
        finally:
            os.close(fd)
        if isinstance(found, str):
            current = found
            continue
        return found
    return None, path, f"too many symlinks in {path}"


_root_only_dirs = set()  # canonical directories found root-only, all their parents too


def _walk_start(path: str) -> tuple:
    """(O_PATH fd, path) of the deepest remembered directory at or above `path` (normalized),
    else of /. One removed since (only root can have) is forgotten."""
    cut = len(path)
    while cut > 0:
        prefix = path[:cut]
        if prefix in _root_only_dirs:
            try:
                return os.open(prefix, _DIR_PATH), prefix
            except FileNotFoundError:
                _root_only_dirs.discard(prefix)
        cut = path.rfind("/", 0, cut)
    return os.open("/", _DIR_PATH), "/"


def _root_chain_once(fd: int, start: str, path: str):
    """(fd or None, path, problem) as root_chain, or the next path after a trusted link.
    `fd` is the directory `start` (at or above `path`) walked from; it stays the caller's."""
    problem = _owner_problem(start, os.fstat(fd))
    if problem:
        return None, path, problem
    base = "" if start == "/" else start
    parts = [part for part in path[len(base):].split("/") if part]
    if not parts:
        return os.dup(fd), path, None
    held = None
    try:
        for index, name in enumerate(parts):
            here = base + "/" + "/".join(parts[:index + 1])
            try:
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:
                return None, path, None
            if stat.S_ISLNK(st.st_mode):
                from . import resolve

                target = resolve.trusted_target(name, fd, st)
                if target is not None:
                    return resolve.follow_link(here.rsplit("/", 1)[0], target, parts[index + 1:])
                return None, path, (f"{here} is a symlink that someone other than root could "
                                    f"have made")
            problem = _owner_problem(here, st)
            if problem:
                return None, path, problem
            if index < len(parts) - 1 and not stat.S_ISDIR(st.st_mode):
                return None, path, f"{here} is not a directory"
            flags = (_DIR_PATH if index < len(parts) - 1
                     else os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
            child = os.open(name, flags, dir_fd=fd)
            seen = os.fstat(child)
            if (seen.st_dev, seen.st_ino) != (st.st_dev, st.st_ino):
                os.close(child)
                return None, path, f"{here} changed while it was checked"
            if stat.S_ISDIR(st.st_mode):
                _root_only_dirs.add(here)
            if held is not None:
                os.close(held)
            held = fd = child
        result, held = held, None
        return result, path, None
    finally:
        if held is not None:
            os.close(held)


def chain_problem(path: str) -> "str | None":
    """Why `path` or one of its parents could be changed by someone other than root, or None."""
    fd, _, problem = root_chain(path)
    if fd is not None:
        os.close(fd)
    return problem


def _read_reopened(fd: int, limit: int) -> bytes:
    """At most limit + 1 bytes of the entry behind the O_PATH `fd` (reopened through
    /proc/self/fd/N). (files.read_limited's loop: importing paths.files for it would cost
    every call ~0.1 ms.)"""
    data_fd = os.open(f"/proc/self/fd/{fd}", os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY)
    chunks, total = [], 0
    try:
        while total <= limit:
            chunk = os.read(data_fd, limit + 1 - total)
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
    finally:
        os.close(data_fd)
    return b"".join(chunks)


def read_root_file(path: str, what: str, limit: int, code: int) -> tuple:
    """Read a config file only root can change (the file and every directory above it).
    Returns (canonical path, text). Raises LauncherError(code) naming the file otherwise."""
    fd, resolved, problem = root_chain(path)
    if problem:
        raise LauncherError(code, f"{what} {path} is not safe: {problem}")
    if fd is None:
        raise LauncherError(code, f"cannot open {what} {resolved}: No such file or directory")
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise LauncherError(code, f"{what} {resolved} is not a regular file")
        data = _read_reopened(fd, limit)
    except OSError as err:
        raise LauncherError(code, f"cannot read {what} {resolved}: {os_error_text(err)}") from None
    finally:
        os.close(fd)
    if len(data) > limit:
        raise LauncherError(code, f"{what} {resolved} is larger than {limit} bytes")
    try:
        return resolved, data.decode("utf-8")
    except UnicodeDecodeError:
        raise LauncherError(code, f"{what} {resolved} is not UTF-8 text") from None


def binary_problem(path: str, group_gid: int) -> "str | None":
    """Storm's rule for the setuid binary: root:<launcher group>, no 'other' bits, ug+s."""
    if not path:
        return "the binary path was not set at build time"
    try:
        st = os.stat(path)
    except OSError as err:
        return f"cannot stat {path}: {os_error_text(err)}"
    mode = stat.S_IMODE(st.st_mode)
    if st.st_uid != 0:
        return f"{path} must be owned by root, not uid {st.st_uid}"
    if st.st_gid != group_gid:
        return f"{path} must be group-owned by the launcher group (gid {group_gid}), not gid {st.st_gid}"
    if mode & 0o007:
        return f"{path} has mode {mode:04o}; others must have no permissions"
    if not (mode & stat.S_ISUID and mode & stat.S_ISGID):
        return f"{path} has mode {mode:04o}; it must be setuid and setgid"
    return None


_checked_dirs = set()  # directories found safe in this run
_checked_files = set()  # module files found safe in this run


def _file_problem(filename: str) -> "str | None":
    """Why a module file (or its directory chain) could be changed by someone but root."""
    if filename in _checked_files:
        return None
    try:
        st = os.stat(filename)
    except FileNotFoundError:
        st = None  # (a .pyc not there) its directory still counts: someone could put one
    except OSError as err:
        return f"cannot stat module file {filename}: {os_error_text(err)}"
    if st is not None and not root_only_writable(st):
        return f"module file {filename} is owned by uid {st.st_uid} with mode {stat.S_IMODE(st.st_mode):04o}"
    directory = filename.rsplit("/", 1)[0] or "/"
    if directory not in _checked_dirs:
        problem = chain_problem(directory)
        if problem:
            return f"module directory {directory}: {problem}"
        _checked_dirs.add(directory)
    _checked_files.add(filename)
    return None


def code_problems() -> list:
    """Every sys.path entry and every loaded module file must be changeable by root alone."""
    problems = []
    for entry in sys.path:
        if entry not in _checked_dirs:
            problem = chain_problem(entry or ".")
            if problem:
                problems.append(f"module search path {entry!r}: {problem}")
            else:
                _checked_dirs.add(entry)
    seen = set()
    while True:  # until a pass finds nothing new: the check itself may import (resolve)
        fresh = [(name, module) for name, module in list(sys.modules.items()) if name not in seen]
        if not fresh:
            return problems
        for name, module in fresh:
            seen.add(name)
            if getattr(getattr(module, "__spec__", None), "origin", None) == "frozen":
                continue  # its code is in the interpreter: its __file__ is only for tracebacks
            for attribute in ("__file__", "__cached__"):
                filename = getattr(module, attribute, None)
                if isinstance(filename, str):
                    problem = _file_problem(filename)
                    if problem:
                        problems.append(problem)


class _CheckedFinder:
    """Put in front of the interpreter's path finder once the loaded code was found safe:
    every module imported later is checked the same way before it runs."""

    finder = None

    @classmethod
    def find_spec(cls, name, path=None, target=None):
        spec = cls.finder.find_spec(name, path, target)
        if spec is not None and spec.has_location:
            for filename in (spec.origin, spec.cached):
                problem = _file_problem(filename) if isinstance(filename, str) else None
                if problem:
                    raise LauncherError(ExitCode.INVALID_CONTAINER_EXEC_PERMISSIONS,
                                        f"refusing to run: {problem}")
        return spec

    @classmethod
    def invalidate_caches(cls):
        cls.finder.invalidate_caches()


def require_trusted_code() -> None:
    """Check the code loaded so far, once, then every module as it is imported."""
    problems = code_problems()
    if problems:
        raise LauncherError(ExitCode.INVALID_CONTAINER_EXEC_PERMISSIONS,
                            f"refusing to run: {problems[0]}")
    if _CheckedFinder.finder is None:
        for index, finder in enumerate(sys.meta_path):
            if getattr(finder, "__name__", "") == "PathFinder":
                _CheckedFinder.finder = finder
                sys.meta_path[index] = _CheckedFinder
                break
