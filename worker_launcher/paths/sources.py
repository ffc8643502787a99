"""Bind sources: the one way both runtimes turn a host path a request names into the object
to bind. Located with the rights of whoever names it (paths.resolve: trusted root symlinks
only, no magic link, nothing under /proc, /sys or /dev but Storm's cgroup root read-only),
judged by the policy as named (the clearest refusal) and again as found (the canonical path
of the very entry opened), and returned as an O_PATH descriptor that the runtime pins."""

import posix as os
import stat

from ..core import identity
from ..core.errors import ExitCode, LauncherError, by_policy
from . import resolve


def open_bind_source(policy, who, source: str, writable: bool) -> tuple:
    """(O_PATH fd, canonical path) of `source`, located as `who`. Raises LauncherError with
    the reason alone (the caller names the field or token); a policy refusal is marked
    `by_policy`."""
    refusal = policy.bind_refusal(source, writable)
    if refusal:
        raise by_policy(LauncherError(ExitCode.INVALID_CONFIG_FILE, refusal))
    # Storm binds its cgroup root (a pseudo file system) read-only: only that one, as named.
    pseudo_ok = not writable and source == policy.cgroup_root
    with identity.acting_as(who):
        entry = resolve.locate(source, pseudo_ok=pseudo_ok)
    try:
        if entry.st is None:
            raise LauncherError(ExitCode.UNABLE_TO_STAT_FILE, f"{source} does not exist")
        if stat.S_ISLNK(entry.st.st_mode):
            raise LauncherError(ExitCode.INVALID_NM_ROOT_DIRS, f"{source} is a symlink")
        refusal = policy.bind_refusal(entry.path, writable)
        if refusal:
            raise by_policy(LauncherError(ExitCode.INVALID_CONFIG_FILE, refusal))
        with identity.acting_as(who):
            return resolve.open_entry(entry, os.O_PATH), entry.path
    finally:
        entry.close()
