"""A Storm node for the lifecycle replay (tests/storm): the supervisor's directories, its
storm.yaml (also the launcher's policy, when the variant has one), the image as Storm's
localizer leaves it, and the supervisor itself: file operations done as the supervisor
account with its umask, launcher calls with Storm's argv, cwd and environment, stdout and
stderr merged into one stream as ProcessBuilder.redirectErrorStream(true) does.

Requests come from support.stormreq (byte-exact generators); what each step does to the
system is observed here (cgroups, /proc, mounts, loop devices, runc, docker).
"""

from __future__ import annotations

import hashlib
import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import yaml

from support import stormreq as req
from support.env import SUPERVISOR, USER, gid_of_group, uid_of
from support.oci import loops_backed_by, mounted_under, runc_binary
from support.rootfs import APPLETS, make_rootfs

TOPOLOGY = "wordcount-7-1700000123"
IMAGE = "wl-tests/storm-replay:1"
IMAGE_ENV = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]
# topology.environment: a value that only arrives intact if writeScript's quoting is right
TOPOLOGY_ENV = [("WL_NOTE", "it's \"quoted\" $HOME `id` \\ end")]
SUPERVISOR_ENV = {  # the supervisor daemon's own environment, handed down whole by Storm
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG": "C.UTF-8", "HOME": "/nonexistent", "USER": SUPERVISOR, "LOGNAME": SUPERVISOR,
    "JAVA_HOME": "/usr/lib/jvm/java-17-openjdk-amd64",
}
REPLAY_APPLETS = tuple(APPLETS) + ("mv", "rmdir", "printf", "sed")

# --- the worker and the profiler (busybox sh) ---------------------------------------------

# What both report about the process they run in.
PROBE = r'''
probe() {
  echo "uid $(id -u) $(id -ru)"
  echo "gids $(id -G)"
  echo "umask $(umask)"
  for ns in mnt pid net ipc uts; do echo "ns-$ns $(readlink /proc/self/ns/$ns)"; done
  while read -r key value rest; do
    case "$key" in
      Seccomp:|NoNewPrivs:|CapEff:|CapPrm:|CapBnd:) echo "status-${key%:} $value" ;;
    esac
  done < /proc/self/status
  while read -r line; do echo "cgroup $line"; done < /proc/self/cgroup
  if mkdir /tmp/seccomp-probe-$$ 2> /dev/null; then
    echo "mkdir allowed"; rmdir /tmp/seccomp-probe-$$
  else
    echo "mkdir denied: $(mkdir /tmp/seccomp-probe-$$ 2>&1)"
  fi
}
'''

# The worker's "java command": sh -c WORKER <name> <artifacts dir> <on-term> <shared dir>
# <worker id>. Like Storm's worker it writes its pid (in its own pid namespace) to
# <artifacts>/worker.pid; its reports are named by worker id (the artifacts dir is the
# port's, shared by the workers that run there one after the other).
WORKER = PROBE + r'''
A="$1"; on_term="$2"; shared="$3"; wid="$4"
if [ "$on_term" = exit ]; then
  trap 'echo TERM >> "$A/signals-$wid.txt"; exit 143' TERM
else
  trap 'echo TERM >> "$A/signals-$wid.txt"' TERM
fi
printf %s $$ > "$A/worker.pid"
{
  probe
  echo "cwd $(pwd)"
  echo "env-ld $LD_LIBRARY_PATH"
  echo "env-note $WL_NOTE"
  echo "image $(cat /etc/wl-image)"
  if touch /rootfs-probe 2> /dev/null; then echo "root writable"; else echo "root read-only"; fi
  echo tmp > /tmp/worker-tmp-probe && echo "tmp writable"
  echo hb > heartbeats/worker-probe && echo "workdir writable"
  echo shared > "$shared/worker-probe" && echo "shared writable"
} > "$A/probe-$wid.tmp" 2>&1
cat /proc/self/mountinfo > "$A/mountinfo-$wid.txt"
mv "$A/probe-$wid.tmp" "$A/probe-$wid.txt"
while :; do sleep 1; done
'''

# worker.profiler.script.path: Storm's flight.bash interface (<pid> <action> [<dir>]).
PROFILER = "#!/bin/sh\n" + PROBE + r'''
pid="$1"; action="$2"; dir="$3"
run=$(cat /proc/sys/kernel/random/uuid)  # flight.bash names its output with a timestamp
case "$action" in
  jstack|jmap|dump|stop) out="$dir/$action-$pid-$run.txt" ;;
  *) out="/tmp/profiler-$action-$pid-$run.txt" ;;
esac
{
  echo "argc $#"
  echo "args $*"
  probe
  if [ -d "/proc/$pid" ]; then echo "target alive"; else echo "target missing"; fi
} > "$out.tmp" 2>&1
mv "$out.tmp" "$out"
'''


