"""OCI test set-up: a 3-layer busybox squashfs image localised into Storm's layer store,
Storm's worker layout (Container.setup), oci-config.json written byte for byte as
RuncLibContainerManager writes it (storm-facts E5), and clean-up that leaves nothing behind.

Storm's side, cited (storm-server/src/main/java/org/apache/storm/ at 73da988d):
- daemon/supervisor/Container.setup: workers/<id>/{pids,tmp,heartbeats}; the artifacts dir
  <artifacts root>/<topology id>/<port> (handed to the user by `artifacts-dir`);
  workers-users/<id> (the user name, no newline); the symlink workers/<id>/artifacts ->
  the artifacts dir, absolute (createArtifactsLink, AdvancedFSOps.createSymlink).
- container/oci/RuncLibContainerManager.launchWorkerProcess: the request below, written to
  workers/<id>/oci-config.json by writeOciExecutorConfigToJsonFile (new ObjectMapper()),
  then `run-oci-container <workdir> <workdir>/oci-config.json <workdir>/artifacts`.
- .setContainerMounts: the bind mounts, in this order.
- external/storm-hdfs-oci/.../HdfsOciResourcesLocalizer: layers in
  <storm.local.dir>/supervisor/oci-resources/layers/<hash>.sqsh, world-readable.
"""

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

from support.rootfs import busybox_available
from support.env import require
from support.env import SUPERVISOR, USER, gid_of_group, uid_of
from support.rootfs import make_rootfs

LAYER_MARK = "/etc/wl-layer"
CGROUP_PARENT = "/wltest-storm"
TOPOLOGY = "topo-1-1700000000"
E5_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
SQUASHFS = "application/vnd.squashfs"


def runc_binary() -> str:
    return shutil.which("runc") or "/usr/sbin/runc"


def build_image(directory: Path, layer_count: int = 3) -> list:
    """Squashfs layers, bottom first: a busybox root, then layers that each rewrite
    /etc/wl-layer (the top one must win) and add a file of their own."""
    layers = []
    for index in range(layer_count):
        tree = directory / f"tree{index}"
        tree.mkdir(mode=0o755)
        if index == 0:
            make_rootfs(tree)
        (tree / "etc").mkdir(mode=0o755, exist_ok=True)
        (tree / "etc" / "wl-layer").write_text(f"layer {index}\n")
        (tree / "etc" / f"only-in-{index}").write_text(f"{index}\n")
        os.chmod(tree, 0o755)
        image = directory / f"layer{index}.sqsh"
        subprocess.run(["mksquashfs", str(tree), str(image), "-quiet", "-noappend",
                        "-all-root"], check=True, capture_output=True)
        os.chmod(image, 0o644)
        shutil.rmtree(tree)
        layers.append(image)
    return layers


# --- Storm's request, byte for byte ----------------------------------------------------------
def bind(path: str, writable: bool, destination: str = None) -> dict:
    """OciMount(destination, "bind", source, [ro|rw, rbind, rprivate]), Jackson's field order
    (RuncLibContainerManager.addOciMountLocation)."""
    return {"destination": destination or path, "type": "bind", "source": path,
            "options": ["rw" if writable else "ro", "rbind", "rprivate"]}


