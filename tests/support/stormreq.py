"""Storm's supervisor requests, byte for byte. Pure: no file system, no processes.

Every generator names the Storm class and method it follows (apache/storm at 73da988d, see
docs/storm-facts.md for the citations). Facts carry over, code does not: this is a
re-statement in Python of what the Java writes, pinned by tests/storm/test_requests.py to
the byte-exact examples E1-E7 and to outputs of Storm's own classes.

Paths: `StormConf` holds the supervisor's storm.yaml and JVM system properties and derives
every path as `ConfigUtils` does; `Worker` is one slot's assignment (topology, port, worker
id, owner, resources). `Op` lists describe what the supervisor does, in order, so the
replay (support/stormlife.py) can carry them out and a unit test can pin the order.
"""

from __future__ import annotations

import math

SEP = "/"

# --- Java semantics the bytes depend on ---------------------------------------------------


def _int32(value: int) -> int:
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value & 0x80000000 else value


def java_string_hash(text: str) -> int:
    """String.hashCode: s[0]*31^(n-1) + ... over UTF-16 code units, 32-bit overflow."""
    h = 0
    for unit in text.encode("utf-16-be").hex(" ", 2).split():
        h = _int32(31 * h + int(unit, 16))
    return h


def _spread(key: str) -> int:
    """HashMap.hash: h ^ (h >>> 16), as an unsigned 32-bit number."""
    h = java_string_hash(key) & 0xFFFFFFFF
    return h ^ (h >> 16)


def _table_size_for(cap: int) -> int:
    n = 1
    while n < cap:
        n <<= 1
    return min(max(n, 1), 1 << 30)


class JavaHashMap:
    """The iteration order of java.util.HashMap<String, V> (JDK 8-25): buckets by index,
    insertion order inside a bucket, resizes that split buckets keeping that order. Enough
    of the real thing for Storm's small maps (no treeified buckets: < 8 keys per bucket)."""

    LOAD = 0.75

    def __init__(self, items=()):
        self.table = None
        self.threshold = 0
        self.size = 0
        for key, value in items:
            self.put(key, value)

    def _resize(self) -> None:
        old_cap = len(self.table) if self.table is not None else 0
        old_thr = self.threshold
        new_thr = 0
        if old_cap > 0:
            new_cap = old_cap << 1
            if old_cap >= 16:
                new_thr = old_thr << 1
        elif old_thr > 0:
            new_cap = old_thr
        else:
            new_cap, new_thr = 16, 12
        if new_thr == 0:
            new_thr = int(new_cap * self.LOAD)
        self.threshold = new_thr
        table = [[] for _ in range(new_cap)]
        for bucket in self.table or ():
            for key, value in bucket:  # lo/hi split keeps the relative order
                table[_spread(key) & (new_cap - 1)].append((key, value))
        self.table = table

    def put(self, key: str, value) -> None:
        if self.table is None:
            self._resize()
        bucket = self.table[_spread(key) & (len(self.table) - 1)]
        for index, (old, _) in enumerate(bucket):
            if old == key:
                bucket[index] = (key, value)
                return
        bucket.append((key, value))
        self.size += 1
        if self.size > self.threshold:
            self._resize()

    def put_all(self, items) -> None:
        """HashMap.putAll / putMapEntries: pre-size an empty map, else double first."""
        items = list(items)
        if not items:
            return
        if self.table is None:
            wanted = int(len(items) / self.LOAD + 1.0)
            if wanted > self.threshold:
                self.threshold = _table_size_for(wanted)
        else:
            while len(items) > self.threshold:
                self._resize()
        for key, value in items:
            self.put(key, value)

    def items(self) -> list:
        return [pair for bucket in self.table or () for pair in bucket]

    def keys(self) -> list:
        return [key for key, _ in self.items()]


def java_double(value: float) -> str:
    """Double.toString: the shortest decimal that reads back as the same double, written
    plain with at least one fractional digit in [1e-3, 1e7), else as d.dddE<n>."""
    from decimal import Decimal

    value = float(value)
    if value == 0:
        return "-0.0" if math.copysign(1, value) < 0 else "0.0"
    if 1e-3 <= abs(value) < 1e7:
        text = repr(value)
        return text if "." in text else text + ".0"
    sign, digits, exponent = Decimal(repr(value)).as_tuple()
    digits = "".join(map(str, digits)).rstrip("0") or "0"
    power = exponent + len("".join(map(str, Decimal(repr(value)).as_tuple()[1]))) - 1
    return f"{'-' if sign else ''}{digits[0]}.{digits[1:] or '0'}E{power}"


def java_file(path: str) -> str:
    """java.io.File's normal form of a path string: no repeated or trailing '/'."""
    parts = [part for part in path.split("/") if part]
    return ("/" if path.startswith("/") else "") + "/".join(parts) or "/"


