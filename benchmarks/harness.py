"""Shared set-up for benchmarks: the same private install and accounts the tests use."""

import contextlib
import grp
import os
import pwd
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from support import env as conftest  # noqa: E402  (the tests' accounts and install)


@contextlib.contextmanager
def installed_launcher():
    conftest.ensure_accounts()
    conftest.TEST_ROOT.mkdir(mode=0o755, exist_ok=True)
    prefix = Path(tempfile.mkdtemp(prefix="bench-", dir=conftest.TEST_ROOT))
    os.chmod(prefix, 0o755)
    build = Path(tempfile.mkdtemp(prefix="wl-build-"))
    try:
        conftest.install_into(prefix, prefix / "etc" / "worker-launcher.cfg", build)
        launcher = conftest.Installed(prefix)
        launcher.run_root.mkdir(mode=0o755)
        launcher.write_config()
        yield launcher
    finally:
        shutil.rmtree(build, ignore_errors=True)
        shutil.rmtree(prefix, ignore_errors=True)


def run_as_supervisor() -> dict:
    entry = pwd.getpwnam(conftest.SUPERVISOR)
    return {"user": entry.pw_uid, "group": entry.pw_gid,
            "extra_groups": [grp.getgrnam(conftest.GROUP).gr_gid], "cwd": "/",
            "env": {"PATH": "/usr/bin:/bin"}}
