"""Docker fixtures: a running dockerd with the test image, and Storm's docker layout."""

import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import pytest

from support.docker import DockerStorm
from support.dockerd import IMAGE, answers, import_image, start
from support.env import require
from support.rootfs import busybox_available


@pytest.fixture(scope="session")
def dockerd():
    """A daemon that answers, with the test image imported. Yields the image name."""
    require(os.geteuid() == 0, "tests must run as root")
    require(shutil.which("docker") is not None and shutil.which("dockerd") is not None,
            "docker.io is not installed")
    require(busybox_available(), "busybox-static is not installed")
    started = None if answers() else start()
    try:
        import_image()
        yield IMAGE
    finally:
        if started is not None:
            started.send_signal(signal.SIGTERM)
            try:
                started.wait(timeout=30)
            except subprocess.TimeoutExpired:
                started.kill()


@pytest.fixture
def dstorm(launcher, dockerd):
    base = Path(tempfile.mkdtemp(prefix="dstorm-", dir=launcher.prefix))
    os.chmod(base, 0o755)
    env = DockerStorm(launcher, base, dockerd)
    try:
        yield env
    finally:
        env.cleanup()
        subprocess.run(["rm", "-rf", "--one-file-system", str(base)], check=False)
        shutil.rmtree(base, ignore_errors=True)