def url_encode(text: str) -> str:
    """URLEncoder.encode(text, "UTF-8")."""
    safe = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-*_")
    out = []
    for char in text:
        if char in safe:
            out.append(char)
        elif char == " ":
            out.append("+")
        else:
            out.extend(f"%{byte:02X}" for byte in char.encode("utf-8"))
    return "".join(out)


# --- configuration and paths (ConfigUtils, OciContainerManager.prepare) -------------------


class StormConf:
    """The supervisor's storm.yaml (`yaml`, Storm's key names) and its JVM system properties
    (`storm.home`, `storm.log.dir`), with ConfigUtils' path formulas."""

    DEFAULTS = {
        "storm.local.dir": "storm-local",
        "storm.workers.artifacts.dir": "workers-artifacts",
        "storm.oci.cgroup.root": "/sys/fs/cgroup",
        "storm.oci.cgroup.parent": "/storm",
        "storm.oci.nscd.dir": "/var/run/nscd",
        "storm.oci.layer.mounts.to.keep": 100,
        "storm.cgroup.memory.enforcement.enable": False,
        "storm.supervisor.memory.limit.tolerance.margin.mb": 128.0,
        "java.library.path": "/usr/local/lib:/opt/local/lib:/usr/lib:/usr/lib64",
        "storm.disable.symlinks": False,
        "supervisor.worker.shutdown.sleep.secs": 3,
    }

    def __init__(self, yaml: dict, storm_home: str, log_dir: str | None = None,
                 os_name: str = "Linux", os_arch: str = "amd64"):
        self.yaml = dict(yaml)
        self.storm_home = storm_home
        self.log_dir_property = log_dir
        self.os_name, self.os_arch = os_name, os_arch

    def get(self, key: str):
        return self.yaml.get(key, self.DEFAULTS.get(key))

    # ConfigUtils
    def local_dir(self) -> str:
        """absoluteStormLocalDir"""
        value = self.yaml.get("storm.local.dir")
        if value is None:
            return self.storm_home + SEP + "storm-local"
        return value if value.startswith("/") else self.storm_home + SEP + value

    def log_dir(self) -> str:
        """getLogDir: -Dstorm.log.dir, else storm.yaml's, else <storm.home>/logs (the
        canonical path: the tests use paths without symlinks)."""
        return java_file(self.log_dir_property or self.yaml.get("storm.log.dir")
                         or self.storm_home + SEP + "logs")

    def artifacts_root(self) -> str:
        """workerArtifactsRoot(conf)"""
        value = self.yaml.get("storm.workers.artifacts.dir")
        if value is None:
            return self.log_dir() + SEP + "workers-artifacts"
        return value if value.startswith("/") else self.log_dir() + SEP + value

    def artifacts_dir(self, topology_id: str, port: int) -> str:
        """workerArtifactsRoot(conf, topologyId, port)"""
        return self.artifacts_root() + SEP + topology_id + SEP + str(port)

    def worker_root(self, worker_id: str) -> str:
        return self.local_dir() + SEP + "workers" + SEP + worker_id

    def worker_artifacts_symlink(self, worker_id: str) -> str:
        return self.worker_root(worker_id) + SEP + "artifacts"

    def worker_pids_root(self, worker_id: str) -> str:
        return self.worker_root(worker_id) + SEP + "pids"

    def worker_heartbeats_root(self, worker_id: str) -> str:
        return self.worker_root(worker_id) + SEP + "heartbeats"

    def worker_tmp_root(self, worker_id: str) -> str:
        return self.worker_root(worker_id) + SEP + "tmp"

    def worker_user_root(self) -> str:
        return self.local_dir() + SEP + "workers-users"

    def worker_user_file(self, worker_id: str) -> str:
        return self.worker_user_root() + SEP + worker_id

    def supervisor_local_dir(self) -> str:
        return self.local_dir() + SEP + "supervisor"

    def stormdist_root(self, topology_id: str) -> str:
        """supervisorStormDistRoot(conf, topologyId)"""
        return self.supervisor_local_dir() + SEP + "stormdist" + SEP + url_encode(topology_id)

    def shared_by_topology_dir(self, topology_id: str) -> str:
        return self.stormdist_root(topology_id) + SEP + "shared_by_topology"

    # OciContainerManager.prepare
    def cgroup_root(self) -> str:
        return self.get("storm.oci.cgroup.root")

    def cgroup_parent(self) -> str:
        parent = self.get("storm.oci.cgroup.parent")
        return parent if parent.startswith(SEP) else SEP + parent

    def nscd_dir(self) -> str:
        return self.get("storm.oci.nscd.dir")

    def seccomp_profile(self) -> str | None:
        return self.yaml.get("storm.oci.seccomp.profile")

    def readonly_bindmounts(self) -> list:
        return list(self.yaml.get("storm.oci.readonly.bindmounts") or ())

    def readwrite_bindmounts(self) -> list:
        return list(self.yaml.get("storm.oci.readwrite.bindmounts") or ())

    def memory_cgroup_root(self) -> str:
        """memoryCgroupRootPath: where getMemoryUsage reads <cid>/memory.usage_in_bytes."""
        return self.cgroup_root() + SEP + "memory" + SEP + self.cgroup_parent()

    # RuncLibContainerManager.prepare, HdfsOciResourcesLocalizer.init
    def layers_to_keep(self) -> int:
        return int(self.get("storm.oci.layer.mounts.to.keep"))

    def oci_resources_dir(self) -> str:
        return (self.yaml.get("storm.oci.resources.local.dir")
                or self.supervisor_local_dir() + SEP + "oci-resources")

    def layer_path(self, layer_hash: str) -> str:
        """HdfsOciResourcesLocalizer: new File(dir + "/layers/", <hash>.sqsh)."""
        return java_file(self.oci_resources_dir() + "/layers/" + SEP + layer_hash + ".sqsh")

    def image_config_path(self, config_hash: str) -> str:
        return java_file(self.oci_resources_dir() + "/config/" + SEP + config_hash)

    def memory_enforced(self) -> bool:
        return bool(self.get("storm.cgroup.memory.enforcement.enable"))

    def java_library_path(self, topology_id: str) -> str:
        """BasicContainer.javaLibraryPath"""
        resources = self.stormdist_root(topology_id) + SEP + "resources"
        os_name = "_".join(self.os_name.split())
        return ":".join([resources + SEP + os_name + "-" + self.os_arch, resources,
                         self.get("java.library.path")])