def seccomp_profile_text() -> str:
    """An operator's profile in the OCI/docker format, pretty-printed as people write them:
    an allowlist of every system call of this architecture except mkdir and mkdirat, so
    `mkdir` fails with EPERM (SCMP_ACT_ERRNO's default) and nothing else changes."""
    names = sorted(set(_syscall_names()) - {"mkdir", "mkdirat"})
    profile = {"defaultAction": "SCMP_ACT_ERRNO",
               "syscalls": [{"names": names, "action": "SCMP_ACT_ALLOW"}]}
    return json.dumps(profile, indent=2) + "\n"


def _syscall_names() -> list:
    headers = sorted(Path("/usr/include").glob("*/asm/unistd_64.h"))
    headers += [Path("/usr/include/asm/unistd_64.h"), Path("/usr/include/asm-generic/unistd.h")]
    for header in headers:
        if header.exists():
            names = [line.split()[1][len("__NR_"):] for line in header.read_text().splitlines()
                     if line.startswith("#define __NR_") and len(line.split()) >= 3
                     and line.split()[2].isdigit()]
            if len(names) > 200:
                return names
    raise RuntimeError("no asm/unistd_64.h to list the system calls (install linux-libc-dev)")


# --- the image, as Storm's localizer leaves it -------------------------------------------


class Image:
    """Squashfs layers (base first) and the image config, built once; `docker import` of the
    same tree for the docker runtime."""

    def __init__(self, directory: Path):
        self.layers = []  # (hash, path of the built .sqsh)
        for index, files in enumerate(({"etc/wl-image": "layer 0\n"},
                                       {"etc/wl-image": "layer 1\n", "etc/wl-top": "1\n"})):
            tree = directory / f"tree{index}"
            tree.mkdir(mode=0o755)
            if index == 0:
                make_rootfs(tree, REPLAY_APPLETS)
            for name, text in files.items():
                (tree / name).parent.mkdir(parents=True, exist_ok=True)
                (tree / name).write_text(text)
            built = directory / f"layer{index}.sqsh"
            subprocess.run(["mksquashfs", str(tree), str(built), "-quiet", "-noappend",
                            "-all-root"], check=True, capture_output=True)
            if index == 0:
                self.tree = tree
            else:
                shutil.rmtree(tree)
            self.layers.append((hashlib.sha256(built.read_bytes()).hexdigest(), built))
        self.config = json.dumps({"architecture": "amd64", "os": "linux",
                                  "config": {"Env": IMAGE_ENV, "Entrypoint": None}}).encode()
        self.config_hash = hashlib.sha256(self.config).hexdigest()

    def docker_import(self, docker) -> str:
        """The same root for docker (imported afresh: the tag always has this session's
        tree): busybox, /etc/wl-image as the top layer says."""
        (self.tree / "etc" / "wl-image").write_text("layer 1\n")
        tar = subprocess.run(["tar", "-C", str(self.tree), "-c", "."], check=True,
                             capture_output=True).stdout
        docker("import", "-", IMAGE, input=tar, text=False)
        return IMAGE


# --- one node ------------------------------------------------------------------------------


class Variant:
    """What a replay exercises: the runtime, a policy file or not, memory enforcement and a
    seccomp profile, storm.oci.layer.mounts.to.keep, a custom OCI resources dir, the
    cgroup parent as written in storm.yaml, the umask the supervisor daemon inherited
    (Storm sets none; run-as-user needs directories the users can search, e.g. 022: with
    027 a worker cannot reach its own artifacts dir or topology jar, whatever launcher)."""

    def __init__(self, name, runtime, policy, memory, seccomp, keep=100, resources_dir=False,
                 cgroup_parent="/wltest-storm", umask=0o022):
        self.name, self.runtime, self.policy = name, runtime, policy
        self.memory, self.seccomp, self.keep = memory, seccomp, keep
        self.resources_dir, self.cgroup_parent = resources_dir, cgroup_parent
        self.umask = umask

    def __repr__(self):
        return self.name


