"""Ownership checks on what the launcher trusts: its config, policy, binary and own code."""

import os
import stat
import sys

from ..core.errors import ExitCode, LauncherError, os_error_text


def root_only_writable(st: os.stat_result) -> bool:
    return st.st_uid == 0 and not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


def chain_problem(path: str) -> str | None:
    """Why `path` or one of its parents could be changed by someone other than root, or None.

    The path is resolved first; every component of the resolved path must be root-owned
    and not group- or world-writable. A missing path is judged by its nearest existing parent.
    """
    resolved = os.path.realpath(path)
    current = resolved
    while True:
        try:
            st = os.lstat(current)
        except FileNotFoundError:
            st = None
        except OSError as err:
            return f"cannot stat {current}: {os_error_text(err)}"
        if st is not None and not root_only_writable(st):
            return (f"{current} is owned by uid {st.st_uid} with mode "
                    f"{stat.S_IMODE(st.st_mode):04o}; it must be root-owned and not "
                    f"group- or world-writable")
        if current == "/":
            return None
        current = os.path.dirname(current)


def read_root_file(path: str, what: str, limit: int, code: int) -> tuple:
    """Read a root-owned config file whose whole path only root can change.

    Returns (resolved path, text). Raises LauncherError(code) naming the file otherwise.
    """
    problem = chain_problem(path)
    if problem:
        raise LauncherError(code, f"{what} {path} is not safe: {problem}")
    resolved = os.path.realpath(path)
    try:
        fd = os.open(resolved, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError as err:
        raise LauncherError(code, f"cannot open {what} {resolved}: {os_error_text(err)}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise LauncherError(code, f"{what} {resolved} is not a regular file")
        if not root_only_writable(st):
            raise LauncherError(code, f"{what} {resolved} must be root-owned and not group- "
                                      f"or world-writable")
        data = os.read(fd, limit + 1)
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


def binary_problem(path: str, group_gid: int) -> str | None:
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


def _file_problem(filename: str) -> str | None:
    """Why a module file (or its directory chain) could be changed by someone but root."""
    try:
        st = os.stat(filename)
    except FileNotFoundError:
        return None
    except OSError as err:
        return f"cannot stat module file {filename}: {os_error_text(err)}"
    if not root_only_writable(st):
        return f"module file {filename} is owned by uid {st.st_uid} with mode {stat.S_IMODE(st.st_mode):04o}"
    directory = os.path.dirname(filename)
    if directory not in _checked_dirs:
        problem = chain_problem(directory)
        if problem:
            return f"module directory {directory}: {problem}"
        _checked_dirs.add(directory)
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
    for module in list(sys.modules.values()):
        for attribute in ("__file__", "__cached__"):
            filename = getattr(module, attribute, None)
            if isinstance(filename, str):
                problem = _file_problem(filename)
                if problem:
                    problems.append(problem)
    return problems


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