class Worker:
    """One slot's assignment: what BasicContainer knows when it sets up and launches."""

    def __init__(self, worker_id: str, topology_id: str, port: int, user: str,
                 cpu: float = 100.0, mem_on_heap: int = 768, mem_off_heap: float = 0.0,
                 topology_env: list | None = None, image: str | None = None,
                 numa_cores: list | None = None, numa_id: str | None = None):
        self.worker_id, self.topology_id, self.port, self.user = worker_id, topology_id, port, user
        self.cpu, self.mem_on_heap, self.mem_off_heap = cpu, mem_on_heap, mem_off_heap
        self.topology_env = list(topology_env or [])  # topology.environment, in its order
        self.image = image
        self.numa_cores, self.numa_id = numa_cores, numa_id

    @property
    def container_id(self) -> str:
        """RuncLibContainerManager.getContainerId: port + "-" + workerId."""
        return f"{self.port}-{self.worker_id}"

    def reserved_cpu(self, conf: StormConf) -> int | None:
        """BasicContainer.launch: (int) Math.ceil(resources.get_cpu()), unless
        storm.worker.cgroup.cpu.limit overrides it (OciContainerManager.reserveResourcesForWorker).
        None: nothing reserved (cpu=None), as when reserveResourcesForWorker is not called."""
        limit = conf.yaml.get("storm.worker.cgroup.cpu.limit")
        if limit is not None:
            return int(limit)
        return None if self.cpu is None else int(math.ceil(self.cpu))

    def memory_limit_mb(self, conf: StormConf) -> int:
        """BasicContainer.calculateMemoryLimit for a resource-managed launch."""
        margin = conf.get("storm.supervisor.memory.limit.tolerance.margin.mb")
        return self.mem_on_heap + int(math.ceil(self.mem_off_heap)) + int(math.ceil(margin))

    def reserved_memory_mb(self, conf: StormConf) -> int | None:
        return self.memory_limit_mb(conf) if conf.memory_enforced() else None

    def environment(self, conf: StormConf) -> JavaHashMap:
        """BasicContainer.launch's topEnvironment: a HashMap of topology.environment plus
        LD_LIBRARY_PATH (the java library path, then any user LD_LIBRARY_PATH)."""
        env = JavaHashMap()
        env.put_all(self.topology_env)
        jlp = conf.java_library_path(self.topology_id)
        user_path = dict(self.topology_env).get("LD_LIBRARY_PATH")
        if user_path is not None:
            jlp = jlp + ":" + user_path
        env.put("LD_LIBRARY_PATH", jlp)
        return env


# --- what the supervisor does, as a list of operations ------------------------------------


class Op:
    """One supervisor action: `mkdirs` (commons-io forceMkdir), `write` (FileWriter:
    create/truncate, the supervisor's umask), `symlink` (AdvancedFSOps.createSymlink,
    absolute target), or `launcher` (argv after the launcher path, cwd, extra env)."""

    __slots__ = ("kind", "path", "data", "argv", "cwd", "env", "why")

    def __init__(self, kind: str, path: str | None = None, data: bytes | str | None = None,
                 argv: list | None = None, cwd: str | None = None, env: list | None = None,
                 why: str = ""):
        self.kind, self.path, self.data = kind, path, data
        self.argv, self.cwd, self.env, self.why = argv, cwd, env, why

    def __repr__(self):
        if self.kind == "launcher":
            return f"Op(launcher {' '.join(self.argv)} cwd={self.cwd})"
        return f"Op({self.kind} {self.path})"


