"""Storm's directory commands: code-dir, artifacts-dir, blob, rmr, and the workdir step
of worker, launch-docker-container and run-oci-container (`prepare_workdir`).

Every command first locates the path with the supervisor account's rights, refusing
symlinks it could have planted (resolve.locate), and acts only where the policy allows
directory verbs (policy.directory_refusal). Owners and modes are then set as root on file
descriptors of that tree (ownership.fix_tree); removal runs with the user's rights.
"""

from __future__ import annotations

import errno
import posix as os
import stat

from ..core import identity
from ..core.errors import ExitCode, LauncherError, by_policy, os_error_text
from ..paths import resolve, tree
from ..privileged import ownership

TMP_DIR = "tmp"


def code_dir(launch, path: str) -> int:
    """Storm `code-dir <dir>`: the topology's code, readable but not writable by the user."""
    return _set_up(launch, path, user_writable=False)


def artifacts_dir(launch, path: str) -> int:
    """Storm `artifacts-dir <dir>`: the worker's logs and artifacts, user-writable."""
    return _set_up(launch, path, user_writable=True)


def blob(launch, path: str) -> int:
    """Storm `blob <path>`: a localized blob (file or directory), as code-dir."""
    return _set_up(launch, path, user_writable=False)


def prepare_workdir(launch, workdir: str) -> None:
    """The workdir step of `worker` and the container verbs: `workdir` recursively as
    artifacts-dir, and `workdir/tmp` (created if missing) the same but without setgid on
    its directories, so profiling tools in a container can use it. Raises LauncherError."""
    entry = locate_confined(launch, workdir, owned=True)
    try:
        fd = _open_top(entry, workdir, directory_only=True)
        try:
            _ensure_tmp(launch, fd, entry.path)
            ownership.fix_tree(fd, entry.path, _rule(launch, True),
                             {TMP_DIR: _rule(launch, True, setgid_dirs=False)})
        finally:
            os.close(fd)
    finally:
        entry.close()


def rmr(launch, path: str) -> int:
    """Storm `rmr <path>`: delete the tree with the user's rights, then the top entry with
    the supervisor account's. A missing path is success; symlinks are unlinked, never
    followed; other file systems mounted below are not entered."""
    entry = locate_confined(launch, path)
    try:
        if entry.st is None:
            return ExitCode.OK
        errors = []
        if stat.S_ISDIR(entry.st.st_mode):
            top_fd = _open_top_for_removal(launch, entry, errors)
            if top_fd is not None:
                try:
                    with identity.acting_as(launch.user.identity):
                        _empty_as_user(top_fd, entry.path, launch.user.identity.uid, errors)
                finally:
                    os.close(top_fd)
        if not errors:
            _remove_top(launch, entry, errors)
        if errors:
            raise LauncherError(tree.TREE_FAILED, f"cannot remove all of {path}: {errors[0]}"
                                + (f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""))
    finally:
        entry.close()
    return ExitCode.OK


# --- locating and opening --------------------------------------------------------------
def locate_confined(launch, path: str, owned: bool = False) -> resolve.Entry:
    """Locate `path` as the supervisor account and check the policy allows directory verbs
    on the result (and, if `owned`, who owns it: see _owner_refusal). A missing path comes
    back with entry.st None."""
    from ..core.policy import normalize

    normal = normalize(path)
    if normal is None:
        raise LauncherError(ExitCode.INVALID_NM_ROOT_DIRS,
                            f"{path!r} is not an absolute path without '.' or '..'")
    try:
        with identity.acting_as(launch.caller):
            entry = resolve.locate(normal)
    except LauncherError:
        refusal = launch.policy.directory_refusal(normal)  # say why it is not allowed
        if refusal:  # rather than what the caller could not reach there
            raise by_policy(LauncherError(ExitCode.INVALID_NM_ROOT_DIRS, refusal)) from None
        raise
    refusal = launch.policy.directory_refusal(entry.path) or (owned and _owner_refusal(launch, entry))
    if refusal:
        entry.close()
        raise by_policy(LauncherError(ExitCode.INVALID_NM_ROOT_DIRS, refusal))
    return entry


def _owner_refusal(launch, entry: resolve.Entry) -> str | None:
    """The set-up verbs (which chown as root; rmr works with the user's rights) act only
    on what Storm's supervisor creates: an entry of the
    supervisor account's (or, from an earlier run, of the user's). Otherwise a compromised
    supervisor account could have root's or another account's directory given to a user:
    anything it can name without a policy (a home, /srv, /var/spool/cron), root-owned
    entries below the storm directories with one."""
    if entry.st is None:
        return None
    owner = entry.st.st_uid
    if owner in (launch.caller.uid, launch.user.identity.uid):
        return None
    return (f"{entry.path} belongs to uid {owner}; directory verbs act only on entries of "
            f"the supervisor account or of {launch.user.name}")