def storm_request(*, user, worker_id, port, local, storm_home, nscd, cgroup_root, artifacts,
                  topology, layers, cgroup_parent="/storm", keep=100, env=None, args=None,
                  cpu_quota=100000, memory=None, numa=None, readonly=(), readwrite=()) -> dict:
    """OciContainerExecutorConfig as RuncLibContainerManager.launchWorkerProcess builds it,
    keys in Jackson's order (field declaration order) and with what NON_DEFAULT omits left
    out: reapLayerKeepCount when 0, process.terminal/noNewPrivileges, zero resources."""
    local, storm_home, nscd, artifacts = map(str, (local, storm_home, nscd, artifacts))
    workdir = f"{local}/workers/{worker_id}"
    container_id = f"{port}-{worker_id}"
    script = f"{workdir}/storm-worker-script.sh"
    mounts = ([bind(p, False) for p in readonly] + [bind(p, True) for p in readwrite] + [
        bind("/etc/resolv.conf", False), bind("/etc/hostname", False), bind("/etc/hosts", False),
        bind(nscd, False), bind(storm_home, False), bind(cgroup_root, False),
        bind(f"{local}/supervisor", False),
        bind(workdir, True), bind(artifacts, True), bind(f"{local}/workers-users/{worker_id}", True),
        bind(f"{local}/supervisor/stormdist/{topology}/shared_by_topology", True),
        bind(f"{workdir}/tmp", True, "/tmp")])
    resources = {}
    if memory is not None:  # memory precedes cpu (Resources field order)
        resources["memory"] = {"limit": memory}
    if cpu_quota is not None:
        cpu = {"quota": cpu_quota, "period": 100000}
        if numa is not None:
            cpu.update(cpus=numa[0], mems=numa[1])
        resources["cpu"] = cpu
    request = {
        "version": "0.1",
        "username": user,
        "containerId": container_id,
        "pidFile": f"{workdir}/artifacts/container-{worker_id}.pid",  # containerPidFile
        "containerScriptPath": script,
        "layers": [{"mediaType": SQUASHFS, "path": str(layer)} for layer in layers],
        "reapLayerKeepCount": keep,
        "ociRuntimeConfig": {
            "mounts": mounts,
            "process": {"cwd": workdir,
                        "env": list(env) if env is not None else [f"PATH={E5_PATH}"],
                        "args": list(args or ()) + ["bash", script]},
            "linux": {"cgroupsPath": f"{cgroup_parent}/{container_id}", "resources": resources},
        },
    }
    if not keep:
        del request["reapLayerKeepCount"]
    return request


def storm_json(request: dict, seccomp: str = None) -> bytes:
    """ObjectMapper.writeValue: compact, UTF-8 (nothing escaped that need not be), no
    trailing newline; a seccomp profile is spliced in as the raw file text (@JsonRawValue)
    at the end of `linux`, the last member of the last two objects."""
    text = json.dumps(request, separators=(",", ":"), ensure_ascii=False)
    if seccomp is not None:
        assert text.endswith("}}}")
        text = f'{text[:-3]},"seccomp":{seccomp}}}}}}}'
    return text.encode("utf-8")


# --- the test layout -------------------------------------------------------------------------
def _own(path: Path, user: str = SUPERVISOR, mode: int = None) -> Path:
    os.lchown(path, uid_of(user), gid_of_group())
    if mode is not None:
        os.chmod(path, mode)
    return path