def launcher_op(user: str, *args, cwd: str | None = None, env: list | None = None,
                why: str = "") -> Op:
    return Op("launcher", argv=[user, *map(str, args)], cwd=cwd, env=env, why=why)


TOPOLOGY_BLOBS = ("stormjar.jar", "stormcode.ser", "stormconf.ser")


def localize_topology(conf: StormConf, worker: Worker, blobs: dict) -> list:
    """LocallyCachedTopologyBlob.fetchUnzipToTemp + commitNewVersion for the jar, code and
    conf blobs: the first creates stormdist/<topo> and hands it over (`code-dir`); each
    commit moves its file in place (the jar's resources/ too), then `code-dir` again,
    mkdirs shared_by_topology and `artifacts-dir` on it, then writes the version file.
    `blobs` maps the blob file names (and "resources/<name>") to their bytes."""
    root = conf.stormdist_root(worker.topology_id)
    shared = conf.shared_by_topology_dir(worker.topology_id)
    ops = [Op("mkdirs", root, why="LocallyCachedTopologyBlob.fetchUnzipToTemp"),
           launcher_op(worker.user, "code-dir", root, why="fetchUnzipToTemp: new stormdist dir")]
    for version, name in enumerate(TOPOLOGY_BLOBS, start=1):
        ops.append(Op("write", root + SEP + name, blobs[name],
                      why="commitNewVersion: move " + name))
        if name == "stormjar.jar":
            for path, data in blobs.items():
                if path.startswith("resources/"):
                    ops.append(Op("mkdirs", root + SEP + path.rsplit("/", 1)[0]))
                    ops.append(Op("write", root + SEP + path, data,
                                  why="extractDirFromJar: resources/"))
        ops += [launcher_op(worker.user, "code-dir", root, why="commitNewVersion"),
                Op("mkdirs", shared, why="commitNewVersion: shared_by_topology"),
                launcher_op(worker.user, "artifacts-dir", shared, why="commitNewVersion"),
                Op("write", root + SEP + name + ".version", str(version),
                   why="commitNewVersion: version file")]
    return ops


def worker_yaml(worker: Worker) -> str:
    """Container.writeLogMetadata: `new Yaml().dump(HashMap)` (SnakeYAML, flow style AUTO:
    scalar lists inline). Best effort: the keys and values Storm writes for a topology
    without logs.users/logs.groups/topology.worker.timeout.secs."""
    data = JavaHashMap([("topology.submitter.user", worker.user), ("worker-id", worker.worker_id),
                        ("logs.groups", []), ("logs.users", [])])
    lines = []
    for key, value in data.items():
        lines.append(f"{key}: " + ("[" + ", ".join(value) + "]" if isinstance(value, list)
                                   else value))
    return "\n".join(lines) + "\n"


def container_setup(conf: StormConf, worker: Worker, artifacts_exist: bool = False,
                    resources_exist: bool = True) -> list:
    """Container.setup, in order: pids, tmp, heartbeats (forceMkdir); a new artifacts dir
    <artifacts root>/<topo>/<port> created then handed over (`artifacts-dir`, only if it did
    not exist); worker.yaml in it; workers-users/<id> = the user name, no newline; the
    absolute symlink workers/<id>/artifacts; the resources link (createBlobstoreLinks)."""
    wid = worker.worker_id
    artifacts = conf.artifacts_dir(worker.topology_id, worker.port)
    ops = [Op("mkdirs", conf.worker_pids_root(wid), why="Container.setup: pids"),
           Op("mkdirs", conf.worker_tmp_root(wid), why="Container.setup: tmp"),
           Op("mkdirs", conf.worker_heartbeats_root(wid), why="Container.setup: heartbeats")]
    if not artifacts_exist:
        ops += [Op("mkdirs", artifacts, why="Container.setup: new artifacts dir"),
                launcher_op(worker.user, "artifacts-dir", artifacts,
                            why="AdvancedRunAsUserFSOps.setupWorkerArtifactsDir")]
    ops.append(Op("write", artifacts + SEP + "worker.yaml", worker_yaml(worker),
                  why="Container.writeLogMetadata"))
    ops.append(Op("mkdirs", conf.worker_user_root(), why="AdvancedFSOps.dump: parent"))
    ops.append(Op("write", conf.worker_user_file(wid), worker.user,
                  why="Container.saveWorkerUser"))
    if not conf.get("storm.disable.symlinks"):
        ops.append(Op("symlink", conf.worker_artifacts_symlink(wid), artifacts,
                      why="Container.createArtifactsLink"))
        if resources_exist:
            ops.append(Op("symlink", conf.worker_root(wid) + SEP + "resources",
                          conf.stormdist_root(worker.topology_id) + SEP + "resources",
                          why="Container.createBlobstoreLinks"))
    return ops


