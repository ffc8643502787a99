"""A running dockerd for the docker tests, and a busybox image made with `docker import`.

If `docker info` answers, the running daemon is used and left running. Otherwise dockerd is
started (`--iptables=false --bridge=none`, its own log file) and stopped at the end.
"""

import contextlib
import io
import os
import shutil
import signal
import subprocess
import tarfile
import tempfile
import time
from pathlib import Path

import pytest

from support.env import require
from support.rootfs import make_rootfs

IMAGE = "wl-tests/busybox:1"
LOG = Path("/var/log/wl-tests-dockerd.log")


def docker(*args, check=True, **kwargs) -> subprocess.CompletedProcess:
    kwargs.setdefault("capture_output", True)
    kwargs.setdefault("text", True)
    return subprocess.run(["docker", *map(str, args)], check=check, timeout=120, **kwargs)


def answers() -> bool:
    return docker("info", check=False).returncode == 0


def start() -> subprocess.Popen:
    log = open(LOG, "ab")
    process = subprocess.Popen(["dockerd", "--iptables=false", "--bridge=none"],
                               stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                               start_new_session=True)
    log.close()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if answers():
            return process
        if process.poll() is not None:
            break
        time.sleep(0.5)
    process.kill()
    pytest.fail(f"dockerd did not become ready; see {LOG}")


def import_tree(root: Path, tag: str) -> None:
    """`docker import` of the root file system in `root` as image `tag`."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for entry in sorted(root.iterdir()):
            tar.add(entry, arcname=entry.name)
    docker("import", "-", tag, input=buffer.getvalue(), text=False)


def import_image() -> None:
    if docker("image", "inspect", IMAGE, check=False).returncode == 0:
        return
    root = Path(tempfile.mkdtemp(prefix="wl-busybox-"))
    try:
        make_rootfs(root)
        import_tree(root, IMAGE)
    finally:
        shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def running():
    """A daemon that answers: the running one, or one started here (--iptables=false
    --bridge=none) and stopped when the block ends."""
    require(os.geteuid() == 0, "tests must run as root")
    require(shutil.which("docker") is not None and shutil.which("dockerd") is not None,
            "docker.io is not installed")
    started = None if answers() else start()
    try:
        yield
    finally:
        if started is not None:
            started.send_signal(signal.SIGTERM)
            try:
                started.wait(timeout=30)
            except subprocess.TimeoutExpired:
                started.kill()
