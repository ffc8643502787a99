"""The seccomp profile of a docker worker: which file, its checks, and how docker gets it.

Storm writes `--security-opt seccomp=<storm.oci.seccomp.profile>`. The docker client reads
that file itself, as root, and sends its content to dockerd. So the launcher reads it first,
by descriptor, from a chain only root can change (the policy's profile when a policy is
configured; with none, any root-owned file), checks it is a docker seccomp profile that does
not allow everything by default, and hands docker those very bytes in a sealed memfd
(`/proc/self/fd/N` of the docker client): a path swapped after the check changes nothing.

`profile_problem` is pure. Key names are matched exactly: Go's JSON decoder (dockerd's) also
accepts a key that differs only in case (`DefaultAction`), so a key we do not know could be
read by docker as one we checked.
"""

from __future__ import annotations

MAX_PROFILE_BYTES = 1024 * 1024
ACTIONS = frozenset(("SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD",
                     "SCMP_ACT_TRAP", "SCMP_ACT_ERRNO", "SCMP_ACT_TRACE", "SCMP_ACT_ALLOW",
                     "SCMP_ACT_LOG", "SCMP_ACT_NOTIFY"))
# A default that lets every system call through (LOG allows and logs), or that needs a
# listener docker does not run.
REFUSED_DEFAULTS = frozenset(("SCMP_ACT_ALLOW", "SCMP_ACT_LOG", "SCMP_ACT_NOTIFY"))
OPS = frozenset(("SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_EQ", "SCMP_CMP_GE",
                 "SCMP_CMP_GT", "SCMP_CMP_MASKED_EQ"))
PROFILE_KEYS = {"defaultAction": "action", "defaultErrnoRet": "uint", "architectures": "strings",
                "archMap": "archmap", "syscalls": "syscalls", "flags": "strings"}
# With a listener, runc (root) connects to a host socket the profile names and hands whoever
# listens there the power to answer the worker's system calls (as the OCI side refuses it).
LISTENER_KEYS = ("listenerPath", "listenerMetadata")
SYSCALL_KEYS = {"name": "string", "names": "strings", "action": "action", "args": "args",
                "comment": "string", "includes": "filter", "excludes": "filter",
                "errnoRet": "uint"}
ARG_KEYS = {"index": "uint", "value": "uint", "valueTwo": "uint", "op": "op"}
FILTER_KEYS = {"caps": "strings", "arches": "strings", "minKernel": "string"}
ARCH_KEYS = {"architecture": "string", "subArchitectures": "strings"}
_UINT_MAX = (1 << 64) - 1


class _Problem(Exception):
    pass


def profile_problem(text: str) -> str | None:
    """Why `text` is not a seccomp profile docker may get, or None."""
    from ..core.fastjson import loads

    try:
        document = loads(text)
    except (ValueError, RecursionError):
        return "not valid JSON"
    try:
        for key in LISTENER_KEYS:
            if isinstance(document, dict) and key in document:
                raise _Problem(f"$.{key}: a seccomp agent is not allowed")
        _object(document, "$", PROFILE_KEYS)
        if "defaultAction" not in document:
            raise _Problem("$.defaultAction is missing")
        if document["defaultAction"] in REFUSED_DEFAULTS:
            raise _Problem(f"its defaultAction {document['defaultAction']} lets every system "
                           f"call through")
    except _Problem as problem:
        return str(problem)
    return None


def _object(value, where: str, keys: dict) -> None:
    if not isinstance(value, dict):
        raise _Problem(f"{where} must be an object")
    for key, item in value.items():
        kind = keys.get(key)
        if kind is None:
            raise _Problem(f"{where} has the unknown key {key!r}")
        _check(item, f"{where}.{key}", kind)


def _check(value, where: str, kind: str) -> None:
    if kind == "string":
        if not isinstance(value, str):
            raise _Problem(f"{where} must be a string")
    elif kind == "strings":
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise _Problem(f"{where} must be a list of strings")
    elif kind == "uint":
        if type(value) is not int or not 0 <= value <= _UINT_MAX:
            raise _Problem(f"{where} must be a whole number")
    elif kind == "action":
        if not (isinstance(value, str) and value in ACTIONS):
            raise _Problem(f"{where} is not a seccomp action")
    elif kind == "op":
        if not (isinstance(value, str) and value in OPS):
            raise _Problem(f"{where} is not a seccomp comparison")
    else:
        _check_list(value, where, kind)


def _check_list(value, where: str, kind: str) -> None:
    if kind == "filter":
        _object(value, where, FILTER_KEYS)
        return
    if not isinstance(value, list):
        raise _Problem(f"{where} must be a list")
    keys = {"archmap": ARCH_KEYS, "syscalls": SYSCALL_KEYS, "args": ARG_KEYS}[kind]
    for index, item in enumerate(value):
        _object(item, f"{where}[{index}]", keys)
        if kind == "syscalls" and "action" not in item:
            raise _Problem(f"{where}[{index}].action is missing")


def sealed_copy(data: bytes) -> int:
    """A memfd holding `data`, sealed against any change, positioned at 0 (close-on-exec;
    privileged.spawn hands it to docker as one of its descriptors)."""
    import fcntl
    import posix as os

    fd = os.memfd_create("wl-seccomp-profile", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK
                    | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE)
        os.lseek(fd, 0, 0)  # SEEK_SET
    except BaseException:
        os.close(fd)
        raise
    return fd