# --- ServerUtils.writeScript ---------------------------------------------------------------


def shell_cmd(command) -> str:
    """ServerUtils.shellCmd: each non-null element in single quotes, ' as '"'"'."""
    return " ".join("'" + item.replace("'", "'\"'\"'") + "'" for item in command
                    if item is not None)


def write_script(command, environment=None, umask: str | None = None) -> bytes:
    """ServerUtils.writeScript: the bytes of <dir>/storm-worker-script.sh. `environment` is
    a JavaHashMap (iterated in its key order) or a list of pairs; Docker and OCI pass
    umask "0027". No newline after the final ';'."""
    out = ["#!/bin/bash\n"]
    pairs = environment.items() if isinstance(environment, JavaHashMap) else environment or ()
    for key, value in pairs:
        out.append(shell_cmd(["export", f"{key}={'' if value is None else value}"]) + ";\n")
    out.append("\n")
    if umask is not None:
        out.append(f"umask {umask}\n")
    out.append("exec " + shell_cmd(command) + ";")
    return "".join(out).encode("utf-8")


def script_path(directory: str) -> str:
    """ServerUtils.scriptFilePath"""
    return directory + SEP + "storm-worker-script.sh"


# --- Docker (DockerManager and the Docker*Command classes) --------------------------------


def command_file_path(directory: str, tag: str) -> str:
    """OciContainerManager.commandFilePath: <dir>/<tag>.sh (written with no newline)."""
    return directory + SEP + tag + ".sh"


def docker_run_command(conf: StormConf, worker: Worker, uid: str, groups: list) -> str:
    """DockerManager.launchWorkerProcess: the DockerRunCommand, token order = call order.
    `uid` and `groups` are `id --user` and `id --groups` of the worker's user, as strings."""
    wid = worker.worker_id
    workdir = java_file(conf.worker_root(wid))  # targetDir.getAbsolutePath()
    tokens = ["run", f"--name={wid}", f"--user={uid}:{groups[0]}", "-d", "--net=host",
              "--read-only"]

    def ro(path):
        tokens.extend(["-v", f"{path}:{path}:ro"])

    def rw(source, destination=None):
        tokens.extend(["-v", f"{source}:{destination or source}"])

    ro(conf.cgroup_root())
    ro(conf.storm_home)
    ro(conf.supervisor_local_dir())
    rw(conf.worker_root(wid))
    rw(conf.artifacts_dir(worker.topology_id, worker.port))
    rw(conf.worker_user_file(wid))
    rw(conf.nscd_dir())
    rw(conf.shared_by_topology_dir(worker.topology_id))
    rw(conf.worker_tmp_root(wid), "/tmp")
    for path in conf.readonly_bindmounts():
        ro(path)
    for path in conf.readwrite_bindmounts():
        rw(path)
    if worker.numa_id is not None:
        if worker.numa_cores:
            tokens.append("--cpuset-cpus=" + ",".join(map(str, worker.numa_cores)))
        tokens.append(f"--cpuset-mems={worker.numa_id}")
    tokens.append(f"--cgroup-parent={conf.cgroup_parent()}")
    tokens.extend(f"--group-add {gid}" for gid in groups)
    tokens += [f"--workdir={workdir}", f"--cidfile={conf.worker_root(wid)}/container.cid",
               "--cap-drop=ALL", "--security-opt no-new-privileges"]
    if conf.seccomp_profile() is not None:
        tokens.append(f"--security-opt seccomp={conf.seccomp_profile()}")
    if worker.reserved_cpu(conf) is not None:
        tokens.append("--cpus=" + java_double(worker.reserved_cpu(conf) / 100.0))
    memory = worker.reserved_memory_mb(conf)
    if memory is not None:
        tokens.append(f"--memory={memory}m")
    tokens += [worker.image, "bash", script_path(workdir)]
    return " ".join(tokens)


def docker_wait(worker_id: str) -> str:
    """DockerWaitCommand"""
    return f"wait {worker_id}"


def docker_ps(worker_id: str) -> str:
    """DockerManager.areAllProcessesDead: DockerPsCommand, withNameFilter then withQuietOption."""
    return f"ps --filter=name={worker_id} --quiet=true"


def docker_stop(worker_id: str) -> str:
    """DockerManager.kill: DockerStopCommand (setGracePeriod is never called)."""
    return f"stop {worker_id}"


def docker_rm(worker_id: str, force: bool = False) -> str:
    """DockerManager.kill (rm) and forceKill (rm --force): DockerRmCommand."""
    return f"rm --force {worker_id}" if force else f"rm {worker_id}"


