"""The container's cgroup, `<cgroup parent>/<container id>`, in every cgroup hierarchy mounted
(each cgroup v1 controller, the v2 unified hierarchy, hybrid set-ups too).

Before a launch it must not exist. runc joins an existing cgroup instead of failing: the
new container would then share the cgroup of whatever is in it (a root process, another
user's worker), rewrite its CPU and memory limits, and `runc delete --force` at reap would
kill everything in it. A stale empty one (a reaped worker of the same id whose cgroup
stayed) is removed; one holding a process or a child cgroup is a refusal. Reap removes the
container's cgroup itself (runc delete usually has), and nothing else: one rmdir per
hierarchy, never recursive, never the parent.

Every cgroup directory is reached by descriptor from the hierarchy's mount point, one
component at a time with O_NOFOLLOW.
"""

import errno
import posix as os
import stat
import time

from ..core.errors import ExitCode, LauncherError, os_error_text
from . import mountinfo
from .spec_rules import refuse

CGROUP_TYPES = ("cgroup", "cgroup2")
REMOVE_ATTEMPTS = 8  # up to ~2.5 s: the processes runc delete killed may take a moment to go
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def places(cgroups_path: str, entries: list) -> list:
    """(mount point, path relative to it) of `cgroups_path` in each mounted hierarchy, at
    its first mount (later ones, e.g. a bind of /sys/fs/cgroup, show the same cgroups).
    Pure. A hierarchy mounted from a sub-directory (mountinfo root, inside a cgroup
    namespace) holds the path only if it lies below that root."""
    found, seen = [], set()
    for entry in entries:
        if entry.fstype not in CGROUP_TYPES or entry.device in seen:
            continue
        root = entry.root.rstrip("/")
        if root and not cgroups_path.startswith(root + "/"):
            continue
        seen.add(entry.device)
        found.append((entry.mount_point, cgroups_path[len(root):].strip("/")))
    return found


def _open_parent(mount_point: str, relative: str):
    """(fd of the cgroup's parent directory, the cgroup's name), or None when a component
    is missing. Follows no symlink (cgroup file systems have none to offer)."""
    fd = os.open(mount_point, _DIR)
    parts = relative.split("/")
    try:
        for name in parts[:-1]:
            child = os.open(name, _DIR, dir_fd=fd)
            os.close(fd)
            fd = child
    except FileNotFoundError:
        os.close(fd)
        return None
    except OSError:
        os.close(fd)
        raise
    return fd, parts[-1]


def _in_use(parent_fd: int, name: str):
    """None when the cgroup does not exist, else whether a process or a child cgroup is in
    it."""
    try:
        fd = os.open(name, _DIR, dir_fd=parent_fd)
    except FileNotFoundError:
        return None
    try:
        procs = os.open("cgroup.procs", os.O_RDONLY | os.O_CLOEXEC, dir_fd=fd)
        try:
            if os.read(procs, 64).strip():
                return True
        finally:
            os.close(procs)
        for child in os.scandir(fd):
            if child.is_dir(follow_symlinks=False):
                return True
        return False
    finally:
        os.close(fd)


def require_absent(cgroups_path: str, where: str) -> None:
    """Refuse (exit 24) when the cgroup holds anything in some hierarchy; remove it where it
    exists empty."""
    stale = []
    try:
        for mount_point, relative in places(cgroups_path, mountinfo.read()):
            opened = _open_parent(mount_point, relative)
            if opened is None:
                continue
            parent_fd, name = opened
            try:
                used = _in_use(parent_fd, name)
            except OSError:
                os.close(parent_fd)
                raise
            if used:
                os.close(parent_fd)
                raise refuse(where, f"the cgroup {cgroups_path} already exists in "
                                    f"{mount_point} and is in use")
            if used is None:
                os.close(parent_fd)
            else:
                stale.append((parent_fd, name, mount_point))
        for parent_fd, name, mount_point in stale:
            try:  # an empty cgroup: rmdir fails (EBUSY) if a process joined it meanwhile
                os.rmdir(name, dir_fd=parent_fd)
            except FileNotFoundError:
                pass
            except OSError as err:
                raise refuse(where, f"the cgroup {cgroups_path} in {mount_point} exists and "
                                    f"cannot be removed: {os_error_text(err)}") from None
    except OSError as err:
        raise LauncherError(ExitCode.OCI_RUN_FAILED,
                            f"cannot check the cgroup {cgroups_path}: {os_error_text(err)}") from None
    finally:
        for parent_fd, _, _ in stale:
            os.close(parent_fd)


def remove(cgroups_path: str) -> list:
    """rmdir the cgroup in every hierarchy (retrying while its killed processes exit).
    Returns the problems met."""
    problems = []
    for mount_point, relative in places(cgroups_path, mountinfo.read()):
        try:
            opened = _open_parent(mount_point, relative)
        except OSError as err:
            problems.append(f"cannot reach the cgroup {cgroups_path} in {mount_point}: "
                            f"{os_error_text(err)}")
            continue
        if opened is None:
            continue
        parent_fd, name = opened
        try:
            problem = _remove_one(parent_fd, name)
        finally:
            os.close(parent_fd)
        if problem:
            problems.append(f"cannot remove the cgroup {cgroups_path} in {mount_point}: {problem}")
    return problems


def _remove_one(parent_fd: int, name: str):
    delay = 0.01
    for attempt in range(REMOVE_ATTEMPTS):
        try:
            st = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
            if not stat.S_ISDIR(st.st_mode):
                return "not a directory"
            os.rmdir(name, dir_fd=parent_fd)
            return None
        except FileNotFoundError:
            return None
        except OSError as err:
            if err.errno != errno.EBUSY or attempt == REMOVE_ATTEMPTS - 1:
                return os_error_text(err)
        time.sleep(delay)
        delay *= 2
    return None