def _open_top(entry: resolve.Entry, path: str, directory_only: bool) -> int:
    """Open the located top entry as root: a directory, or (if allowed) a regular file."""
    if entry.st is None:
        raise LauncherError(ExitCode.UNABLE_TO_BUILD_PATH, f"path does not exist: {path}")
    mode = entry.st.st_mode
    if stat.S_ISLNK(mode):
        raise LauncherError(ExitCode.INVALID_NM_ROOT_DIRS, f"refusing {path}: it is a symlink")
    if stat.S_ISDIR(mode):
        return resolve.open_entry(entry, tree.DIR_READ_FLAGS)
    if stat.S_ISREG(mode) and not directory_only:
        return resolve.open_entry(entry, tree.FILE_FLAGS)
    raise LauncherError(ExitCode.UNABLE_TO_BUILD_PATH,
                        f"cannot set up {path}: not a directory" + ("" if directory_only
                                                                    else " or regular file"))


def _rule(launch, user_writable: bool, setgid_dirs: bool = True) -> ownership.Rule:
    return ownership.Rule(launch.user.identity.uid, launch.group_gid, user_writable, setgid_dirs,
                          owners=(launch.caller.uid,))


def _set_up(launch, path: str, user_writable: bool) -> int:
    entry = locate_confined(launch, path, owned=True)
    try:
        fd = _open_top(entry, path, directory_only=False)
        try:
            ownership.fix_tree(fd, entry.path, _rule(launch, user_writable))
        finally:
            os.close(fd)
    finally:
        entry.close()
    return ExitCode.OK


def _ensure_tmp(launch, fd: int, path: str) -> None:
    """Create workdir/tmp if missing, with the rights of the supervisor account (or, in a
    workdir already the user's, the user's): fix_tree then gives it to the user. It must be
    a real directory, not a symlink the user planted."""
    try:
        for who in (launch.caller, launch.user.identity):
            try:
                with identity.acting_as(who):
                    os.mkdir(TMP_DIR, 0o700, dir_fd=fd)
                break
            except FileExistsError:
                break
            except PermissionError:
                if who is launch.user.identity:
                    raise
        st = os.stat(TMP_DIR, dir_fd=fd, follow_symlinks=False)
    except OSError as err:
        raise LauncherError(ExitCode.UNABLE_TO_BUILD_PATH,
                            f"cannot create {path}/{TMP_DIR}: {os_error_text(err)}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise LauncherError(ExitCode.UNABLE_TO_BUILD_PATH, f"{path}/{TMP_DIR} is not a directory")


# --- removal ---------------------------------------------------------------------------
def _open_top_for_removal(launch, entry: resolve.Entry, errors: list):
    """The directory to empty, opened as the user (made readable and writable first if the
    user owns it, as Storm does) or, when the user cannot reach it by name (a parent the
    user may not search, e.g. Storm's workers/ under a umask of 027), as the supervisor
    account that located it. Either way the removal below runs with the user's rights:
    the kernel checks those on each directory an entry is removed from."""
    uid = launch.user.identity.uid
    with identity.acting_as(launch.user.identity):
        opened = _open_dir_for_removal(entry.parent_fd, entry.name, entry.path, uid, [])
    if opened is None:
        try:
            with identity.acting_as(launch.caller):
                fd = resolve.open_entry(entry, tree.DIR_READ_FLAGS)
        except LauncherError as err:
            errors.append(err.message)
            return None
        opened = fd, os.fstat(fd)
    fd, st = opened
    if not resolve.same_file(st, entry.st):
        os.close(fd)
        errors.append(f"{entry.path} changed while it was checked")
        return None
    return fd


def _empty_as_user(fd: int, path: str, uid: int, errors: list) -> None:
    """Remove everything below the open directory `fd`. Runs with the user's rights, so it
    can remove nothing the user could not remove themselves."""
    tree.remove_below(fd, path, errors,
                      lambda parent, name, where: _open_dir_for_removal(
                          parent, name, where, uid, errors))


def _open_dir_for_removal(parent_fd: int, name: str, where: str, uid: int, errors: list):
    """(fd, st) of directory `name`, made readable and writable for its owner first if the
    user owns it (as Storm does), or None if it vanished or cannot be opened."""
    for attempt in (1, 2):
        try:
            fd = os.open(name, tree.DIR_READ_FLAGS, dir_fd=parent_fd)
        except PermissionError as err:
            if attempt == 1:
                try:  # with the user's rights, so even through a symlink swapped in
                    os.chmod(name, 0o700, dir_fd=parent_fd)  # it does only what they may
                    continue
                except OSError:
                    pass
            errors.append(f"cannot open {where}: {os_error_text(err)}")
            return None
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as err:
            if err.errno != errno.ELOOP:
                errors.append(f"cannot open {where}: {os_error_text(err)}")
            return None
        st = os.fstat(fd)
        if st.st_uid == uid and st.st_mode & 0o700 != 0o700:
            try:
                os.fchmod(fd, stat.S_IMODE(st.st_mode) | 0o700)
            except OSError:
                pass
        return fd, st
    return None


def _remove_top(launch, entry: resolve.Entry, errors: list) -> None:
    """The top entry goes with the supervisor account's rights (its parent is usually the
    supervisor's); if it may not, with the user's (a parent of the user's own)."""
    remove = os.rmdir if stat.S_ISDIR(entry.st.st_mode) else os.unlink
    for who in (launch.caller, launch.user.identity):
        try:
            with identity.acting_as(who):
                remove(entry.name, dir_fd=entry.parent_fd)
            return
        except FileNotFoundError:
            return
        except PermissionError as err:
            failure = err
        except OSError as err:
            failure = err
            break
    errors.append(f"cannot remove {entry.path}: {os_error_text(failure)}")
