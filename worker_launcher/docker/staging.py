"""Bind sources of a `docker run`, pinned so that what docker mounts is what was checked.

dockerd and runc resolve a `-v` source path themselves, as root, some time after the
launcher checked it; the user (workdir, workdir/tmp, artifacts) or the supervisor account
(workers/, workers-users/) could swap a component for a symlink in between. So each source is
located and opened once by descriptor with the supervisor account's rights (paths.resolve:
no untrusted symlink, no magic link, nothing under /proc, /sys or /dev but the cgroup root
read-only), the policy judges the object found, and docker is given a path that names that
very object:

- `/proc/<launcher pid>/fd/<tree>/<random>-<n>`: a detached clone of the object in a detached tmpfs
  that only the launcher's descriptor reaches (privileged.binds). Nothing is mounted in any
  namespace, and the kernel dissolves the tree when the launcher exits, SIGKILL included.
  Needs Linux 6.15+ (runc binds from it in the container's new mount namespace) and the
  launcher in the initial pid namespace (dockerd reads /proc with host pids).
- otherwise (older kernels, e.g. RHEL 8 and 9) `<run root>/docker/<worker id>.staging/<n>`:
  a bind of the object in a root-only directory, detached once docker has started the
  container; a guard process releases it the moment the launcher ends, whatever killed
  it, and the next docker call (handoff.sweep) would clear anything left.
"""

from __future__ import annotations

import posix as os

from ..core.errors import ExitCode, LauncherError, os_error_text

STAGING_SUFFIX = ".staging"
INIT_PID_NAMESPACE = 0xEFFFFFFC  # PROC_PID_INIT_INO: the inode of the initial pid namespace


class DetachedStaging:
    """The sources as detached clones in a detached tree; see the module docstring."""

    def __init__(self):
        from ..privileged import binds

        self.tree = binds.detached_tree()
        self.count = 0
        # Entries no other process's descriptor <tree> is likely to hold: a container started
        # again by hand after the launcher exited (and its pid went to another process) then
        # finds nothing to bind instead of whatever that process has open.
        self.prefix = os.urandom(8).hex()

    def stage(self, fd: int, real: str) -> str:
        from ..privileged import binds

        name = f"{self.prefix}-{self.count}"
        binds.attach_detached(self.tree, name, fd, real)
        self.count += 1
        return f"/proc/{os.getpid()}/fd/{self.tree}/{name}"

    def close(self) -> None:
        if self.tree is not None:
            os.close(self.tree)
            self.tree = None


class HostStaging:
    """The sources bound in <directory>/<worker id>.staging (root-only); `close` detaches
    and removes them, whatever happened before."""

    def __init__(self, directory: str, name: str):
        self.path = f"{directory}/{name}{STAGING_SUFFIX}"
        release(self.path)  # left by a launch of this worker that was killed
        self.count = 0
        try:
            os.mkdir(self.path, 0o700)
        except OSError as err:
            raise LauncherError(ExitCode.DOCKER_RUN_FAILED,
                                f"cannot create {self.path}: {os_error_text(err)}") from None

    def stage(self, fd: int, real: str) -> str:
        from ..privileged import binds

        target = f"{self.path}/{self.count}"
        try:
            binds.bind_fd(fd, target)
            binds.restrict(target, False)  # docker applies ro itself (to the top mount)
        except OSError as err:
            raise LauncherError(ExitCode.DOCKER_RUN_FAILED,
                                f"cannot stage the bind source {real}: {os_error_text(err)}"
                                ) from None
        self.count += 1
        return target

    def close(self) -> None:
        release(self.path)


def release(path: str) -> None:
    """Detach every staged mount in `path` and remove it; what cannot go is left for the next
    call (nothing of the user's is ever deleted: no recursive removal)."""
    from ..privileged import binds

    binds.release(path)


def in_initial_pid_namespace() -> bool:
    try:
        return os.stat("/proc/self/ns/pid").st_ino == INIT_PID_NAMESPACE
    except OSError:
        return False


def stage(directory: str, name: str, sources: list, keep=()) -> tuple:
    """Stage every (fd, resolved path) of `sources`; returns (staging, paths for docker).
    Detached when the kernel and the pid namespace allow it, else in the run root, with a
    guard process (privileged.spawn.guard) that releases the staging the moment this
    launcher ends, killed or not; it holds the descriptors in `keep` (the launch's record
    lock) until it has, so no later call sees the record free before the staging is gone."""
    if in_initial_pid_namespace():
        staging = None
        try:
            staging = DetachedStaging()
            return staging, [staging.stage(fd, real) for fd, real in sources]
        except OSError:  # before Linux 6.15 (or without fsopen): stage in the run root
            if staging is not None:
                staging.close()
    from ..privileged import spawn

    staging = HostStaging(directory, name)
    spawn.guard(lambda: release(staging.path), keep)
    try:
        return staging, [staging.stage(fd, real) for fd, real in sources]
    except BaseException:
        staging.close()
        raise
