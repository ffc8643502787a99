"""The audit log: every privileged action once to syslog (facility authpriv), like sudo.

One line per call once the config was read and the command line is known: who called, for
which user, which command with which arguments, the outcome and the exit code. A verb that
execs (worker, profiler) is logged right before the exec, since it never returns. syslog is
imported only here, only by a call that writes a line: --help and --check-config never pay
for it.
"""

from __future__ import annotations

_state = {"context": None, "logged": False, "objects": {}, "children": []}
IDENT = "worker-launcher"


def begin(caller_uid: int, user: str, command: str, args) -> None:
    # Loaded now, as root: the line of a verb that execs is written after the drop to the
    # user, who may not be able to read the interpreter's lib-dynload (where builds such as
    # RHEL's keep syslog).
    import pwd  # noqa: F401
    import syslog  # noqa: F401

    _state["context"] = (caller_uid, user, command, tuple(args))


def note(**objects) -> None:
    """What the call acts on, for its audit line: e.g. note(container=..., layers=...),
    note(docker="run", name=...). Later values of a key replace earlier ones."""
    _state["objects"].update(objects)


def child_exit(program: str, code) -> None:
    """The exit status of a root child (runc, docker): part of the audit line."""
    _state["children"].append((program, code))


def exec_now() -> None:
    """Called right before an exec that replaces the launcher."""
    if _state["context"] and not _state["logged"]:
        _write("exec", 0, None)
        _state["logged"] = True


def finish(code: int, message) -> None:
    """Called once the command returned or failed; logs unless exec_now already did and the
    exec then succeeded (an exec that fails is logged as the failure it is)."""
    if _state["context"] is None or (_state["logged"] and code == 0):
        return
    _write("ok" if code == 0 else "refused or failed", code, message)
    _state["logged"] = True


def format_line(caller: str, user: str, command: str, args, outcome: str, code: int,
                message) -> str:
    """sudo-style: `<caller> : USER=<user> ; COMMAND=<command> ; ARGS=<args> ; ...`. Pure."""
    from .errors import one_line

    line = (f"{caller} : USER={user} ; COMMAND={command} ; ARGS={' '.join(args)} ; "
            f"OUTCOME={outcome} ; EXIT={int(code)}")
    if message:
        line += f" ; ERROR={message}"
    return one_line(line)


def _write(outcome: str, code: int, message) -> None:
    import pwd
    import syslog

    caller_uid, user, command, args = _state["context"]
    try:
        caller = pwd.getpwuid(caller_uid).pw_name
    except KeyError:
        caller = f"uid {caller_uid}"
    line = format_line(f"{caller}({caller_uid})", user, command, args, outcome, code, message)
    syslog.openlog(IDENT, syslog.LOG_PID, syslog.LOG_AUTHPRIV)
    syslog.syslog(syslog.LOG_NOTICE if code == 0 else syslog.LOG_WARNING, line)
    syslog.closelog()


def syslog_reachable(path: str = "/dev/log") -> str | None:
    """None when the syslog socket accepts a connection, else why not (for --check-config)."""
    import _socket  # not `socket`: that pulls in enum and selectors, ~9 ms

    probe = _socket.socket(_socket.AF_UNIX, _socket.SOCK_DGRAM)
    try:
        probe.connect(path)
    except OSError as err:
        return f"cannot connect to {path}: {err.strerror}"
    finally:
        probe.close()
    return None