class Node:
    """storm.home (root's: bin/profiler.sh, conf/seccomp.json), storm.log.dir (the
    supervisor's), storm.local.dir (the supervisor's), the nscd dir, the layer store, the
    storm.yaml, and worker-launcher.cfg naming the profiler and (variant) the policy."""

    def __init__(self, launcher, variant: Variant, image: Image):
        self.launcher, self.variant, self.image = launcher, variant, image
        self.base = Path(tempfile.mkdtemp(prefix="storm-replay-", dir=launcher.prefix))
        os.chmod(self.base, 0o755)
        self.home = self.base / "home"
        self.log_dir = self.home / "logs"
        self.local = self.base / "local"
        self.nscd = self.base / "nscd"
        self.etc = self.home / "conf"
        for path in (self.home, self.home / "bin", self.etc, self.nscd):
            path.mkdir(mode=0o755, parents=True)
        for path in (self.log_dir, self.local):
            path.mkdir(mode=0o755)
            os.chown(path, uid_of(SUPERVISOR), gid_of_group())
        self.profiler = self.home / "bin" / "profiler.sh"
        self.profiler.write_text(PROFILER)
        os.chmod(self.profiler, 0o755)
        self.seccomp_file = self.etc / "seccomp.json"
        self.seccomp_text = seccomp_profile_text()
        self.seccomp_file.write_text(self.seccomp_text)
        os.chmod(self.seccomp_file, 0o644)
        settings = {
            "storm.local.dir": str(self.local),
            "storm.log.dir": str(self.log_dir),
            "storm.workers.artifacts.dir": "workers-artifacts",
            "storm.home": str(self.home),
            "supervisor.run.worker.as.user": True,
            "storm.resource.isolation.plugin.enable": True,
            "storm.resource.isolation.plugin": (
                "org.apache.storm.container.oci.RuncLibContainerManager"
                if variant.runtime == "oci" else "org.apache.storm.container.docker.DockerManager"),
            "storm.oci.cgroup.parent": variant.cgroup_parent,
            "storm.oci.nscd.dir": str(self.nscd),
            "storm.oci.allowed.images": [IMAGE],
            "storm.oci.layer.mounts.to.keep": variant.keep,
            "storm.cgroup.memory.enforcement.enable": variant.memory,
            "supervisor.worker.shutdown.sleep.secs": 1,
            "storm.oci.image.tag.to.manifest.plugin":
                "org.apache.storm.container.oci.LocalOrHdfsImageTagToManifestPlugin",
            "storm.oci.manifest.to.resources.plugin":
                "org.apache.storm.container.oci.HdfsManifestToResourcesPlugin",
            "storm.oci.resources.localizer":
                "org.apache.storm.container.oci.HdfsOciResourcesLocalizer",
        }
        if variant.seccomp:
            settings["storm.oci.seccomp.profile"] = str(self.seccomp_file)
        if variant.resources_dir:
            settings["storm.oci.resources.local.dir"] = str(self.base / "oci-resources")
        self.settings = settings
        self.conf = req.StormConf({k: v for k, v in settings.items() if k != "storm.home"},
                                  storm_home=str(self.home), log_dir=str(self.log_dir))
        self.policy_file = launcher.conf.parent / "storm.yaml"
        config = {"worker.profiler.script.path": str(self.profiler)}
        if variant.policy:  # a root-owned copy of storm.yaml
            self.policy_file.write_text(yaml.safe_dump(settings, default_flow_style=False))
            os.chmod(self.policy_file, 0o644)
            config["worker.launcher.policy"] = str(self.policy_file)
        launcher.write_config(config)
        self.supervisor = Supervisor(launcher, cwd=str(self.home), umask=variant.umask)
        self.layer_paths = []
        if variant.resources_dir:  # an operator's directory for the localizer
            resources = self.base / "oci-resources"
            resources.mkdir(mode=0o755)
            os.chown(resources, uid_of(SUPERVISOR), gid_of_group())
        if variant.runtime == "oci":
            try:
                self._localize_image()
            except BaseException:
                self.close()
                raise

    def _localize_image(self) -> None:
        """HdfsOciResourcesLocalizer: <dir>/layers/<hash>.sqsh and <dir>/config/<hash>,
        copied by the supervisor and made world-readable (0644)."""
        conf = self.conf
        ops = [req.Op("mkdirs", str(Path(conf.layer_path("x")).parent)),
               req.Op("mkdirs", str(Path(conf.image_config_path("x")).parent))]
        for layer_hash, built in self.image.layers:
            self.layer_paths.append(conf.layer_path(layer_hash))
            ops.append(req.Op("write", self.layer_paths[-1], built.read_bytes()))
        config_path = conf.image_config_path(self.image.config_hash)
        ops.append(req.Op("write", config_path, self.image.config))
        self.supervisor.files(ops)
        for path in self.layer_paths + [conf.image_config_path(self.image.config_hash)]:
            os.chmod(path, 0o644)

    def close(self) -> None:
        self.policy_file.unlink(missing_ok=True)
        self.launcher.write_config()
        for point in reversed(mounted_under(self.base)):
            subprocess.run(["umount", "-l", point], capture_output=True)
        subprocess.run(["rm", "-rf", "--one-file-system", str(self.base)], capture_output=True)


# --- the supervisor --------------------------------------------------------------------------

