"""Strict, pure parse of the oci-config.json Storm's RuncLibContainerManager writes.

Accepted is exactly what `RuncLibContainerManager.launchWorkerProcess` can produce (serialised
by Jackson with `@JsonInclude(NON_DEFAULT)`, see storm-facts 5.2 and E5); anything else is
refused with exit 24 and the JSON path of the offending field, before anything is mounted,
attached, created or started. Each rule is written next to its check. The host side (the
files these paths name) is checked by descriptor in oci/request.py.
"""

from __future__ import annotations

from ..core.policy import is_within, normalize
from ..paths.resolve import PSEUDO_ROOTS
from . import bundle, seccomp as seccomp_rules
from .spec_rules import (DEFAULT_CGROUP_PARENT, integer, path, refuse, string,  # noqa: F401
                         strings_are_clean, the_list, valid_container_id, with_fields)

MAX_BYTES = 1024 * 1024
MAX_DEPTH = 16  # E5 with a seccomp profile nests 8 deep
MAX_LAYERS = 128
MAX_MOUNTS = 256
STORM_VERSION = "0.1"
SQUASHFS = "application/vnd.squashfs"
TOP_FIELDS = ("version", "username", "containerId", "pidFile", "containerScriptPath", "layers",
              "ociRuntimeConfig")
TMP_DESTINATION = "/tmp"


class Mount:
    __slots__ = ("source", "destination", "writable", "options")

    def __init__(self, source, destination, writable, options):
        self.source, self.destination = source, destination
        self.writable, self.options = writable, options


class Expect:
    """What a request must match besides its own rules: the target user, the workdir argument
    (Storm's workers/<worker id>; None for mount-layers, which then takes process.cwd), and
    the policy's cgroup parent and cgroup root."""

    __slots__ = ("username", "workdir", "cgroup_parent", "cgroup_root")

    def __init__(self, username: str, workdir: str | None = None,
                 cgroup_parent: str = DEFAULT_CGROUP_PARENT, cgroup_root: str = "/sys/fs/cgroup"):
        self.username, self.workdir = username, workdir
        self.cgroup_parent, self.cgroup_root = cgroup_parent, cgroup_root


class OciSpec:
    """The validated launch request. Host paths are normalized, not yet resolved."""

    __slots__ = ("container_id", "port", "worker_id", "workdir", "pid_file",
                 "script", "layers", "mounts", "args", "env", "cwd",
                 "cgroups_path", "resources", "seccomp")

    def __init__(self, **values):
        for name in self.__slots__:
            setattr(self, name, values[name])


def parse(document, expect: Expect) -> OciSpec:
    """Validate a decoded oci-config.json against `expect`."""
    strings_are_clean(document)
    top = with_fields(document, "$", TOP_FIELDS, ("reapLayerKeepCount",))
    # Storm always writes "0.1" (the no-arg constructor leaves it null, so NON_DEFAULT keeps
    # it); the C launcher never read it. Missing or different: not Storm's request.
    if top["version"] != STORM_VERSION:
        raise refuse("$.version", f"must be {STORM_VERSION!r}, the version Storm writes")
    if top["username"] != expect.username:
        raise refuse("$.username", f"is {top['username']!r}, not the requested user "
                                   f"{expect.username}")
    runtime = with_fields(top["ociRuntimeConfig"], "$.ociRuntimeConfig",
                          ("mounts", "process", "linux"))
    process = _process(runtime["process"], "$.ociRuntimeConfig.process")
    # process.cwd is the worker directory (createOciProcessConfig(workerDir, ...)), the one
    # the launcher was given; its name is the worker id.
    workdir = expect.workdir or process["cwd"]
    if process["cwd"] != workdir:
        raise refuse("$.ociRuntimeConfig.process.cwd", f"must be the workdir {workdir}")
    worker_id = workdir.rsplit("/", 1)[1]
    container_id, port = _container_id(top["containerId"], worker_id)
    # ServerUtils.writeScript puts the script in the workdir; args end with `bash <script>`.
    script = path(top["containerScriptPath"], "$.containerScriptPath")
    if script.rsplit("/", 1)[0] != workdir:
        raise refuse("$.containerScriptPath", f"must be a file directly in the workdir {workdir}")
    if list(process["args"][-2:]) != ["bash", script]:
        raise refuse("$.ociRuntimeConfig.process.args", "must end with bash and the "
                                                        "containerScriptPath")
    pid_file = path(top["pidFile"], "$.pidFile")  # where: judged on the host (request.py)
    # Jackson omits reapLayerKeepCount when it is 0 (NON_DEFAULT), so absent means 0; the
    # keep count that counts is reap-oci-container's argument, this one is only checked.
    integer(top.get("reapLayerKeepCount", 0), "$.reapLayerKeepCount", 0, 2**31 - 1)
    linux = _linux(runtime["linux"], "$.ociRuntimeConfig.linux", container_id,
                   expect.cgroup_parent)
    return OciSpec(
        container_id=container_id, port=port, worker_id=worker_id,
        workdir=workdir, pid_file=pid_file, script=script, layers=_layers(top["layers"]),
        cwd=process["cwd"], args=process["args"], env=process["env"],
        mounts=_mounts(runtime["mounts"], "$.ociRuntimeConfig.mounts", workdir,
                       expect.cgroup_root),
        cgroups_path=linux["cgroupsPath"], resources=linux["resources"],
        seccomp=linux["seccomp"],
    )


