"""The target user: who a worker runs as. Storm's checks, as a pure function plus a lookup."""

import pwd

from .errors import ExitCode, LauncherError
from .identity import Identity

_FIRST = frozenset("abcdefghijklmnopqrstuvwxyz_")
_REST = _FIRST | frozenset("0123456789.-")


def valid_user_name(name: str) -> bool:
    """POSIX portable user names as useradd accepts them: [a-z_][a-z0-9_.-]{0,31}, optional '$'."""
    core = name[:-1] if name.endswith("$") else name
    return (0 < len(core) <= 32 and core[0] in _FIRST
            and all(char in _REST for char in core[1:]))


class TargetUser:
    __slots__ = ("name", "identity")

    def __init__(self, name: str, identity: Identity):
        self.name, self.identity = name, identity


def user_problem(name: str, uid: "int | None", min_user_id: int, banned: frozenset) -> "str | None":
    """Why `name` (with `uid`, None when unknown) may not run workers, or None."""
    if not valid_user_name(name):
        return f"invalid user name {name!r}"
    if uid is None:
        return f"user {name} does not exist"
    if uid == 0 or name == "root":
        return f"user {name} is the superuser; workers never run as root"
    if name in banned:
        return f"user {name} is in banned.users"
    if uid < min_user_id:
        return f"user {name} has uid {uid}, below min.user.id {min_user_id}"
    return None


def lookup(name: str, min_user_id: int, banned: frozenset, groups: bool = True) -> TargetUser:
    """The target user. With `groups` False its identity has no supplementary groups:
    getgrouplist reads the whole group database (or asks a directory service), which a
    verb that gives the user's groups to nothing (signal) need not wait for."""
    entry = None
    if valid_user_name(name):
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            entry = None
    problem = user_problem(name, entry.pw_uid if entry else None, min_user_id, banned)
    if problem:
        raise LauncherError(ExitCode.INVALID_USER_NAME, problem)
    identity = (Identity.of_user(entry.pw_uid, entry.pw_gid, name) if groups
                else Identity(entry.pw_uid, entry.pw_gid, ()))
    return TargetUser(name, identity)
