"""Fixtures of the Storm replay: the image as Storm's localizer leaves it (squashfs layers
and the image config, built once), and for docker a running dockerd with the same root
imported. The nodes themselves are made per test (support.stormlife.Life)."""

import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import pytest

from support.dockerd import answers, docker, start
from support.env import require
from support.oci import runc_binary
from support.rootfs import busybox_available
from support.stormlife import Image


@pytest.fixture(scope="session")
def replay_image(installed):
    require(shutil.which("mksquashfs") is not None, "squashfs-tools is not installed")
    require(busybox_available(), "busybox-static is not installed")
    require(os.path.exists(runc_binary()), "runc is not installed")
    require(Path("/dev/loop-control").exists(), "no /dev/loop-control")
    filesystems = Path("/proc/filesystems").read_text()
    require("squashfs" in filesystems and "overlay" in filesystems,
            "the kernel lacks squashfs or overlay")
    directory = Path(tempfile.mkdtemp(prefix="replay-image-", dir=installed.prefix))
    os.chmod(directory, 0o755)
    return Image(directory)


@pytest.fixture(scope="session")
def replay_dockerd(replay_image):
    """A daemon that answers (started with --iptables=false --bridge=none if none does),
    with the replay's image imported. Yields the image name."""
    require(shutil.which("docker") is not None and shutil.which("dockerd") is not None,
            "docker.io is not installed")
    started = None if answers() else start()
    try:
        yield replay_image.docker_import(docker)
    finally:
        if started is not None:
            started.send_signal(signal.SIGTERM)
            try:
                started.wait(timeout=30)
            except subprocess.TimeoutExpired:
                started.kill()