def _container_id(value, worker_id: str) -> tuple:
    """`<port>-<worker id>` with the worker id the workdir's name; (id, port)."""
    if not valid_container_id(value):
        raise refuse("$.containerId", f"{value!r} is not <port>-<worker id> (a port 1-65535, "
                                      f"a lowercase UUID)")
    port, _, worker = value.partition("-")
    if worker != worker_id:
        raise refuse("$.containerId", f"{value!r} is not for the worker {worker_id} of the "
                                      f"workdir")
    return value, int(port)


def _layers(value) -> tuple:
    layers = []
    for index, item in enumerate(the_list(value, "$.layers", MAX_LAYERS, allow_empty=False)):
        where = f"$.layers[{index}]"
        layer = with_fields(item, where, ("mediaType", "path"))
        if layer["mediaType"] != SQUASHFS:
            raise refuse(f"{where}.mediaType", f"must be {SQUASHFS}")
        layers.append(path(layer["path"], f"{where}.path"))
    return tuple(layers)


def _mounts(value, where: str, workdir: str, cgroup_root: str) -> tuple:
    """RuncLibContainerManager.setContainerMounts: bind mounts with options [ro|rw, rbind,
    rprivate], each path bound at its own place, except <workdir>/tmp at /tmp."""
    mounts, seen = [], set()
    for index, item in enumerate(the_list(value, where, MAX_MOUNTS)):
        here = f"{where}[{index}]"
        mount = with_fields(item, here, ("destination", "type", "source", "options"))
        if mount["type"] != "bind":
            raise refuse(f"{here}.type", "only bind mounts are accepted")
        options = the_list(mount["options"], f"{here}.options", 3)
        if len(options) != 3 or not all(isinstance(o, str) for o in options) \
                or set(options) not in ({"ro", "rbind", "rprivate"}, {"rw", "rbind", "rprivate"}):
            raise refuse(f"{here}.options", "must be [ro or rw, rbind, rprivate]")
        source = path(mount["source"], f"{here}.source")
        destination = path(mount["destination"], f"{here}.destination")
        writable = "rw" in options
        if destination != source and (source, destination) != (f"{workdir}/tmp", TMP_DESTINATION):
            raise refuse(f"{here}.destination", f"must be the source itself (Storm binds each "
                                                f"path at its own place, and the workdir's tmp "
                                                f"at {TMP_DESTINATION})")
        problem = destination_problem(destination, source, writable, cgroup_root)
        if problem:
            raise refuse(f"{here}.destination", problem)
        if destination in seen:
            raise refuse(f"{here}.destination", f"{destination} is mounted twice")
        seen.add(destination)
        mounts.append(Mount(source, destination, writable, tuple(options)))
    return tuple(mounts)


def destination_problem(destination: str, source: str, writable: bool, cgroup_root: str):
    """Why a bind may not go to `destination` in the container, or None. Never over the
    root, nor on or below /proc, /sys, /dev (where runc and the launcher mount the
    container's own pseudo file systems, bundle.STANDARD_MOUNTS): a bind there would hide or
    replace them. One exception, which Storm always sends: its cgroup root
    (storm.oci.cgroup.root) bound read-only at its own place over the container's cgroup
    mount."""
    if destination == "/":
        return "may not be the container's root"
    if (destination == source == cgroup_root and not writable
            and destination not in PSEUDO_ROOTS):
        return None
    standard = [m["destination"] for m in bundle.STANDARD_MOUNTS]
    for top in PSEUDO_ROOTS + tuple(standard):
        if is_within(destination, top):
            return (f"{destination} is on or below {top}, where the container's own file "
                    f"systems are mounted")
    return None