_FILE_OPS = r'''
import json, os, sys
results = []
for op in json.load(sys.stdin):
    kind, path = op["kind"], op["path"]
    try:
        if kind == "mkdirs":  # commons-io FileUtils.forceMkdir
            os.makedirs(path, exist_ok=True)
        elif kind == "write":  # FileWriter: create or truncate, 0666 & ~umask
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
            os.write(fd, bytes.fromhex(op["data"]))
            os.close(fd)
        elif kind == "symlink":  # AdvancedFSOps.createSymlink: absolute target
            if os.path.exists(path) and os.path.samefile(path, op["target"]):
                pass
            else:
                if os.path.lexists(path):
                    os.unlink(path)
                os.symlink(op["target"], path)
        elif kind == "read":
            with open(path, "rb") as handle:
                results.append(handle.read().hex())
        elif kind == "exists":  # Utils.checkFileExists / File.exists: follows symlinks
            results.append(os.path.exists(path))
        elif kind == "delete":  # Utils.forceDelete, the supervisor's own fallback
            if os.path.isdir(path) and not os.path.islink(path):
                import shutil
                shutil.rmtree(path)
            elif os.path.lexists(path):
                os.unlink(path)
    except OSError as err:
        print(json.dumps({"op": kind, "path": path, "error": str(err)}))
        sys.exit(1)
print(json.dumps(results))
'''


class SupervisorError(AssertionError):
    pass


class Step:
    """One launcher call: argv after the launcher path, cwd, exit code, merged output."""

    def __init__(self, op: req.Op, cwd: str, code=None, output: str = ""):
        self.op, self.cwd, self.code, self.output = op, cwd, code, output

    def __str__(self):
        first = self.output.strip().splitlines()[-1:] or [""]
        return (f"[{self.op.why}] worker-launcher {' '.join(self.op.argv)} (cwd {self.cwd}) "
                f"-> exit {self.code}: {first[0][:300]}")


class Supervisor:
    """The supervisor account (wlsuper) with its daemon's umask: file operations and
    launcher calls."""

    def __init__(self, launcher, cwd: str, umask: int = 0o022):
        self.launcher, self.cwd, self.umask = launcher, cwd, umask
        entry = pwd.getpwnam(SUPERVISOR)
        self.uid, self.gid = entry.pw_uid, entry.pw_gid
        self.groups = os.getgrouplist(SUPERVISOR, entry.pw_gid)
        self.steps = []

    def _as_supervisor(self):
        return {"user": self.uid, "group": self.gid, "extra_groups": self.groups,
                "umask": self.umask}

    def files(self, ops) -> list:
        payload = [{"kind": op.kind, "path": op.path, "target": op.data if op.kind == "symlink"
                    else None, "data": (op.data.encode() if isinstance(op.data, str)
                                        else op.data or b"").hex()} for op in ops]
        result = subprocess.run([sys.executable, "-I", "-c", _FILE_OPS],
                                input=json.dumps(payload), capture_output=True, text=True,
                                cwd="/", timeout=60, **self._as_supervisor())
        if result.returncode != 0:
            raise SupervisorError(f"the supervisor account could not do {result.stdout.strip()}"
                                  f"{result.stderr.strip()}")
        return json.loads(result.stdout)

    def read(self, path: str) -> bytes:
        return bytes.fromhex(self.files([req.Op("read", path)])[0])

    def exists(self, path: str) -> bool:
        return self.files([req.Op("exists", path)])[0]

    def _popen_args(self, op: req.Op):
        env = dict(SUPERVISOR_ENV)
        env.update(op.env or [])
        cwd = op.cwd or self.cwd
        argv = [str(self.launcher.binary), *op.argv]
        return argv, dict(env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          stdin=subprocess.DEVNULL, text=True, **self._as_supervisor())

    def call(self, op: req.Op, timeout: float = 120) -> Step:
        """ClientSupervisorUtils.processLauncherAndWait: run, wait, exit code."""
        argv, kwargs = self._popen_args(op)
        step = Step(op, kwargs["cwd"])
        try:
            result = subprocess.run(argv, timeout=timeout, **kwargs)
            step.code, step.output = result.returncode, result.stdout
        except subprocess.TimeoutExpired as err:
            step.code, step.output = "timeout", str(err.output or "")
        self.steps.append(step)
        return step

    def start(self, op: req.Op) -> "Background":
        """ClientSupervisorUtils.processLauncher with an exit callback (docker wait)."""
        argv, kwargs = self._popen_args(op)
        step = Step(op, kwargs["cwd"])
        self.steps.append(step)
        return Background(subprocess.Popen(argv, **kwargs), step)

    def journal(self) -> str:
        return "\n".join(f"  {index:2}. {step}" for index, step in enumerate(self.steps, 1))