def docker_inspect_status(worker_id: str) -> str:
    """DockerInspectCommand.withGettingContainerStatus (never written by Storm's main code)."""
    return "inspect --format='{{.State.Status}}' " + worker_id


def docker_alive(ps_stdout: str, container_id: str) -> bool:
    """DockerManager.areAllProcessesDead, negated: the last line of the trimmed output is a
    prefix of the container id read from the cid file."""
    text = ps_stdout.strip()
    if not text:
        return False
    return container_id.startswith(text.split("\n")[-1])


# --- OCI (RuncLibContainerManager, OciContainerExecutorConfig + Jackson) ------------------


class RawJson:
    """A @JsonRawValue member: its text goes into the output verbatim."""

    __slots__ = ("text",)

    def __init__(self, text: str):
        self.text = text


_SHORT_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r",
                  "\t": "\\t"}


def jackson_string(text: str) -> str:
    """Jackson's default string escaping: quote, backslash, short forms for \\b \\f \\n \\r
    \\t, \\u00XX (upper-case hex) for the other control characters; '/' and non-ASCII as is."""
    out = ['"']
    for char in text:
        if char in _SHORT_ESCAPES:
            out.append(_SHORT_ESCAPES[char])
        elif char < " ":
            out.append(f"\\u{ord(char):04X}")
        else:
            out.append(char)
    out.append('"')
    return "".join(out)


def jackson(value) -> str:
    """ObjectMapper.writeValueAsString with the default configuration: compact. Objects are
    lists of (name, value) pairs, already in declaration order with defaults left out."""
    if isinstance(value, RawJson):
        return value.text
    if isinstance(value, str):
        return jackson_string(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, tuple):  # an object: tuple of (name, value) pairs
        return "{" + ",".join(jackson_string(k) + ":" + jackson(v) for k, v in value) + "}"
    if isinstance(value, list):
        return "[" + ",".join(jackson(item) for item in value) + "]"
    raise TypeError(f"cannot serialize {value!r}")


def _present(*pairs) -> tuple:
    """NON_DEFAULT: members equal to the no-arg constructor's value (null, 0, false) are left
    out; empty lists and strings are written."""
    return tuple((name, value) for name, value in pairs
                 if value is not None and value is not False
                 and not (isinstance(value, int) and not isinstance(value, bool) and value == 0))


def oci_mounts(conf: StormConf, worker: Worker) -> list:
    """RuncLibContainerManager.setContainerMounts: (destination, source, writable) in order."""
    wid = worker.worker_id
    mounts = [(p, p, False) for p in conf.readonly_bindmounts()]
    mounts += [(p, p, True) for p in conf.readwrite_bindmounts()]
    for path in ("/etc/resolv.conf", "/etc/hostname", "/etc/hosts", conf.nscd_dir(),
                 conf.storm_home, conf.cgroup_root(), conf.supervisor_local_dir()):
        mounts.append((path, path, False))
    for path in (conf.worker_root(wid), conf.artifacts_dir(worker.topology_id, worker.port),
                 conf.worker_user_file(wid), conf.shared_by_topology_dir(worker.topology_id)):
        mounts.append((path, path, True))
    mounts.append(("/tmp", conf.worker_tmp_root(wid), True))
    return mounts


def oci_pid_file(conf: StormConf, worker_id: str) -> str:
    """RuncLibContainerManager.containerPidFile: through the artifacts symlink."""
    return conf.worker_artifacts_symlink(worker_id) + SEP + f"container-{worker_id}.pid"