def _process(value, where: str) -> dict:
    # Storm never writes noNewPrivileges (true) or terminal (false): NON_DEFAULT drops both.
    process = with_fields(value, where, ("cwd", "env", "args"), ("noNewPrivileges", "terminal"))
    if process.get("noNewPrivileges", True) is not True:
        raise refuse(f"{where}.noNewPrivileges", "may only be true")
    if process.get("terminal", False) is not False:
        raise refuse(f"{where}.terminal", "may only be false")
    args = the_list(process["args"], f"{where}.args", allow_empty=False)
    for index, arg in enumerate(args):
        string(arg, f"{where}.args[{index}]", allow_empty=index > 0)
    env = the_list(process["env"], f"{where}.env")  # "env":[] when empty
    for index, item in enumerate(env):
        if "=" not in string(item, f"{where}.env[{index}]") or item.startswith("="):
            raise refuse(f"{where}.env[{index}]", "must be NAME=value")
    return {"args": tuple(args), "env": tuple(env), "cwd": path(process["cwd"], f"{where}.cwd")}


def _linux(value, where: str, container_id: str, parent: str) -> dict:
    # OciLinuxConfig: cgroupsPath and resources always (Resources is always created),
    # seccomp only when storm.oci.seccomp.profile is set.
    linux = with_fields(value, where, ("cgroupsPath", "resources"), ("seccomp",))
    cgroups = cgroups_path(linux["cgroupsPath"], f"{where}.cgroupsPath", container_id, parent)
    resources = _resources(linux["resources"], f"{where}.resources")
    seccomp = linux.get("seccomp")
    if "seccomp" in linux:
        seccomp_rules.check(seccomp, f"{where}.seccomp")
    return {"cgroupsPath": cgroups, "resources": resources, "seccomp": seccomp}


def cgroups_path(value, where: str, container_id: str, parent: str) -> str:
    """Storm's `cgroupParent + "/" + containerId`, returned normalized (what runc gets).

    The parent is the policy's storm.oci.cgroup.parent (Storm's default /storm; Storm
    prepends '/' to a relative one). Storm keeps a trailing '/' of the configured parent, so
    `/storm/` gives `/storm//<id>`: repeated slashes are accepted, since collapsing them is
    unambiguous and runc cleans the path the same way; '.', '..' and a trailing '/' are not."""
    text = string(value, where)
    normal = normalize(text)
    expected = f"{parent.rstrip('/')}/{container_id}"
    if normal is None or text.endswith("/") or normal != expected:
        raise refuse(where, f"must be {expected} (the cgroup parent {parent} and the "
                            f"container id), got {text!r}")
    return normal


def _resources(value, where: str) -> dict:
    """Storm's Resources: memory {limit} (memory enforcement on), cpu {quota, period[, cpus,
    mems]} (a cpu reserved; cpus and mems with NUMA), or {}. Zero values are omitted by
    Jackson. Nothing else: no real-time CPU time, no devices, no blockIO, no pids."""
    resources = with_fields(value, where, (), ("memory", "cpu"),
                            refused={"devices": "the launcher sets the device rules itself"})
    if "memory" in resources:
        memory = with_fields(resources["memory"], f"{where}.memory", (), ("limit",))
        if "limit" in memory:
            integer(memory["limit"], f"{where}.memory.limit", 1)
    if "cpu" in resources:
        realtime = "real-time CPU time is never granted to a worker"
        cpu = with_fields(resources["cpu"], f"{where}.cpu", ("period",), ("quota", "cpus", "mems"),
                          refused={"realtimeRuntime": realtime, "realtimePeriod": realtime})
        integer(cpu["period"], f"{where}.cpu.period", 1000, 1000000)  # the kernel's CFS bounds
        if "quota" in cpu:
            integer(cpu["quota"], f"{where}.cpu.quota", 1000)
        if ("cpus" in cpu) != ("mems" in cpu):
            raise refuse(f"{where}.cpu", "sets cpus and mems together (NUMA) or neither")
        for key in ("cpus", "mems"):
            if key in cpu and not _cpu_list(cpu[key]):
                raise refuse(f"{where}.cpu.{key}", "must be a list like 0,1,2-5")
    return resources


def _cpu_list(value) -> bool:
    if not isinstance(value, str) or not value or len(value) > 4096:
        return False
    for part in value.split(","):
        low, _, high = part.partition("-")
        for number in (low, high) if "-" in part else (low,):
            if not (number.isascii() and number.isdigit() and len(number) <= 5):
                return False
        if "-" in part and int(low) > int(high):
            return False
    return True


def decode(data: bytes):
    """bytes -> the JSON document (jsontext.parse: strict, iterative, bounded), or exit 24
    naming the position of the problem."""
    from ..core.jsontext import JsonError, parse as parse_json

    try:
        return parse_json(data, MAX_DEPTH)
    except JsonError as err:
        raise refuse("$", f"is not valid JSON: {err}") from None