class Background:
    def __init__(self, process, step):
        self.process, self.step = process, step

    def wait(self, timeout: float) -> Step:
        try:
            out, _ = self.process.communicate(timeout=timeout)
            self.step.code, self.step.output = self.process.returncode, out
        except subprocess.TimeoutExpired:
            self.step.code = "still running"
        return self.step

    def kill(self) -> None:
        """Stop waiting: kill the launcher and close our end of its output (a docker it
        started may hold the pipe until its container ends)."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)
        self.process.stdout.close()


class Findings:
    """Every step's check: a failed one is recorded and the replay goes on where the next
    steps still mean something; the test fails at the end listing all of them."""

    def __init__(self, supervisor: Supervisor):
        self.supervisor = supervisor
        self.problems = []

    def check(self, ok: bool, what: str, detail=None) -> bool:
        if not ok:
            self.problems.append(what + ("" if detail is None else f": {detail!s}"))
        return bool(ok)

    def step(self, step: Step, want=0) -> bool:
        return self.check(step.code == want, f"step failed (want exit {want})", str(step))

    def report(self) -> str:
        return ("Storm replay problems:\n" + "\n".join(f"- {p}" for p in self.problems)
                + "\nlauncher calls:\n" + self.supervisor.journal())


# --- observing the system ------------------------------------------------------------------


def status_fields(pid) -> dict:
    text = Path(f"/proc/{pid}/status").read_text()
    return {k: v.split() for k, v in (line.split(":", 1) for line in text.splitlines())}


def alive(pid) -> bool:
    """ServerUtils.isAnyPosixProcessPidDirAlive for one pid: /proc/<pid> exists and is the
    user's (a zombie counts as alive, as it does for Storm)."""
    try:
        return os.stat(f"/proc/{pid}").st_uid == uid_of(USER)
    except FileNotFoundError:
        return False


def _cgroup_mounts() -> list:
    """(mount point, fstype, controllers) of the host's cgroup file systems."""
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        fstype, _, options = right.split(" ")[:3]
        point = left.split(" ")[4]
        if fstype in ("cgroup", "cgroup2") and point.startswith("/sys/fs/cgroup"):
            found.append((point, fstype, set(options.split(","))))
    return found


def cgroup_dir(pid, controller: str) -> Path | None:
    """The host directory of `pid`'s cgroup for `controller` (v1), or its v2 cgroup."""
    lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    for line in lines:
        number, names, path = line.split(":", 2)
        if controller in names.split(","):
            for point, fstype, options in _cgroup_mounts():
                if fstype == "cgroup" and controller in options:
                    return Path(point + path)
    for line in lines:
        if line.startswith("0::"):
            for point, fstype, _ in _cgroup_mounts():
                if fstype == "cgroup2" and point == "/sys/fs/cgroup":
                    return Path(point + line[3:])
    return None


def cgroup_limits(pid) -> dict:
    """memory limit (bytes) and cpu quota/period of `pid`'s cgroups, v1 or v2."""
    memory, cpu = cgroup_dir(pid, "memory"), cgroup_dir(pid, "cpu")
    limits = {"memory_dir": memory, "cpu_dir": cpu}
    if memory and (memory / "memory.limit_in_bytes").exists():
        limits["memory"] = int((memory / "memory.limit_in_bytes").read_text())
    elif memory and (memory / "memory.max").exists():
        text = (memory / "memory.max").read_text().strip()
        limits["memory"] = None if text == "max" else int(text)
    if cpu and (cpu / "cpu.cfs_quota_us").exists():
        limits["quota"] = int((cpu / "cpu.cfs_quota_us").read_text())
        limits["period"] = int((cpu / "cpu.cfs_period_us").read_text())
    elif cpu and (cpu / "cpu.max").exists():
        quota, period = (cpu / "cpu.max").read_text().split()
        limits["quota"] = -1 if quota == "max" else int(quota)
        limits["period"] = int(period)
    return limits


def cgroup_dirs_named(relative: str) -> list:
    """Every host directory of the cgroup `relative` (e.g. /wltest-storm/<cid>) that exists."""
    return [Path(point + relative) for point, _, _ in _cgroup_mounts()
            if Path(point + relative).exists()]


def container_mounts(mountinfo_text: str) -> dict:
    """mount point -> per-mount options of a mountinfo dump (the last mount wins)."""
    points = {}
    for line in mountinfo_text.splitlines():
        fields = line.split(" ")
        if len(fields) > 5:
            points[fields[4]] = set(fields[5].split(","))
    return points


def key_values(text: str) -> dict:
    """'key rest' lines -> {key: rest}; repeated keys (cgroup) -> a list."""
    values = {}
    for line in text.splitlines():
        key, _, rest = line.partition(" ")
        if key == "cgroup":
            values.setdefault("cgroup", []).append(rest)
        else:
            values[key] = rest
    return values