def oci_config_json(conf: StormConf, worker: Worker, layer_paths: list, image_env=None,
                    image_entrypoint=None, seccomp: str | None = None) -> bytes:
    """RuncLibContainerManager.launchWorkerProcess: the oci-config.json bytes, as Jackson
    writes OciContainerExecutorConfig (class-level NON_DEFAULT, declaration order, compact,
    no trailing newline). `layer_paths` in manifest order (base first); `image_env` and
    `image_entrypoint` are the image config's config.Env and config.Entrypoint; `seccomp`
    the text of storm.oci.seccomp.profile (spliced in raw)."""
    wid = worker.worker_id
    workdir = java_file(conf.worker_root(wid))  # targetDir.getAbsolutePath()
    env = list(image_env or [])
    env += [f"{key}={value}" for key, value in worker.environment(conf).items()]
    args = list(image_entrypoint or []) + ["bash", script_path(workdir)]
    mounts = [(("destination", dst), ("type", "bind"), ("source", src),
               ("options", ["rw" if writable else "ro", "rbind", "rprivate"]))
              for dst, src, writable in oci_mounts(conf, worker)]
    cpu = memory = None
    reserved_cpu = worker.reserved_cpu(conf)
    if reserved_cpu is not None:  # createOciLinuxConfig: Cpu(0, quota, 100000, 0, 0, ...)
        numa = worker.numa_id is not None
        cpu = _present(("quota", reserved_cpu * 100000 // 100), ("period", 100000),
                       ("cpus", ",".join(map(str, worker.numa_cores)) if numa else None),
                       ("mems", worker.numa_id if numa else None))
    memory_mb = worker.reserved_memory_mb(conf)
    if memory_mb is not None:
        memory = (("limit", memory_mb * 1024 * 1024),)
    resources = _present(("memory", memory), ("cpu", cpu))
    linux = _present(("cgroupsPath", conf.cgroup_parent() + "/" + worker.container_id),
                     ("resources", resources),
                     ("seccomp", RawJson(seccomp) if seccomp is not None else None))
    process = _present(("cwd", workdir), ("env", env), ("args", args))
    document = _present(
        ("version", "0.1"),
        ("username", worker.user),
        ("containerId", worker.container_id),
        ("pidFile", oci_pid_file(conf, wid)),
        ("containerScriptPath", script_path(workdir)),
        ("layers", [(("mediaType", "application/vnd.squashfs"), ("path", path))
                    for path in layer_paths]),
        ("reapLayerKeepCount", conf.layers_to_keep()),
        ("ociRuntimeConfig", _present(("mounts", mounts), ("process", process),
                                      ("linux", linux))),
    )
    return jackson(document).encode("utf-8")


def runc_yaml(image: str, config_hash: str, config_path: str) -> str:
    """RuncLibContainerManager.saveRuncYaml: <artifacts>/runc-<cid>.yaml (SnakeYAML block
    style). Best effort for plain scalars."""
    data = JavaHashMap([("imageName", image), ("manifest", config_hash),
                        ("configPath", config_path)])
    return "".join(f"{key}: {value}\n" for key, value in data.items())


# --- profiling (BasicContainer.mkProfileCommand, *.runProfilingCommand) ------------------

PROFILE_ACTIONS = {  # ProfileAction -> (argument, takes the target dir)
    "JMAP_DUMP": ("jmap", True), "JSTACK_DUMP": ("jstack", True),
    "JPROFILE_DUMP": ("dump", True), "JVM_RESTART": ("kill", False),
    "JPROFILE_START": ("start", False), "JPROFILE_STOP": ("stop", True),
}


def profile_command(pid: str, action: str, target_dir: str, profile_cmd: str = "") -> str:
    """BasicContainer.mkProfileCommand joined with StringUtils.join(command, " ") by
    DockerManager/RuncLibContainerManager.runProfilingCommand. Under a container manager
    profileCmd is "", so the line starts with a space. `action` is the flight.bash verb
    (jstack, jmap, dump, stop: with the target dir; start, kill: without)."""
    with_dir = {"jstack": True, "jmap": True, "dump": True, "stop": True,
                "start": False, "kill": False}[action]
    parts = [profile_cmd, pid, action] + ([target_dir] if with_dir else [])
    return " ".join(parts)


def profile_file(conf: StormConf, worker: Worker) -> str:
    """writeToCommandFile(targetDir, args, "profile"): <artifacts>/<topo>/<port>/profile.sh."""
    return command_file_path(conf.artifacts_dir(worker.topology_id, worker.port), "profile")


# --- the launcher calls, one function per call site; cwd None = the supervisor's own cwd ---


def run_oci_container_call(conf: StormConf, worker: Worker) -> Op:
    """RuncLibContainerManager.launchWorkerProcess: processLauncherAndWait in the workdir,
    with topEnvironment (topology.environment + LD_LIBRARY_PATH) added to the environment;
    the third argument is the artifacts symlink (ConfigUtils.workerArtifactsSymlink)."""
    workdir = java_file(conf.worker_root(worker.worker_id))
    return launcher_op(worker.user, "run-oci-container", workdir,
                       java_file(workdir + SEP + "oci-config.json"),
                       conf.worker_artifacts_symlink(worker.worker_id), cwd=workdir,
                       env=worker.environment(conf).items(),
                       why="RuncLibContainerManager.launchWorkerProcess")


def profile_oci_call(conf: StormConf, worker: Worker, host_pid) -> Op:
    """RuncLibContainerManager.runProfilingCommand: the host pid from the runc pid file,
    in the artifacts dir, with the topology's environment."""
    artifacts = conf.artifacts_dir(worker.topology_id, worker.port)
    return launcher_op(worker.user, "profile-oci-container", host_pid,
                       profile_file(conf, worker), cwd=artifacts, env=list(worker.topology_env),
                       why="RuncLibContainerManager.runProfilingCommand")


def signal_call(worker: Worker, host_pid, signal: int) -> Op:
    """RuncLibContainerManager.kill (15) and forceKill (9): processLauncherAndWait, no dir."""
    why = "RuncLibContainerManager." + ("kill" if signal == 15 else "forceKill")
    return launcher_op(worker.user, "signal", host_pid, signal, why=why)


def reap_call(conf: StormConf, worker: Worker) -> Op:
    """RuncLibContainerManager.cleanup: reap-oci-container <port>-<wid> <layersToKeep>."""
    return launcher_op(worker.user, "reap-oci-container", worker.container_id,
                       conf.layers_to_keep(), why="RuncLibContainerManager.cleanup")


def docker_launch_call(conf: StormConf, worker: Worker) -> Op:
    """DockerManager.launchWorkerProcess: launch-docker-container in the workdir."""
    workdir = java_file(conf.worker_root(worker.worker_id))
    return launcher_op(worker.user, "launch-docker-container", workdir,
                       command_file_path(workdir, "docker-run"), cwd=workdir,
                       why="DockerManager.launchWorkerProcess")


DOCKER_TAGS = {  # tag -> (command file content, call site)
    "docker-wait": (docker_wait, "DockerManager.launchWorkerProcess (DockerWait_SLOT_<port>)"),
    "docker-ps": (docker_ps, "DockerManager.areAllProcessesDead"),
    "docker-stop": (docker_stop, "DockerManager.kill"),
    "docker-rm": (docker_rm, "DockerManager.kill"),
    "docker-force-rm": (lambda wid: docker_rm(wid, force=True), "DockerManager.forceKill"),
}


def docker_cmd_call(conf: StormConf, worker: Worker, tag: str) -> Op:
    """run-docker-cmd <workers/<id>> <workers/<id>>/<tag>.sh in the workdir; the file's
    content is docker_command(worker, tag)."""
    workdir = conf.worker_root(worker.worker_id)
    return launcher_op(worker.user, "run-docker-cmd", workdir, command_file_path(workdir, tag),
                       cwd=workdir, why=DOCKER_TAGS[tag][1])


def docker_command(worker: Worker, tag: str) -> str:
    return DOCKER_TAGS[tag][0](worker.worker_id)


def profile_docker_call(conf: StormConf, worker: Worker) -> Op:
    """DockerManager.runProfilingCommand: the worker id, in the artifacts dir."""
    artifacts = conf.artifacts_dir(worker.topology_id, worker.port)
    return launcher_op(worker.user, "profile-docker-container", worker.worker_id,
                       profile_file(conf, worker), cwd=artifacts, env=list(worker.topology_env),
                       why="DockerManager.runProfilingCommand")


def cleanup_rmrs(conf: StormConf, worker: Worker, supervisor_user: str) -> list:
    """Container.cleanUpForRestart: rmr heartbeats, pids, tmp, the worker root as the
    worker's user (each only if it exists), then deleteSavedWorkerUser: rmr of
    workers-users/<id> as the file's owner, the supervisor account."""
    wid = worker.worker_id
    ops = [launcher_op(worker.user, "rmr", path, why="Container.cleanUpForRestart")
           for path in (conf.worker_heartbeats_root(wid), conf.worker_pids_root(wid),
                        conf.worker_tmp_root(wid), conf.worker_root(wid))]
    ops.append(launcher_op(supervisor_user, "rmr", conf.worker_user_file(wid),
                           why="Container.deleteSavedWorkerUser"))
    return ops


# --- one worker's life: the launcher calls in the supervisor's order (E7) ----------------


def oci_lifetime(conf: StormConf, worker: Worker, supervisor_user: str, host_pid) -> list:
    """Slot's order for RuncLibContainerManager, for a new artifacts dir and a worker that
    needs the SIGKILL: artifacts-dir, run-oci-container, profile (jstack), signal 15,
    signal 9, reap-oci-container, the rmr's of cleanUpForRestart."""
    setup = [op for op in container_setup(conf, worker) if op.kind == "launcher"]
    return setup + [run_oci_container_call(conf, worker), profile_oci_call(conf, worker, host_pid),
                    signal_call(worker, host_pid, 15), signal_call(worker, host_pid, 9),
                    reap_call(conf, worker)] + cleanup_rmrs(conf, worker, supervisor_user)


def docker_lifetime(conf: StormConf, worker: Worker, supervisor_user: str,
                    force_kill: bool = False) -> list:
    """Slot's order for DockerManager: artifacts-dir, launch, wait (async), profile
    (jstack), ps, stop, rm, ps [rm --force, ps], ps, the rmr's."""
    setup = [op for op in container_setup(conf, worker) if op.kind == "launcher"]
    ops = setup + [docker_launch_call(conf, worker), docker_cmd_call(conf, worker, "docker-wait"),
                   profile_docker_call(conf, worker)]
    tags = ["docker-ps", "docker-stop", "docker-rm", "docker-ps"]
    if force_kill:
        tags += ["docker-force-rm", "docker-ps"]
    tags.append("docker-ps")
    ops += [docker_cmd_call(conf, worker, tag) for tag in tags]
    return ops + cleanup_rmrs(conf, worker, supervisor_user)
