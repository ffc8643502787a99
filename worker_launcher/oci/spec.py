"""Strict, pure parse of the oci-config.json Storm's RuncLibContainerManager writes.

Everything Storm writes is accepted (the seed appendix, plus noNewPrivileges, terminal and
version); anything else is refused with exit 24 and the JSON path of the offending field.
"""

from ..core.errors import ExitCode, LauncherError
from ..core.policy import normalize

MAX_BYTES = 1024 * 1024
MAX_DEPTH = 16
MAX_LAYERS = 128
MAX_MOUNTS = 256
MAX_ITEMS = 4096
SQUASHFS = "application/vnd.squashfs"
MOUNT_OPTIONS = frozenset({"ro", "rw", "rbind", "rprivate", "nosuid", "nodev", "noexec"})
RESOURCE_FIELDS = {
    "cpu": frozenset({"shares", "quota", "period", "realtimeRuntime", "realtimePeriod", "cpus", "mems"}),
    "memory": frozenset({"limit", "reservation", "swap", "kernel", "kernelTCP", "swappiness",
                         "disableOOMKiller"}),
    "blockIO": frozenset({"weight", "leafWeight", "weightDevice", "throttleReadBpsDevice",
                          "throttleWriteBpsDevice", "throttleReadIOPSDevice",
                          "throttleWriteIOPSDevice"}),
}
SECCOMP_ACTIONS = frozenset({"SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD",
                             "SCMP_ACT_TRAP", "SCMP_ACT_ERRNO", "SCMP_ACT_TRACE", "SCMP_ACT_ALLOW",
                             "SCMP_ACT_LOG"})
SECCOMP_OPS = frozenset({"SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_EQ", "SCMP_CMP_GE",
                         "SCMP_CMP_GT", "SCMP_CMP_MASKED_EQ"})
_HEX = frozenset("0123456789abcdef")


class Mount:
    __slots__ = ("source", "destination", "writable", "options")

    def __init__(self, source, destination, writable, options):
        self.source, self.destination = source, destination
        self.writable, self.options = writable, options


class OciSpec:
    """The validated launch request. Host paths are normalized, not yet resolved."""

    __slots__ = ("username", "container_id", "pid_file", "script", "layers", "keep_count",
                 "mounts", "args", "env", "cwd", "cgroups_path", "resources", "seccomp")

    def __init__(self, **values):
        for name in self.__slots__:
            setattr(self, name, values[name])


def refuse(where: str, problem: str) -> LauncherError:
    return LauncherError(ExitCode.INVALID_CONFIG_FILE, f"oci-config.json {where}: {problem}")


def valid_container_id(text) -> bool:
    """Storm's `<port>-<uuid>`: a port of 1-5 digits, then a lowercase canonical UUID."""
    if not isinstance(text, str) or not 38 <= len(text) <= 42:
        return False
    port, _, uuid = text.partition("-")
    groups = uuid.split("-")
    return (port.isdigit() and port.isascii() and 1 <= len(port) <= 5
            and [len(group) for group in groups] == [8, 4, 4, 4, 12]
            and all(set(group) <= _HEX for group in groups))


def _fields(obj, where: str, required: tuple, optional: tuple = ()) -> dict:
    if not isinstance(obj, dict):
        raise refuse(where, "must be an object")
    unknown = set(obj) - set(required) - set(optional)
    if unknown:
        raise refuse(f"{where}.{sorted(unknown)[0]}", "is not a field Storm writes")
    missing = [key for key in required if key not in obj]
    if missing:
        raise refuse(f"{where}.{missing[0]}", "is missing")
    return obj


def _string(value, where: str, allow_empty: bool = False) -> str:
    if not isinstance(value, str) or (not value and not allow_empty) or "\0" in value:
        raise refuse(where, "must be a non-empty string without NUL")
    return value


def _path(value, where: str) -> str:
    normal = normalize(_string(value, where))
    if normal is None or normal != value.rstrip("/") and value != "/":
        raise refuse(where, f"must be a normalized absolute path, got {value!r}")
    return normal


def _list(value, where: str, limit: int = MAX_ITEMS, allow_empty: bool = True) -> list:
    if not isinstance(value, list) or len(value) > limit or (not value and not allow_empty):
        raise refuse(where, f"must be a list of {'1 to ' if not allow_empty else 'at most '}"
                            f"{limit} items")
    return value


