"""Ownership changes of a user's tree: Storm's owner and mode rule applied as root.

`fix_tree` walks the tree on file descriptors (paths.tree) and fchown/fchmod's each entry
it opened with O_NOFOLLOW; it never follows a symlink nor enters another file system, so
renaming entries under it can change what it sees but never make it act outside the tree.
"""

import posix as os
import stat

from ..core.errors import LauncherError, os_error_text
from ..paths.tree import DIR_READ_FLAGS, FILE_FLAGS, TREE_FAILED, list_dir, open_child


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
    """Owner, group and mode rule for one subtree. Only entries owned by one of `owners`
    (the supervisor account and the user; by default the user alone) are changed."""

    __slots__ = ("uid", "gid", "user_writable", "setgid_dirs", "owners")

    def __init__(self, uid, gid, user_writable, setgid_dirs=True, owners=()):
        self.uid, self.gid = uid, gid
        self.user_writable, self.setgid_dirs = user_writable, setgid_dirs
        self.owners = frozenset(owners) | {uid}


def apply_rule(fd: int, st: os.stat_result, rule: Rule, where: str, foreign: list) -> bool:
    """fchown/fchmod the open entry; each call only where something changes. An entry of
    anyone but the rule's owners (root's, another user's) is left alone and reported in
    `foreign`: False is returned and a directory is then not entered. A file with other
    hard links is taken over only if the user owns it already: it could be a link to a file
    of the supervisor's where the kernel does not forbid such links (protected_hardlinks=0)."""
    if st.st_uid not in rule.owners:
        foreign.append(f"{where} (uid {st.st_uid})")
        return False
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
    return True


def fix_tree(top_fd: int, top_path: str, rule: Rule, child_rules=None) -> None:
    """Apply `rule` to the open entry `top_fd` and, if a directory, to everything below it
    on the same file system. `child_rules` maps names directly below the top to another
    rule for their subtree. Symlinks are skipped; other mounts are neither touched nor
    entered; devices, fifos and sockets are refused as Storm does. Entries of others are
    left alone; once the rest is done they are reported (exit 20). Safe: the top was located
    by descriptor with the supervisor's rights and allowed by the policy (classic.dirs);
    every entry is changed through a descriptor opened O_NOFOLLOW below it, and only entries
    of the supervisor account or the user change hands."""
    foreign = []
    top_st = os.fstat(top_fd)
    if apply_rule(top_fd, top_st, rule, top_path, foreign) and stat.S_ISDIR(top_st.st_mode):
        _fix_below(top_fd, top_st, top_path, rule, child_rules, foreign)
    if foreign:
        more = f" (and {len(foreign) - 1} more)" if len(foreign) > 1 else ""
        raise LauncherError(TREE_FAILED, f"left alone in {top_path}: {foreign[0]}{more}; only "
                                         f"entries of the supervisor account or the user are "
                                         f"set up")


def _fix_below(top_fd, top_st, top_path, rule, child_rules, foreign) -> None:
    # One open directory per level: (fd, path, [(subdirectory name, rule)] still to do).
    stack = [(top_fd, top_path, _fix_files(top_fd, top_path, rule, child_rules, foreign))]
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
            child = open_child(fd, name, DIR_READ_FLAGS, where)
            if child is None:
                continue
            child_fd, st = child
            if st.st_dev != top_st.st_dev:  # a mount point: neither touched nor entered
                os.close(child_fd)
                continue
            if not apply_rule(child_fd, st, sub_rule, where, foreign):
                os.close(child_fd)
                continue
            stack.append((child_fd, where, _fix_files(child_fd, where, sub_rule, None, foreign)))
    finally:
        for fd, _, _ in stack:
            if fd != top_fd:
                os.close(fd)


def _fix_files(fd: int, path: str, rule: Rule, child_rules, foreign: list) -> list:
    """Apply the rule to the files in directory `fd`; return [(subdir name, rule)]."""
    subdirs = []
    for name, kind in list_dir(fd, path):
        entry_rule = child_rules.get(name, rule) if child_rules else rule
        if kind == stat.S_IFDIR:
            subdirs.append((name, entry_rule))
        elif kind == stat.S_IFREG:
            child = open_child(fd, name, FILE_FLAGS, f"{path}/{name}")
            if child is None:
                continue
            child_fd, st = child
            try:
                if not stat.S_ISREG(st.st_mode):
                    raise LauncherError(TREE_FAILED, f"{path}/{name} changed while it was set up")
                apply_rule(child_fd, st, entry_rule, f"{path}/{name}", foreign)
            finally:
                os.close(child_fd)
        elif kind != stat.S_IFLNK:
            raise LauncherError(TREE_FAILED, f"refusing {path}/{name}: not a regular file, "
                                             f"directory or symlink")
    subdirs.reverse()  # popped from the end: keeps directory order
    return subdirs


