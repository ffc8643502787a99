"""The README's demo: a sandbox install, the demo accounts, then the launcher at work."""

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import conftest  # noqa: E402  (the same install and accounts the tests use)


def step(title: str) -> None:
    print(f"\n== {title}")


def show(launcher, *args) -> subprocess.CompletedProcess:
    print(f"$ worker-launcher {' '.join(map(str, args))}    # as {conftest.SUPERVISOR}")
    result = launcher.run(*args)
    sys.stdout.write(result.stdout + result.stderr)
    print(f"(exit {result.returncode})")
    return result


def main() -> int:
    step("creating the demo accounts and installing into a sandbox prefix")
    conftest._ensure_accounts()
    conftest.TEST_ROOT.mkdir(mode=0o755, exist_ok=True)
    prefix = Path(tempfile.mkdtemp(prefix="demo-", dir=conftest.TEST_ROOT))
    prefix.chmod(0o755)
    build = Path(tempfile.mkdtemp(prefix="wl-build-"))
    try:
        conftest.install_into(prefix, prefix / "etc" / "worker-launcher.cfg", build)
        launcher = conftest.Installed(prefix)
        launcher.run_root.mkdir(mode=0o755)
        launcher.write_config()
        print(f"installed {launcher.binary} (root:{conftest.GROUP} 6550), config {launcher.conf}")
        step("checking the install")
        ok = show(launcher, "--check-config").returncode == 0
        step("refusing an unsafe target user")
        show(launcher, "root", "worker", "/", "/bin/sh")
        return 0 if ok else 1
    finally:
        step("removing the sandbox prefix")
        shutil.rmtree(build, ignore_errors=True)
        shutil.rmtree(prefix, ignore_errors=True)
        print(f"removed {prefix}")


if __name__ == "__main__":
    sys.exit(main())