class Oci:
    """Storm's layout for one test and the launcher to drive it."""

    def __init__(self, launcher, storm, image, policy: Path = None):
        self.launcher, self.storm, self.image = launcher, storm, image
        self.run_root = launcher.run_root
        self.ids = []
        self.policy = policy or launcher.conf.parent / "policy.yaml"  # the storm fixture's
        base, local = storm.base, storm.local
        self.storm_home = base / "storm-home"
        self.nscd = base / "nscd"
        for path in (self.storm_home, self.nscd):
            path.mkdir(mode=0o755)
        (self.storm_home / "RELEASE").write_text("test\n")
        self.supervisor = local / "supervisor"  # ConfigUtils.supervisorLocalDir
        self.supervisor.mkdir(mode=0o755)
        _own(self.supervisor)
        self.store = local / "supervisor" / "oci-resources"
        (self.store / "layers").mkdir(parents=True)
        for path in (self.store, self.store / "layers"):
            _own(path, mode=0o755)
        self.layers = [self.localise(layer) for layer in image]
        self.add_policy({"storm.home": str(self.storm_home), "storm.oci.nscd.dir": str(self.nscd),
                         "storm.oci.cgroup.parent": CGROUP_PARENT})
        self.requests = Path(tempfile.mkdtemp(prefix="requests-", dir=base))
        _own(self.requests)

    def add_policy(self, keys: dict) -> None:
        """Add storm.yaml keys to the policy file (YAML, or JSON if it is a .json file)."""
        if self.policy.suffix == ".json":
            data = json.loads(self.policy.read_text())
            data.update(keys)
            self.policy.write_text(json.dumps(data))
        else:
            self.policy.write_text(self.policy.read_text()
                                   + "".join(f"{key}: {value}\n" for key, value in keys.items()))

    def localise(self, layer: Path, name: str = None) -> Path:
        """Copy a layer into the store as HdfsOciResourcesLocalizer does: the supervisor's,
        world-readable, named by a hash."""
        data = Path(layer).read_bytes()
        target = self.store / "layers" / f"{name or hashlib.sha256(data).hexdigest()}.sqsh"
        target.write_bytes(data)
        return _own(target, mode=0o644)

    def new_worker(self, script: str = "id > $WORKDIR/id.out\n", port: int = 6700,
                   user: str = USER, topology: str = TOPOLOGY, **extra):
        """A worker as Container.setup leaves it, its script, and its request (a dict)."""
        wid = str(uuid.uuid4())
        local = self.storm.local
        workdir = self.storm.workdir(wid)
        for name in ("pids", "tmp", "heartbeats"):
            (workdir / name).mkdir(mode=0o755)
            _own(workdir / name)
        topology_dir = self.storm.artifacts / topology
        artifacts = topology_dir / str(port)
        if not artifacts.exists():
            artifacts.mkdir(parents=True)
            _own(topology_dir, mode=0o755)
            _own(artifacts, user, 0o2770)  # artifacts-dir
        link = workdir / "artifacts"
        link.symlink_to(artifacts)
        _own(link)
        users = local / "workers-users"
        users.mkdir(mode=0o755, exist_ok=True)
        _own(users)
        (users / wid).write_text(user)
        _own(users / wid, mode=0o644)
        shared = local / "supervisor" / "stormdist" / topology / "shared_by_topology"
        if not shared.exists():
            shared.mkdir(parents=True)
            for path in (shared.parent.parent, shared.parent):
                _own(path, mode=0o755)
            _own(shared, user, 0o2770)
        worker_script = workdir / "storm-worker-script.sh"
        worker_script.write_text(f"#!/bin/sh\nWORKDIR={workdir}\n{script}")
        _own(worker_script, mode=0o644)
        extra.setdefault("cgroup_parent", CGROUP_PARENT)
        request = storm_request(
            user=user, worker_id=wid, port=port, local=local, storm_home=self.storm_home,
            nscd=self.nscd, cgroup_root="/sys/fs/cgroup", artifacts=artifacts,
            topology=topology, layers=self.layers, **extra)
        container_id = request["containerId"]
        self.ids.append(container_id)
        return Worker(self, container_id, workdir, artifacts, request, user)

    def write_request(self, request, name: str = None, seccomp: str = None) -> Path:
        path = self.requests / (name or f"{request['containerId']}.json")
        path.write_bytes(request if isinstance(request, bytes) else storm_json(request, seccomp))
        return _own(path)

    def cleanup(self) -> None:
        for container_id in self.ids:
            subprocess.run([runc_binary(), "delete", "--force", container_id],
                           capture_output=True)
            for path in cgroup_dirs(container_id):
                try:
                    os.rmdir(path)
                except OSError:
                    pass
        for entry in reversed(mounted_under(self.run_root)):
            subprocess.run(["umount", "-l", entry], capture_output=True)
        shutil.rmtree(self.requests, ignore_errors=True)


