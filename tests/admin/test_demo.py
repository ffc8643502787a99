"""The README's first command, `tools/demo`, must keep working: its Python part run for real
(a sandbox install, a worker launched from squashfs layers as a test user, its output, the
reap, nothing left)."""

import subprocess
import sys

from support.env import REPO, require
from support.oci import require_oci_tools


def test_demo_launches_shows_and_reaps():
    require_oci_tools()
    require(subprocess.run(["id", "-u"], capture_output=True, text=True).stdout.strip() == "0",
            "the demo runs as root")
    result = subprocess.run([sys.executable, "-m", "demo"], cwd=REPO, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    assert "hello from a Storm worker in a runc container" in out
    assert "uid=2001" in out and "top layer: layer 2" in out and "root fs:   read-only" in out
    assert "left behind: mounts [], loop devices [], runc state False" in out
    assert "\ndemo succeeded\n" in out
