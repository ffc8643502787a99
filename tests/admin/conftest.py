"""Admin fixtures: the OCI image and layout (as tests/oci has them) for --list-state."""

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from support.env import require
from support.oci import Oci, build_image, runc_binary
from support.rootfs import busybox_available


@pytest.fixture(scope="module")
def image(installed):
    require(shutil.which("mksquashfs") is not None, "squashfs-tools is not installed")
    require(busybox_available(), "busybox-static is not installed")
    require(os.path.exists(runc_binary()), "runc is not installed")
    require(Path("/dev/loop-control").exists(), "no /dev/loop-control")
    directory = Path(tempfile.mkdtemp(prefix="admin-image-", dir=installed.prefix))
    os.chmod(directory, 0o755)
    try:
        yield build_image(directory, layer_count=2)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def oci(launcher, storm, image):
    env = Oci(launcher, storm, image)
    try:
        yield env
    finally:
        env.cleanup()