def wait_for(predicate, timeout: float, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


def forced_cleanup(run_root: Path, layer_paths, container_ids=(), docker_names=(), docker=None,
                   cgroups=()) -> None:
    """After the assertions, whatever the launcher left behind goes, so a failed replay
    leaks nothing into the next test: runc containers, docker containers, mounts under
    the container's run directory and of our layers, loop devices, cgroup directories."""
    for cid in container_ids:
        subprocess.run([runc_binary(), "delete", "--force", cid], capture_output=True)
    if docker is not None:
        for name in docker_names:
            docker("rm", "--force", name, check=False)
    for cid in container_ids:
        for point in reversed(mounted_under(run_root / cid)):
            subprocess.run(["umount", "-l", point], capture_output=True)
    mine = [line.split(":", 1)[0] for line in loops_backed_by(layer_paths)]
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split(" ")
        source = line.partition(" - ")[2].split(" ")[1]
        if source in mine:
            subprocess.run(["umount", "-l", fields[4]], capture_output=True)
    for device in mine:
        subprocess.run(["losetup", "-d", device], capture_output=True)
    for relative in cgroups:
        for directory in sorted(cgroup_dirs_named(relative), reverse=True):
            try:
                directory.rmdir()
            except OSError:
                pass


# --- one worker's life, the steps both runtimes share ---------------------------------------


class Life:
    """A slot's workers on a fresh node: the localizer's and Container.setup's steps, the
    checks of what the worker and the profiler saw, cleanUpForRestart and the final
    "nothing left" checks. The runtime-specific steps are in tests/storm/test_*_lifetime.py."""

    def __init__(self, launcher, variant: Variant, image: Image, port: int):
        self.node = Node(launcher, variant, image)
        self.conf, self.supervisor = self.node.conf, self.node.supervisor
        self.findings = Findings(self.supervisor)
        self.port = port
        self.new_worker()

    def new_worker(self) -> None:
        """BasicContainer.createNewWorkerId: a new worker for the slot (a relaunch keeps the
        port, so the artifacts dir)."""
        self.worker = req.Worker(str(uuid.uuid4()), TOPOLOGY, self.port, USER, cpu=150.0,
                                 mem_on_heap=768, topology_env=TOPOLOGY_ENV, image=IMAGE)
        wid = self.worker.worker_id
        self.workdir = self.conf.worker_root(wid)
        self.artifacts = self.conf.artifacts_dir(TOPOLOGY, self.port)
        self.user_file = self.conf.worker_user_file(wid)
        self.shared = self.conf.shared_by_topology_dir(TOPOLOGY)
        self.stormdist = self.conf.stormdist_root(TOPOLOGY)

    # -- helpers
    def check(self, ok, what, detail=None):
        return self.findings.check(ok, what, detail)

    def call(self, op, want=0, **kwargs):
        step = self.supervisor.call(op, **kwargs)
        self.findings.step(step, want)
        return step

    def run_ops(self, ops) -> bool:
        """Carry out supervisor operations in order; launcher calls must exit 0."""
        ok = True
        batch = []
        for op in ops:
            if op.kind != "launcher":
                batch.append(op)
                continue
            if batch:
                self.supervisor.files(batch)
                batch = []
            ok = self.findings.step(self.supervisor.call(op)) and ok
        if batch:
            self.supervisor.files(batch)
        return ok

    def user_owned(self, path, mode=None) -> bool:
        st = os.lstat(path)
        good = st.st_uid == uid_of(USER) and st.st_gid == gid_of_group()
        return good and (mode is None or (st.st_mode & 0o7777) == mode)

    # -- before the container
    def localize_topology(self) -> None:
        """The topology's code, as LocallyCachedTopologyBlob commits it."""
        blobs = {"stormjar.jar": b"PK\x03\x04 not really a jar", "stormcode.ser": b"code",
                 "stormconf.ser": b"conf", "resources/Linux-amd64/libnative.so": b"\x7fELF"}
        ok = self.run_ops(req.localize_topology(self.conf, self.worker, blobs))
        if ok:
            self.check(self.user_owned(self.stormdist, 0o2570),
                       "code-dir: stormdist/<topo> is the user's, mode 02570",
                       oct(os.stat(self.stormdist).st_mode))
            self.check(self.user_owned(self.shared, 0o2770),
                       "artifacts-dir: shared_by_topology is the user's, mode 02770",
                       oct(os.stat(self.shared).st_mode))

    def container_setup(self) -> None:
        """Container.setup; `artifacts-dir` only if the port's artifacts dir is new."""
        exists = self.supervisor.exists(self.artifacts)
        ops = req.container_setup(self.conf, self.worker, artifacts_exist=exists)
        self.run_ops(ops)
        self.check(self.user_owned(self.artifacts, 0o2770),
                   "artifacts-dir: <artifacts>/<topo>/<port> is the user's, mode 02770")
        self.check(Path(self.user_file).read_bytes() == USER.encode(),
                   "workers-users/<id> holds the user name without newline")
        link = Path(self.conf.worker_artifacts_symlink(self.worker.worker_id))
        self.check(link.is_symlink() and os.readlink(link) == self.artifacts,
                   "workers/<id>/artifacts is an absolute symlink to the artifacts dir")

    def write_worker_script(self, on_term: str) -> str:
        """ServerUtils.writeScript(workerDir, command, topEnvironment, "0027")."""
        command = ["/bin/sh", "-c", WORKER, "storm-worker", self.artifacts, on_term, self.shared,
                   self.worker.worker_id]
        data = req.write_script(command, self.worker.environment(self.conf), "0027")
        path = req.script_path(req.java_file(self.workdir))
        self.supervisor.files([req.Op("write", path, data)])
        return path

    # -- the running worker
    def probe(self) -> dict:
        """What the worker wrote about itself (it renames probe.txt into place when done)."""
        path = Path(self.artifacts) / f"probe-{self.worker.worker_id}.txt"
        if not self.check(wait_for(path.exists, 20), "the worker wrote its probe",
                          f"{path} missing; {self.runtime_errors()}"):
            return {}
        return key_values(path.read_text())

    def runtime_errors(self) -> str:
        """What runc said about the container (runc-<cid>.err in the artifacts dir)."""
        err = Path(self.artifacts, f"runc-{self.worker.container_id}.err")
        text = err.read_text(errors="replace").strip() if err.exists() else "(no runc .err)"
        return f"runc-{self.worker.container_id}.err: {text[-500:]}"

    def check_identity(self, seen: dict, who: str) -> None:
        uid = uid_of(USER)
        want_groups = sorted(set(os.getgrouplist(USER, uid)))
        self.check(seen.get("uid") == f"{uid} {uid}", f"{who} runs as {USER}", seen.get("uid"))
        got = sorted(set(map(int, seen["gids"].split()))) if seen.get("gids") else None
        self.check(got == want_groups, f"{who} has the user's groups {want_groups}", got)
        self.check(seen.get("status-NoNewPrivs") == "1", f"{who} has no_new_privs",
                   seen.get("status-NoNewPrivs"))
        self.check(int(seen.get("status-CapEff", "1"), 16) == 0, f"{who} has no capabilities",
                   seen.get("status-CapEff"))
        if self.node.variant.seccomp:
            self.check(seen.get("status-Seccomp") == "2", f"{who} runs under seccomp (mode 2)",
                       seen.get("status-Seccomp"))
            self.check("Operation not permitted" in seen.get("mkdir", ""),
                       f"{who}: the profile denies mkdir with EPERM", seen.get("mkdir"))
        else:
            self.check(seen.get("mkdir") == "allowed", f"{who}: mkdir works without a profile",
                       seen.get("mkdir"))

    def check_worker(self, seen: dict, host_pid: int, cgroup: str | None) -> None:
        """The worker's own view, then the host's: uid, groups, umask, environment, image,
        seccomp, limits in its cgroup (v1 or v2, whichever this machine has)."""
        self.check_identity(seen, "the worker")
        self.check(seen.get("umask") == "0027", "the worker script's umask 0027", seen.get("umask"))
        self.check(seen.get("cwd") == req.java_file(self.workdir), "the worker runs in its workdir",
                   seen.get("cwd"))
        env = self.worker.environment(self.conf)
        self.check(seen.get("env-ld") == dict(env.items())["LD_LIBRARY_PATH"],
                   "LD_LIBRARY_PATH exported by the script", seen.get("env-ld"))
        self.check(seen.get("env-note") == dict(TOPOLOGY_ENV)["WL_NOTE"],
                   "topology.environment arrives intact through writeScript's quoting",
                   seen.get("env-note"))
        self.check(seen.get("image") == "layer 1", "the image's top layer wins", seen.get("image"))
        self.check(seen.get("root") == "read-only", "the container's root is read-only")
        for what in ("tmp", "workdir", "shared"):
            self.check(seen.get(what) == "writable", f"the worker can write its {what}",
                       seen.get(what))
        self.check(Path(self.conf.worker_tmp_root(self.worker.worker_id),
                        "worker-tmp-probe").exists(), "the container's /tmp is workers/<id>/tmp")
        status = status_fields(host_pid)
        self.check(status["Uid"] == [str(uid_of(USER))] * 4, "host: the worker's uids",
                   status["Uid"])
        if self.node.variant.seccomp:
            self.check(status["Seccomp"] == ["2"], "host: /proc/<pid>/status Seccomp 2",
                       status["Seccomp"])
        limits = cgroup_limits(host_pid)
        memory_mb = self.worker.reserved_memory_mb(self.conf)
        if memory_mb is not None:
            self.check(limits.get("memory") == memory_mb * 1024 * 1024,
                       f"memory limit {memory_mb} MB in the worker's cgroup", limits)
        quota = self.worker.reserved_cpu(self.conf) * 1000
        self.check((limits.get("quota"), limits.get("period")) == (quota, 100000),
                   f"cpu quota {quota}/100000 in the worker's cgroup", limits)
        if cgroup is not None:
            memory_dir = limits.get("memory_dir")
            self.check(memory_dir is not None and str(memory_dir).endswith(cgroup),
                       f"the worker's cgroup is {cgroup}", memory_dir)
        return limits

    def check_mounts(self, want: list) -> None:
        """Every bind Storm asked for, at its destination, read-only or read-write."""
        path = Path(self.artifacts) / f"mountinfo-{self.worker.worker_id}.txt"
        if not self.check(path.exists(), "the worker dumped its mountinfo"):
            return
        mounts = container_mounts(path.read_text())
        for destination, writable in want:
            options = mounts.get(destination)
            mode = "rw" if writable else "ro"
            self.check(options is not None and mode in options,
                       f"container mount {destination} ({mode})", options)

    # -- profiling
    def profile(self, make_call, action: str) -> None:
        """BasicContainer.runProfiling: the pid the worker wrote (read by the supervisor),
        the command file written into the artifacts dir, the launcher call; then what the
        profiler saw, compared with the worker."""
        pid_path = self.artifacts + "/worker.pid"
        if not self.check(self.supervisor.exists(pid_path), "BasicContainer.runProfiling reads "
                          "<artifacts>/worker.pid, written by the worker", pid_path):
            return
        pid = self.supervisor.read(pid_path).decode().strip()
        line = req.profile_command(pid, action, self.artifacts)
        self.supervisor.files([req.Op("write", req.profile_file(self.conf, self.worker), line)])
        if action == "start":
            where, pattern = Path(self.workdir, "tmp"), f"profiler-start-{pid}-*.txt"
        else:
            where, pattern = Path(self.artifacts), f"{action}-{pid}-*.txt"
        before = set(where.glob(pattern))
        step = self.call(make_call())
        if step.code != 0:
            return
        new = wait_for(lambda: sorted(set(where.glob(pattern)) - before), 10)
        if not self.check(len(new) == 1, f"profiler {action} wrote {where}/{pattern}", new):
            return
        out = new[0]
        seen = key_values(out.read_text())
        worker = self.probe()
        want_args = line.split()
        self.check(seen.get("args") == " ".join(want_args) and seen.get("argc") == str(
            len(want_args)), f"profiler {action} got the command file's arguments",
            (seen.get("argc"), seen.get("args")))
        self.check_identity(seen, f"profiler {action}")
        self.check(seen.get("umask") == "0027", f"profiler {action} umask 0027", seen.get("umask"))
        self.check(seen.get("target") == "alive", f"profiler {action} sees the worker's pid {pid}")
        for ns in ("mnt", "pid", "net", "ipc", "uts"):
            self.check(seen.get(f"ns-{ns}") == worker.get(f"ns-{ns}"),
                       f"profiler {action} is in the worker's {ns} namespace",
                       (seen.get(f"ns-{ns}"), worker.get(f"ns-{ns}")))
        self.check(seen.get("cgroup") == worker.get("cgroup"),
                   f"profiler {action} is in the worker's cgroups",
                   (seen.get("cgroup"), worker.get("cgroup")))
        st = os.stat(out)  # in the artifacts dir the setgid group; in /tmp the user's own
        self.check(st.st_uid == uid_of(USER) and st.st_mode & 0o777 == 0o640
                   and (action == "start" or st.st_gid == gid_of_group()),
                   f"profiler {action} output is the user's, 0640", (st.st_uid, st.st_gid,
                                                                     oct(st.st_mode)))

    # -- after the container
    def cleanup_rmrs(self) -> None:
        """Container.cleanUpForRestart + deleteSavedWorkerUser, with deleteIfExists'
        semantics: only existing paths are sent; what rmr leaves is a finding."""
        for op in req.cleanup_rmrs(self.conf, self.worker, SUPERVISOR):
            path = op.argv[-1]
            if not self.supervisor.exists(path):
                continue
            self.call(op)
            if self.supervisor.exists(path) or os.path.lexists(path):
                self.check(False, f"rmr left {path}")
                try:  # AdvancedRunAsUserFSOps.deleteIfExists' fallback: Utils.forceDelete
                    self.supervisor.files([req.Op("delete", path)])
                except SupervisorError as err:
                    self.check(False, "Storm's own forceDelete fails too (RuntimeException "
                                      f"'{path} was not deleted.')", err)

    def check_nothing_left(self, relative_cgroup: str | None) -> None:
        self.check(not os.path.lexists(self.workdir), "workers/<id> is gone")
        self.check(not os.path.lexists(self.user_file), "workers-users/<id> is gone")
        self.check(Path(self.artifacts, "worker.yaml").exists(),
                   "the artifacts dir (logs) stays, the symlink was not followed")
        self.check(Path(self.stormdist, "resources", "Linux-amd64", "libnative.so").exists(),
                   "the topology's resources stay, the resources link was not followed")
        if relative_cgroup:
            self.check(cgroup_dirs_named(relative_cgroup) == [],
                       f"the cgroup {relative_cgroup} is gone", cgroup_dirs_named(relative_cgroup))

    def close(self) -> None:
        self.node.close()

    def finish(self) -> None:
        if self.findings.problems:
            import pytest

            pytest.fail(self.findings.report(), pytrace=False)