def _integer(value, where: str, low: int = -(2**63), high: int = 2**64 - 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise refuse(where, f"must be a whole number from {low} to {high}")
    return value


def check_depth(value, where: str = "$", depth: int = 0) -> None:
    if depth > MAX_DEPTH:
        raise refuse(where, f"nests deeper than {MAX_DEPTH} levels")
    if isinstance(value, dict):
        for key, item in value.items():
            check_depth(item, f"{where}.{key}", depth + 1)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            check_depth(item, f"{where}[{index}]", depth + 1)


def parse(document, username: str) -> OciSpec:
    """Validate a decoded oci-config.json for the target user `username`."""
    check_depth(document)
    top = _fields(document, "$", ("username", "containerId", "pidFile", "containerScriptPath",
                                   "layers", "ociRuntimeConfig"),
                  ("version", "reapLayerKeepCount"))
    if "version" in top:
        _string(top["version"], "$.version")
    if top["username"] != username:
        raise refuse("$.username", f"is {top['username']!r}, not the requested user {username}")
    if not valid_container_id(top["containerId"]):
        raise refuse("$.containerId", f"{top['containerId']!r} is not <port>-<uuid>")
    keep = _integer(top.get("reapLayerKeepCount", 0), "$.reapLayerKeepCount", 0, 2**31 - 1)
    runtime = _fields(top["ociRuntimeConfig"], "$.ociRuntimeConfig", ("mounts", "process", "linux"))
    process = _process(runtime["process"], "$.ociRuntimeConfig.process")
    linux = _linux(runtime["linux"], "$.ociRuntimeConfig.linux")
    return OciSpec(
        username=username,
        container_id=top["containerId"],
        pid_file=_path(top["pidFile"], "$.pidFile"),
        script=_path(top["containerScriptPath"], "$.containerScriptPath"),
        layers=_layers(top["layers"]),
        keep_count=keep,
        mounts=_mounts(runtime["mounts"], "$.ociRuntimeConfig.mounts"),
        cgroups_path=linux["cgroupsPath"],
        resources=linux["resources"],
        seccomp=linux["seccomp"],
        **process,
    )


def _layers(value) -> tuple:
    layers = []
    for index, item in enumerate(_list(value, "$.layers", MAX_LAYERS, allow_empty=False)):
        where = f"$.layers[{index}]"
        layer = _fields(item, where, ("mediaType", "path"))
        if layer["mediaType"] != SQUASHFS:
            raise refuse(f"{where}.mediaType", f"must be {SQUASHFS}")
        layers.append(_path(layer["path"], f"{where}.path"))
    return tuple(layers)


def _mounts(value, where: str) -> tuple:
    mounts = []
    for index, item in enumerate(_list(value, where, MAX_MOUNTS)):
        here = f"{where}[{index}]"
        mount = _fields(item, here, ("destination", "type", "source", "options"))
        if mount["type"] != "bind":
            raise refuse(f"{here}.type", "only bind mounts are accepted")
        options = _list(mount["options"], f"{here}.options", 16)
        if not all(isinstance(option, str) for option in options):
            raise refuse(f"{here}.options", "must be strings")
        unknown = set(options) - MOUNT_OPTIONS
        if unknown:
            raise refuse(f"{here}.options", f"option {sorted(unknown)[0]!r} is not allowed")
        if not {"rbind", "rprivate"} <= set(options):
            raise refuse(f"{here}.options", "must include rbind and rprivate")
        if ("ro" in options) == ("rw" in options):
            raise refuse(f"{here}.options", "must include exactly one of ro and rw")
        mounts.append(Mount(_path(mount["source"], f"{here}.source"),
                            _path(mount["destination"], f"{here}.destination"),
                            "rw" in options, tuple(options)))
    return tuple(mounts)


def _process(value, where: str) -> dict:
    process = _fields(value, where, ("cwd", "env", "args"), ("noNewPrivileges", "terminal"))
    if process.get("noNewPrivileges", True) is not True:
        raise refuse(f"{where}.noNewPrivileges", "may only be true")
    if process.get("terminal", False) is not False:
        raise refuse(f"{where}.terminal", "may only be false")
    args = _list(process["args"], f"{where}.args", allow_empty=False)
    for index, arg in enumerate(args):
        _string(arg, f"{where}.args[{index}]", allow_empty=index > 0)
    env = _list(process["env"], f"{where}.env")
    for index, item in enumerate(env):
        if "=" not in _string(item, f"{where}.env[{index}]") or item.startswith("="):
            raise refuse(f"{where}.env[{index}]", "must be NAME=value")
    return {"args": tuple(args), "env": tuple(env), "cwd": _path(process["cwd"], f"{where}.cwd")}


def _linux(value, where: str) -> dict:
    linux = _fields(value, where, ("cgroupsPath",), ("resources", "seccomp"))
    cgroups = _path(linux["cgroupsPath"], f"{where}.cgroupsPath")
    if cgroups == "/":
        raise refuse(f"{where}.cgroupsPath", "may not be the cgroup root")
    resources = _fields(linux.get("resources", {}), f"{where}.resources", (),
                        tuple(RESOURCE_FIELDS))
    for name, fields in RESOURCE_FIELDS.items():
        if name in resources:
            _resource(resources[name], f"{where}.resources.{name}", fields)
    seccomp = linux.get("seccomp")
    if seccomp is not None:
        _seccomp(seccomp, f"{where}.seccomp")
    return {"cgroupsPath": cgroups, "resources": resources, "seccomp": seccomp}


def _resource(value, where: str, fields: frozenset) -> None:
    resource = _fields(value, where, (), tuple(fields))
    for key, item in resource.items():
        if isinstance(item, list):  # blockIO per-device entries
            for index, entry in enumerate(_list(item, f"{where}.{key}", 256)):
                device = _fields(entry, f"{where}.{key}[{index}]", ("major", "minor"),
                                 ("weight", "leafWeight", "rate"))
                for name, number in device.items():
                    _integer(number, f"{where}.{key}[{index}].{name}", 0)
        elif isinstance(item, str):
            if key not in ("cpus", "mems") or not set(item) <= set("0123456789,-"):
                raise refuse(f"{where}.{key}", "must be a cpu or memory-node list")
        elif key == "disableOOMKiller":
            if not isinstance(item, bool):
                raise refuse(f"{where}.{key}", "must be true or false")
        else:
            _integer(item, f"{where}.{key}")


def _one_of(value, names: frozenset) -> bool:
    """`value in names` for any JSON value (a list or object is unhashable)."""
    return isinstance(value, str) and value in names


def _seccomp(value, where: str) -> None:
    seccomp = _fields(value, where, ("defaultAction",), ("syscalls", "architectures"))
    default = seccomp["defaultAction"]
    if not _one_of(default, SECCOMP_ACTIONS) or default == "SCMP_ACT_ALLOW":
        raise refuse(f"{where}.defaultAction", "must be a seccomp action other than SCMP_ACT_ALLOW")
    for index, arch in enumerate(_list(seccomp.get("architectures", []), f"{where}.architectures", 16)):
        if not isinstance(arch, str) or not arch.startswith("SCMP_ARCH_"):
            raise refuse(f"{where}.architectures[{index}]", "must be a SCMP_ARCH_ name")
    for index, rule in enumerate(_list(seccomp.get("syscalls", []), f"{where}.syscalls", 1024)):
        here = f"{where}.syscalls[{index}]"
        rule = _fields(rule, here, ("names", "action"), ("args", "errnoRet"))
        for position, name in enumerate(_list(rule["names"], f"{here}.names", allow_empty=False)):
            if not isinstance(name, str) or not name.replace("_", "").isalnum():
                raise refuse(f"{here}.names[{position}]", "must be a system call name")
        if not _one_of(rule["action"], SECCOMP_ACTIONS):
            raise refuse(f"{here}.action", "is not a seccomp action")
        if "errnoRet" in rule:
            _integer(rule["errnoRet"], f"{here}.errnoRet", 0, 4095)
        for position, arg in enumerate(_list(rule.get("args", []), f"{here}.args", 6)):
            arg = _fields(arg, f"{here}.args[{position}]", ("index", "value", "op"), ("valueTwo",))
            _integer(arg["index"], f"{here}.args[{position}].index", 0, 5)
            _integer(arg["value"], f"{here}.args[{position}].value", 0)
            _integer(arg.get("valueTwo", 0), f"{here}.args[{position}].valueTwo", 0)
            if not _one_of(arg["op"], SECCOMP_OPS):
                raise refuse(f"{here}.args[{position}].op", "is not a seccomp comparison")


def decode(data: bytes):
    """bytes -> the JSON document, or exit 24 naming the problem."""
    from ..core.jsontext import loads

    try:
        return loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise refuse("$", "is not UTF-8") from None
    except RecursionError:
        raise refuse("$", f"nests deeper than {MAX_DEPTH} levels") from None
    except ValueError as err:
        raise refuse("$", f"is not valid JSON ({getattr(err, 'msg', err)} at line "
                          f"{getattr(err, 'lineno', '?')})") from None
