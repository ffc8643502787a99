"""Fixtures of the Storm replay: the image as Storm's localizer leaves it (squashfs layers
and the image config, built once), and for docker a running dockerd with the same root
imported. The nodes themselves are made per test (support.stormlife.Life)."""

import os
import tempfile
from pathlib import Path

import pytest

from support.dockerd import docker, running
from support.oci import require_oci_tools
from support.stormlife import Image


@pytest.fixture(scope="session")
def replay_image(installed):
    require_oci_tools()
    directory = Path(tempfile.mkdtemp(prefix="replay-image-", dir=installed.prefix))
    os.chmod(directory, 0o755)
    return Image(directory)


@pytest.fixture(scope="session")
def replay_dockerd(replay_image):
    """A daemon that answers, with the replay's image imported. Yields the image name."""
    with running():
        yield replay_image.docker_import(docker)