class Worker:
    def __init__(self, oci, container_id, workdir, artifacts, request, user=USER):
        self.oci, self.container_id, self.user = oci, container_id, user
        self.workdir, self.artifacts, self.request = workdir, artifacts, request
        self.worker_id = container_id.split("-", 1)[1]
        self.config = workdir / "oci-config.json"

    @property
    def pid_file(self) -> Path:
        return self.artifacts / f"container-{self.worker_id}.pid"

    def write(self, request=None, seccomp: str = None) -> Path:
        """workers/<id>/oci-config.json as RuncLibContainerManager writes it; the script
        the supervisor's again (as a launch leaves it the user's, and Storm writes a fresh
        one for every worker)."""
        data = request if isinstance(request, bytes) else storm_json(request or self.request,
                                                                      seccomp)
        if self.config.exists():
            self.config.unlink()
        self.config.write_bytes(data)
        _own(self.config, mode=0o644)
        if os.path.lexists(self.workdir / "storm-worker-script.sh"):
            _own(self.workdir / "storm-worker-script.sh")
        return self.config

    def launch(self, request=None, command="run-oci-container", seccomp: str = None,
               artifacts=None):
        """Storm's call: [L, user, run-oci-container, W, W/oci-config.json, W/artifacts]."""
        config = self.write(request, seccomp)
        third = self.workdir / "artifacts" if artifacts is None else artifacts
        return self.oci.launcher.run(self.user, command, self.workdir, config, third)

    def wait_for(self, name: str, timeout: float = 10.0) -> str:
        target = self.workdir / name
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if target.exists() and target.stat().st_size:
                return target.read_text()
            time.sleep(0.05)
        raise AssertionError(f"{target} was not written")

    def reap(self, keep: int = 0):
        return self.oci.launcher.run(self.user, "reap-oci-container", self.container_id, keep)


def mounted_under(top: Path) -> list:
    prefix = str(top) + "/"
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split(" ")[4]
        if point.startswith(prefix):
            points.append(point)
    return points


def loops_backed_by(paths) -> list:
    out = subprocess.run(["losetup", "-a"], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if any(str(path) in line for path in paths)]


def runc_ids() -> set:
    out = subprocess.run([runc_binary(), "list", "-q"], capture_output=True, text=True).stdout
    return set(out.split())


def cgroup_mounts() -> list:
    """Mount points of every cgroup hierarchy (v1 controllers, v2 unified)."""
    points, seen = [], set()
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split(" - ")
        if len(fields) == 2 and fields[1].split(" ")[0] in ("cgroup", "cgroup2"):
            device, point = fields[0].split(" ")[2], fields[0].split(" ")[4]
            if device not in seen:  # not the copies a staged bind of /sys/fs/cgroup shows
                seen.add(device)
                points.append(point)
    return points


def cgroup_dirs(container_id: str, parent: str = CGROUP_PARENT) -> list:
    """The container's cgroup directories that exist, in every hierarchy."""
    return [f"{point}{parent}/{container_id}" for point in cgroup_mounts()
            if os.path.isdir(f"{point}{parent}/{container_id}")]


def assert_nothing_left(oci, *workers, layers=None) -> None:
    """No mount under the run root, no loop device on the layers, and of each worker no
    runc container, no run directory and no cgroup in any hierarchy."""
    assert mounted_under(oci.run_root) == [], mounted_under(oci.run_root)
    assert loops_backed_by(layers or oci.layers) == []
    ids = runc_ids()
    for worker in workers:
        assert worker.container_id not in ids
        assert not (oci.run_root / worker.container_id).exists()
        assert cgroup_dirs(worker.container_id) == []


def assert_refused(oci, worker, result, code: int, fragment: str) -> None:
    """Refused with `code`, one line naming `fragment`, and nothing of the launch exists."""
    assert result.returncode == code, result.stderr
    assert fragment in result.stderr, result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert_nothing_left(oci, worker)


def require_oci_tools() -> None:
    """squashfs-tools, busybox-static, runc, loop devices, squashfs and overlay."""
    require(shutil.which("mksquashfs") is not None, "squashfs-tools is not installed")
    require(busybox_available(), "busybox-static is not installed")
    require(os.path.exists(runc_binary()), "runc is not installed")
    require(Path("/dev/loop-control").exists(), "no /dev/loop-control")
    filesystems = Path("/proc/filesystems").read_text()
    require("squashfs" in filesystems and "overlay" in filesystems,
            "the kernel lacks squashfs or overlay")
