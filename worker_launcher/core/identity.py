"""Every change of identity the launcher makes happens in this module.

At start-up the caller's real ids are recorded and, when the process runs setuid root,
all of its ids become root, so children we start as root are fully root and the caller
cannot signal or trace us. From then on the effective ids are switched temporarily with
`acting_as` (saved uid stays 0, so root can be taken back) or for good with `become`.
"""

import posix as os

from .errors import ExitCode, LauncherError, os_error_text


class Identity(tuple):
    """(uid, gid, groups). A plain tuple subclass: typing.NamedTuple costs ~10 ms to import."""

    __slots__ = ()

    def __new__(cls, uid: int, gid: int, groups):
        return tuple.__new__(cls, (uid, gid, tuple(groups)))

    uid = property(lambda self: self[0])
    gid = property(lambda self: self[1])
    groups = property(lambda self: self[2])

    def __repr__(self) -> str:
        return f"Identity(uid={self[0]}, gid={self[1]}, groups={self[2]})"

    @classmethod
    def of_user(cls, uid: int, gid: int, name: str) -> "Identity":
        return cls(uid, gid, tuple(sorted(set(os.getgrouplist(name, gid)))))


_state = {"caller": None, "privileged": False, "limits": ()}
CALLER_LIMITS_VARIABLE = "WL_CALLER_RLIMITS"  # set by the stub, never by the caller


def start() -> Identity:
    """Record who called us and the resource limits they had (which the stub replaced by
    the launcher's own); take full root when running setuid root."""
    ruid, _, _ = os.getresuid()
    rgid, _, _ = os.getresgid()
    caller = Identity(ruid, rgid, tuple(sorted(set(os.getgroups()) | {rgid})))
    _state["caller"] = caller
    _state["limits"] = parse_caller_limits(_pop_environment(CALLER_LIMITS_VARIABLE))
    _state["privileged"] = os.geteuid() == 0
    if _state["privileged"]:
        os.setresgid(0, 0, 0)
        os.setgroups([])
        os.setresuid(0, 0, 0)
    return caller


def _pop_environment(name: str) -> str:
    """os.environ.pop(name, ""): the value, and the variable gone from the environment
    every program exec'd later inherits."""
    value = os.environ.pop(name.encode(), b"")  # posix.environ: bytes, a copy of environ
    os.unsetenv(name)
    return value.decode("utf-8", "surrogateescape")


def caller() -> Identity:
    return _state["caller"]


def privileged() -> bool:
    return _state["privileged"]


def caller_limits() -> tuple:
    """((resource, soft limit or -1 for unlimited), ...): the caller's soft limits, which
    the stub replaced by the launcher's own (see restore_caller_process_state)."""
    return _state["limits"]


class acting_as:
    """`with acting_as(who):` runs the body with `who`'s effective uid, gid and groups, then
    returns to root. (A class, not contextlib: that import costs ~5 ms per invocation.)"""

    def __init__(self, who: Identity):
        self.who = who

    def __enter__(self):
        who = self.who
        if not _state["privileged"]:
            if who.uid != os.geteuid():
                raise LauncherError(ExitCode.SETUID_OPER_FAILED,
                                    f"cannot act as uid {who.uid}: not running with root privileges")
            return self
        try:
            os.setgroups(list(who.groups))
            os.setresgid(-1, who.gid, -1)
            os.setresuid(-1, who.uid, -1)
        except OSError as err:
            _back_to_root()
            raise LauncherError(ExitCode.SETUID_OPER_FAILED,
                                f"cannot switch to uid {who.uid}: {os_error_text(err)}") from None
        return self

    def __exit__(self, *exc_info):
        if _state["privileged"]:
            _back_to_root()
        return False


def _back_to_root() -> None:
    os.setresuid(-1, 0, -1)
    os.setresgid(-1, 0, -1)
    os.setgroups([])


def become(who: Identity, then_exec: bool = True) -> None:
    """Drop root for good: real, effective and saved ids and the groups become `who`'s.
    `then_exec` False: no program is exec'd afterwards (signal), so nothing is preloaded."""
    if then_exec:
        # Loaded while root, for restore_caller_process_state: `who` may be unable to read
        # the interpreter's lib-dynload, where builds such as RHEL's keep it.
        import resource  # noqa: F401

    try:
        os.setgroups(list(who.groups))
        os.setresgid(who.gid, who.gid, who.gid)
        os.setresuid(who.uid, who.uid, who.uid)
    except OSError as err:
        raise LauncherError(ExitCode.SETUID_OPER_FAILED,
                            f"cannot change to uid {who.uid}: {os_error_text(err)}") from None
    if who.uid != 0:
        try:
            os.setresuid(0, 0, 0)
        except PermissionError:
            return
        raise LauncherError(ExitCode.SETUID_OPER_FAILED,
                            f"root could be regained after dropping to uid {who.uid}")


def parse_caller_limits(text: str) -> tuple:
    """((resource, soft), ...) from the stub's "<resource>=<soft>,..." ("inf" for unlimited,
    given as -1); () when empty or malformed. Pure."""
    limits = []
    for item in text.split(",") if text else ():
        resource, _, soft = item.partition("=")
        try:
            pair = (int(resource, 10), -1 if soft == "inf" else int(soft, 10))
        except ValueError:
            return ()
        if pair[0] < 0 or pair[1] < -1:
            return ()
        limits.append(pair)
    return tuple(limits)


def restore_caller_process_state() -> None:
    """Right before exec'ing the user's program (after `become`): give it the soft resource
    limits its caller had (the stub changed only soft limits, within the unchanged hard
    ones, so no privilege is needed) and the default dispositions of SIGPIPE and SIGXFSZ,
    which CPython ignores, and of the job-control stops, which the stub ignores."""
    import _signal  # built in everywhere; `signal` is a .py file the user may not reach
    import resource

    for number, soft in _state["limits"]:
        try:
            resource.setrlimit(number, (soft, resource.getrlimit(number)[1]))
        except (OSError, ValueError) as err:
            reason = os_error_text(err) if isinstance(err, OSError) else err
            raise LauncherError(ExitCode.INITIALIZE_USER_FAILED,
                                f"cannot restore the caller's resource limit {number}: {reason}") from None
    for name in ("SIGPIPE", "SIGXFSZ", "SIGTSTP", "SIGTTIN", "SIGTTOU"):
        _signal.signal(getattr(_signal, name), _signal.SIG_DFL)
