"""The audit log: one line per call to syslog (facility authpriv), like sudo.

Every call but --help and the operator options (--check-config...) is logged once, refusals
before the config is read included (a tampered config, a bad binary, an unknown user or
command: with what is known by then). sudo's `key=value ; ` fields:

    wlsuper : UID=1901 ; USER=wlalice ; COMMAND=run-oci-container ; VERB=runc-run ;
    OUTCOME=ok ; EXIT=0 ; CHILD=runc run:0 ; CONTAINER=6700-... ; LAYERS=/a.sqsh,/b.sqsh ;
    ARGS=<the arguments> [; ERROR=<the one-line error>]

(one line). COMMAND is the command as typed, VERB our name for it. OUTCOME is ok, refused
(invalid input, user, command, config or binary), refused(policy) (well-formed, but not
allowed) or failed (errors.outcome_of); EXIT the exit code; CHILD the exit status of each
root child (child_exit); then the objects the verb named (note). Control characters,
backslash and ';' in a value are escaped as \\xNN, so no value can end its field or forge
another, and every value is capped.

A verb that execs (worker, profiler) is logged right before the exec (exec_now), since it
never returns; should the exec then fail, that failure is logged too: a second line.

The socket to /dev/log is connected when the call begins, before anything else is done, in
the launcher's own mount namespace, and every line goes through it: nothing the launcher
does later changes where the line goes. `_socket`, not `socket` (which imports enum and
selectors, ~9 ms); no `syslog` module: glibc's reconnects by path after a failed send.
"""

import posix as os

IDENT = "worker-launcher"
AUTHPRIV = 10 << 3
NOTICE, WARNING = 5, 4
OK = "ok"
MAX_VALUE = 1000
SEND_TIMEOUT = 2.0  # a syslog daemon that does not read never holds the launcher longer
_state = {"context": None, "verb": None, "logged": False, "objects": {}, "children": [],
          "socket": None}


def begin(caller_uid: int, argv) -> None:
    """The call starts: who called, with which arguments; connect to the log."""
    # Loaded now, as root: the line of a verb that execs is written after the drop to the
    # user, who may not be able to read the interpreter's lib-dynload (where builds such as
    # RHEL's keep pwd and _socket).
    import pwd  # noqa: F401
    import time  # noqa: F401

    _state["context"] = (caller_uid, tuple(argv))
    _state["socket"] = _connect()


def command(verb: str) -> None:
    """The command was found: our name for it."""
    _state["verb"] = verb


def note(**objects) -> None:
    """What the call acts on, for its audit line: e.g. note(container=..., layers=...),
    note(docker="run", name=...). Later values of a key replace earlier ones."""
    _state["objects"].update(objects)


def child_exit(program: str, code) -> None:
    """The exit status of a root child (runc, docker, the profiler): part of the audit line.
    `code` as privileged.spawn returns it: negative for a signal, None for a timeout."""
    _state["children"].append((program, code))


def exec_now() -> None:
    """Called right before an exec that replaces the launcher: the call is logged as ok."""
    if _state["context"] and not _state["logged"]:
        _write(OK, 0, None)
        _state["logged"] = True


def finish(code: int, outcome: str, message) -> None:
    """Called once the command returned or failed; logs unless exec_now already did and the
    exec then succeeded (an exec that fails is logged as the failure it is)."""
    if _state["context"] is None or (_state["logged"] and code == 0):
        return
    _write(outcome, code, message)
    _state["logged"] = True


def escape(value) -> str:
    """`value` as one field value: lists joined with ',', control characters, backslash and
    ';' escaped, at most MAX_VALUE characters. Pure."""
    if isinstance(value, (list, tuple)):
        value = ",".join(map(str, value))
    text = "".join(char if (char.isprintable() or char == " ") and char not in "\\;"
                   else _escape_char(char) for char in str(value))
    if len(text) > MAX_VALUE:
        text = text[:MAX_VALUE] + f"...({len(text) - MAX_VALUE} more)"
    return text


def _escape_char(char: str) -> str:
    number = ord(char)
    return f"\\x{number:02x}" if number < 0x100 else f"\\u{number:04x}" if number < 0x10000 \
        else f"\\U{number:08x}"


def child_status(code) -> str:
    if code is None:
        return "timed out"
    return f"signal {-code}" if code < 0 else str(code)


def format_line(caller: str, caller_uid: int, argv, verb, outcome: str, code: int,
                children, objects: dict, message) -> str:
    """The audit line (without syslog's header). Pure."""
    user = argv[0] if argv else ""
    fields = [("UID", caller_uid), ("USER", user), ("COMMAND", argv[1] if len(argv) > 1 else "")]
    if verb:
        fields.append(("VERB", verb))
    fields += [("OUTCOME", outcome), ("EXIT", int(code))]
    if children:
        fields.append(("CHILD", [f"{program}:{child_status(status)}"
                                 for program, status in children]))
    fields += [(key.upper(), value) for key, value in objects.items()]
    fields.append(("ARGS", " ".join(argv[2:])))
    if message:
        fields.append(("ERROR", message))
    caller = escape(caller).replace(":", "\\x3a")  # (a passwd name never holds one)
    return f"{caller} : " + " ; ".join(f"{key}={escape(value)}" for key, value in fields)


def _connect():
    import _socket  # not `socket`: that pulls in enum and selectors

    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_DGRAM)  # close-on-exec
    try:
        sock.connect("/dev/log")
        sock.settimeout(SEND_TIMEOUT)
    except OSError:
        sock.close()
        return None
    return sock


def _write(outcome: str, code: int, message) -> None:
    import pwd
    import time

    sock = _state["socket"]
    if sock is None:
        return
    caller_uid, argv = _state["context"]
    try:
        caller = pwd.getpwuid(caller_uid).pw_name
    except KeyError:
        caller = f"#{caller_uid}"
    line = format_line(caller, caller_uid, argv, _state["verb"], outcome, code,
                       _state["children"], _state["objects"], message)
    priority = AUTHPRIV | (NOTICE if outcome == OK else WARNING)
    stamp = time.strftime("%b %e %H:%M:%S")
    try:
        sock.send(f"<{priority}>{stamp} {IDENT}[{os.getpid()}]: {line}".encode(
            "utf-8", "surrogateescape"))
    except OSError:
        pass  # an unreachable log never changes the outcome of the call
