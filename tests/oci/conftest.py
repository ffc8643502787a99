"""OCI fixtures: a 3-layer busybox squashfs image and Storm's worker layout for runc."""

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from support.env import require
from support.oci import Oci, build_image, runc_binary
from support.rootfs import busybox_available


@pytest.fixture(scope="session")
def image(installed):
    require(shutil.which("mksquashfs") is not None, "squashfs-tools is not installed")
    require(busybox_available(), "busybox-static is not installed")
    require(os.path.exists(runc_binary()), "runc is not installed")
    require(Path("/dev/loop-control").exists(), "no /dev/loop-control")
    filesystems = Path("/proc/filesystems").read_text()
    require("squashfs" in filesystems and "overlay" in filesystems,
            "the kernel lacks squashfs or overlay")
    directory = Path(tempfile.mkdtemp(prefix="image-", dir=installed.prefix))
    os.chmod(directory, 0o755)
    return build_image(directory)


@pytest.fixture
def oci(launcher, storm, image):
    env = Oci(launcher, storm, image)
    try:
        yield env
    finally:
        env.cleanup()
