"""Docker fixtures: a running dockerd with the test image, and Storm's docker layout."""

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from support.docker import DockerStorm
from support.dockerd import IMAGE, import_image, running
from support.env import require
from support.rootfs import busybox_available


@pytest.fixture(scope="session")
def dockerd():
    """A daemon that answers, with the test image imported. Yields the image name."""
    require(busybox_available(), "busybox-static is not installed")
    with running():
        import_image()
        yield IMAGE


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
