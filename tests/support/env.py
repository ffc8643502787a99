"""Shared test set-up: accounts, a private root-owned install of the launcher, helpers.

Privileged tests need root, the kernel features and the tools they exercise. When one is
missing they skip on a developer's machine, but fail when WL_REQUIRE_PRIVILEGED=1 (CI).
"""

import grp
import os
import pwd
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
REQUIRE = os.environ.get("WL_REQUIRE_PRIVILEGED") == "1"
# The interpreter of test helpers run as the test accounts (attackers, racers).
PYTHON = "/usr/bin/python3"
# The interpreter the launcher under test is built for and runs on (make install PYTHON=).
# tools/test runs the integration suite once per interpreter it supports (3.9 and newer).
LAUNCHER_PYTHON = os.environ.get("WL_TEST_PYTHON") or PYTHON
TEST_ROOT = Path("/opt/wl-tests")

GROUP = "wltest"
SUPERVISOR = "wlsuper"
USER = "wlalice"  # the topology user of most tests
# name -> (uid, in launcher group)
ACCOUNTS = {
    SUPERVISOR: (1901, True),
    "wlalice": (2001, False),
    "wlbob": (2002, False),
    "wlbanned": (2003, False),
    "wloutsider": (2004, False),
    "wllow": (901, False),
}
USER_GROUP = "wlusers"  # a supplementary group of wlalice, to check groups inside workers


def launcher_python_runs_as(user: str) -> bool:
    """Whether `user` can start LAUNCHER_PYTHON: not pyenv's in root's 0700 home. Where it
    cannot, a launcher whose setuid bit is ignored stops at the stub's exec (exit 20)."""
    try:
        return subprocess.run([LAUNCHER_PYTHON, "-I", "-c", "pass"], user=user,
                              capture_output=True).returncode == 0
    except PermissionError:
        return False


def require(condition: bool, reason: str) -> None:
    """Skip when a privileged prerequisite is missing; fail instead in CI."""
    if condition:
        return
    if REQUIRE:
        pytest.fail(f"required for privileged tests: {reason}")
    pytest.skip(reason)  # never in CI: there REQUIRE (WL_REQUIRE_PRIVILEGED=1) fails above


def ensure_accounts() -> None:
    if not group_exists(GROUP):
        subprocess.run(["groupadd", "-g", "1900", GROUP], check=True)
    if not group_exists(USER_GROUP):
        subprocess.run(["groupadd", "-g", "2100", USER_GROUP], check=True)
    for name, (uid, in_group) in ACCOUNTS.items():
        try:
            pwd.getpwnam(name)
            continue
        except KeyError:
            pass
        argv = ["useradd", "-M", "-s", "/bin/sh", "-d", "/nonexistent", "-u", str(uid)]
        argv += ["-N", "-g", GROUP] if name == SUPERVISOR else ["-U"]
        if in_group and name != SUPERVISOR:
            argv += ["-G", GROUP]
        if name == "wlalice":
            argv += ["-G", USER_GROUP]
        subprocess.run(argv + [name], check=True)


def group_exists(name: str) -> bool:
    try:
        grp.getgrnam(name)
        return True
    except KeyError:
        return False


class Installed:
    """A private install: PREFIX/bin/worker-launcher 6550 root:wltest, config in PREFIX/etc."""

    def __init__(self, prefix: Path):
        self.prefix = prefix
        self.binary = prefix / "bin" / "worker-launcher"
        self.conf = prefix / "etc" / "worker-launcher.cfg"
        self.run_root = prefix / "run"
        self.base_config = {
            "storm.worker-launcher.group": GROUP,
            "min.user.id": "1000",
            "banned.users": "bin,wlbanned",
            "worker.launcher.oci.run-root": str(self.run_root),
            "worker.launcher.oci.runc": shutil.which("runc") or "/usr/sbin/runc",
            "docker.binary": shutil.which("docker") or "/usr/bin/docker",
        }

    def write_config(self, extra: dict | None = None, text: str | None = None) -> None:
        if text is None:
            values = dict(self.base_config, **(extra or {}))
            text = "".join(f"{k}={v}\n" for k, v in values.items() if v is not None)
        self.conf.parent.mkdir(mode=0o755, exist_ok=True)
        if self.conf.is_symlink() or self.conf.exists():
            self.conf.unlink()
        self.conf.write_text(text)
        os.chown(self.conf, 0, 0)
        os.chmod(self.conf, 0o644)

    def run(self, *args, user: str = SUPERVISOR, env: dict | None = None, argv0: str | None = None,
            timeout: float = 60, **kwargs) -> subprocess.CompletedProcess:
        """Run the installed launcher as `user` (default: the supervisor account)."""
        entry = pwd.getpwnam(user)
        groups = os.getgrouplist(user, entry.pw_gid)
        kwargs.setdefault("capture_output", True)
        kwargs.setdefault("text", True)
        return subprocess.run(
            [str(self.binary), *map(str, args)], executable=str(self.binary),
            user=entry.pw_uid, group=entry.pw_gid, extra_groups=groups,
            env=env if env is not None else {"PATH": "/usr/bin:/bin"},
            cwd="/", timeout=timeout, **kwargs)


def install_into(prefix: Path, conf: Path, build_dir: Path, group: str = GROUP) -> None:
    subprocess.run(
        ["make", "-s", "-C", str(REPO / "native"), "install", f"PREFIX={prefix}", f"CONF={conf}",
         f"GROUP={group}", f"PYTHON={LAUNCHER_PYTHON}", f"BUILDDIR={build_dir}"],
        check=True, capture_output=True, text=True)


def uid_of(name: str) -> int:
    return pwd.getpwnam(name).pw_uid


def gid_of_group(name: str = GROUP) -> int:
    return grp.getgrnam(name).gr_gid
