"""OCI test set-up: a 3-layer busybox squashfs image, Storm's worker layout, oci-config.json
requests as RuncLibContainerManager writes them, and clean-up that leaves nothing behind."""

import json
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

from support.env import SUPERVISOR
from support.env import USER, gid_of_group, uid_of
from support.rootfs import make_rootfs

LAYER_MARK = "/etc/wl-layer"


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


class Oci:
    """Storm's layout for one test and the launcher to drive it."""

    def __init__(self, launcher, storm, layers):
        self.launcher, self.storm, self.layers = launcher, storm, layers
        self.run_root = launcher.run_root
        self.ids = []
        self.requests = Path(tempfile.mkdtemp(prefix="requests-", dir=storm.base))
        os.chown(self.requests, uid_of(SUPERVISOR), gid_of_group())

    def new_worker(self, script: str = "id > $WORKDIR/id.out\n", port: int = 6700):
        """A workdir and artifacts dir as Storm's supervisor creates them, the worker script,
        and the oci-config.json request (a dict, written by `write_request`)."""
        wid = str(uuid.uuid4())
        container_id = f"{port}-{wid}"
        self.ids.append(container_id)
        workdir = self.storm.workdir(wid)
        artifacts = self.storm.artifacts / "topo-1" / str(port)
        artifacts.mkdir(parents=True, exist_ok=True)
        for path in (artifacts.parent, artifacts):
            os.chown(path, uid_of(USER), gid_of_group())
            os.chmod(path, 0o2770)
        worker_script = workdir / "storm-worker-script.sh"
        worker_script.write_text(f"#!/bin/sh\nWORKDIR={workdir}\n{script}")
        os.chown(worker_script, uid_of(SUPERVISOR), gid_of_group())
        request = {
            "version": "0.1",
            "username": USER,
            "containerId": container_id,
            "pidFile": f"{artifacts}/container-{wid}.pid",
            "containerScriptPath": str(worker_script),
            "layers": [{"mediaType": "application/vnd.squashfs", "path": str(layer)}
                       for layer in self.layers],
            "reapLayerKeepCount": 100,
            "ociRuntimeConfig": {
                "mounts": [
                    {"destination": str(workdir), "type": "bind", "source": str(workdir),
                     "options": ["rw", "rbind", "rprivate"]},
                    {"destination": str(artifacts), "type": "bind", "source": str(artifacts),
                     "options": ["rw", "rbind", "rprivate"]},
                    {"destination": "/tmp", "type": "bind", "source": f"{workdir}/tmp",
                     "options": ["rw", "rbind", "rprivate"]},
                ],
                "process": {"cwd": str(workdir), "env": ["PATH=/bin:/usr/bin", "LANG=C"],
                            "args": ["bash", str(worker_script)]},
                "linux": {"cgroupsPath": f"/wltest-storm/{container_id}",
                          "resources": {"cpu": {"quota": 50000, "period": 100000}}},
            },
        }
        return Worker(self, container_id, workdir, artifacts, request)

    def write_request(self, request: dict, name: str = None) -> Path:
        path = self.requests / (name or f"{request['containerId']}.json")
        path.write_text(json.dumps(request, indent=1))
        os.chown(path, uid_of(SUPERVISOR), gid_of_group())
        return path

    def cleanup(self) -> None:
        for container_id in self.ids:
            subprocess.run([runc_binary(), "delete", "--force", container_id],
                           capture_output=True)
        for entry in reversed(mounted_under(self.run_root)):
            subprocess.run(["umount", "-l", entry], capture_output=True)
        shutil.rmtree(self.requests, ignore_errors=True)


class Worker:
    def __init__(self, oci, container_id, workdir, artifacts, request):
        self.oci, self.container_id = oci, container_id
        self.workdir, self.artifacts, self.request = workdir, artifacts, request

    def launch(self, request=None, command="run-oci-container"):
        path = self.oci.write_request(request or self.request)
        return self.oci.launcher.run(USER, command, self.workdir, path, self.artifacts)

    def wait_for(self, name: str, timeout: float = 10.0) -> str:
        target = self.workdir / name
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if target.exists() and target.stat().st_size:
                return target.read_text()
            time.sleep(0.05)
        raise AssertionError(f"{target} was not written")

    def reap(self, keep: int = 0):
        return self.oci.launcher.run(USER, "reap-oci-container", self.container_id, keep)


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
