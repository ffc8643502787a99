"""Fixtures every test folder may use: the test accounts and a private root-owned install
of the launcher, Storm's directories named by a policy, and victims no attack may touch.
Helpers (plain functions and classes) live in tests/support; fixtures of one feature live in
that folder's conftest.py. Privileged tests skip when something is missing, but fail instead
when WL_REQUIRE_PRIVILEGED=1 (CI)."""

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from support.env import TEST_ROOT, Installed, ensure_accounts, install_into, require
from support.hostile import Victims
from support.oci import Oci, build_image, require_oci_tools
from support.storm import Storm
from support.syslog import SyslogReceiver


@pytest.fixture
def tmp_path(tmp_path):
    """pytest's tmp_path, made reachable (not writable) for the test accounts."""
    for path in (tmp_path, *tmp_path.parents):
        if path == Path("/tmp"):
            break
        os.chmod(path, 0o755)
    return tmp_path


@pytest.fixture(scope="session")
def installed():
    require(os.geteuid() == 0, "tests must run as root")
    for tool in ("make", "cc", "useradd", "groupadd"):
        require(shutil.which(tool) is not None, f"{tool} is not installed")
    ensure_accounts()
    TEST_ROOT.mkdir(mode=0o755, exist_ok=True)
    os.chmod(TEST_ROOT, 0o755)
    prefix = Path(tempfile.mkdtemp(prefix="install-", dir=TEST_ROOT))
    os.chmod(prefix, 0o755)
    build = Path(tempfile.mkdtemp(prefix="wl-build-"))
    try:
        try:
            install_into(prefix, prefix / "etc" / "worker-launcher.cfg", build)
        except subprocess.CalledProcessError as err:
            pytest.fail(f"make install failed:\n{err.stdout}\n{err.stderr}")
        result = Installed(prefix)
        result.run_root.mkdir(mode=0o755)
        result.write_config()
        yield result
    finally:
        shutil.rmtree(build, ignore_errors=True)
        shutil.rmtree(prefix, ignore_errors=True)


@pytest.fixture
def launcher(installed):
    """The installed launcher with the default config restored after the test."""
    installed.write_config()
    yield installed
    installed.write_config()


@pytest.fixture
def storm(launcher):
    base = Path(tempfile.mkdtemp(prefix="storm-", dir=launcher.prefix))
    os.chmod(base, 0o755)
    policy = launcher.conf.parent / "policy.yaml"
    policy.write_text(f"storm.local.dir: {base / 'local'}\n"
                      f"storm.workers.artifacts.dir: {base / 'artifacts'}\n")
    os.chown(policy, 0, 0)
    os.chmod(policy, 0o644)
    launcher.write_config({"worker.launcher.policy": str(policy)})
    try:
        yield Storm(base)
    finally:
        shutil.rmtree(base, ignore_errors=True)
        policy.unlink()


@pytest.fixture
def victims(storm):
    return Victims(storm)


@pytest.fixture(scope="session")
def image(installed):
    """A 3-layer busybox squashfs image in a layer store of the install (tests/support/oci)."""
    require_oci_tools()
    directory = Path(tempfile.mkdtemp(prefix="image-", dir=installed.prefix))
    os.chmod(directory, 0o755)
    return build_image(directory)


@pytest.fixture
def oci(launcher, storm, image):
    """Storm's worker layout for runc, its requests and a clean-up that leaves nothing."""
    env = Oci(launcher, storm, image)
    try:
        yield env
    finally:
        env.cleanup()


@pytest.fixture
def receiver(tmp_path):
    """A real syslog socket where the launcher's audit lines land (tests/support/syslog)."""
    os.chmod(tmp_path, 0o755)
    log = SyslogReceiver(tmp_path)
    yield log
    log.close()
