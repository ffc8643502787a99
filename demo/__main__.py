"""The README's demo: a sandbox install and demo accounts, then a Storm worker launched in a
runc container from squashfs layers as a topology user, its output, and the clean-up."""

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
# The same install, accounts, Storm layout and image the tests use (tests/support).
from support import env as conftest  # noqa: E402
from support.env import USER  # noqa: E402
from support.oci import (Oci, build_image, loops_backed_by, mounted_under,  # noqa: E402
                         require_oci_tools, runc_ids)
from support.storm import Storm  # noqa: E402

WORKER_SCRIPT = """\
echo "hello from a Storm worker in a runc container"
echo "  uid/gid:   $(id)"
echo "  top layer: $(cat /etc/wl-layer)"
echo "  root fs:   $(touch /probe 2>/dev/null && echo writable || echo read-only)"
echo "  workdir:   $(pwd)"
"""


def step(title: str) -> None:
    print(f"\n== {title}")


def show(launcher, *args) -> subprocess.CompletedProcess:
    print(f"$ worker-launcher {' '.join(map(str, args))}    # as {conftest.SUPERVISOR}")
    result = launcher.run(*args)
    sys.stdout.write(result.stdout + result.stderr)
    print(f"(exit {result.returncode})")
    return result


def install(prefix: Path, build: Path) -> conftest.Installed:
    conftest.install_into(prefix, prefix / "etc" / "worker-launcher.cfg", build)
    launcher = conftest.Installed(prefix)
    launcher.run_root.mkdir(mode=0o755)
    storm_base = prefix / "storm"
    storm_base.mkdir(mode=0o755)
    (prefix / "etc").mkdir(mode=0o755, exist_ok=True)
    policy = prefix / "etc" / "policy.json"  # Storm's storm.yaml keys, as JSON
    policy.write_text(json.dumps({"storm.local.dir": str(storm_base / "local"),
                                  "storm.workers.artifacts.dir": str(storm_base / "artifacts")}))
    os.chmod(policy, 0o644)
    launcher.write_config({"worker.launcher.policy": str(policy)})
    return launcher


def demo(launcher: conftest.Installed) -> bool:
    step("checking the install")
    show(launcher, "--check-config")

    step("building a 3-layer busybox squashfs image in Storm's layer store")
    require_oci_tools()
    image_dir = launcher.prefix / "image"
    image_dir.mkdir(mode=0o755)
    oci = Oci(launcher, Storm(launcher.prefix / "storm"), build_image(image_dir),
              policy=launcher.conf.parent / "policy.json")
    layers = oci.layers
    for layer in layers:
        print(f"  {layer} ({layer.stat().st_size} bytes)")

    worker = oci.new_worker(WORKER_SCRIPT + "sleep 300\n")
    request = worker.write()  # workers/<id>/oci-config.json, as RuncLibContainerManager writes it
    step(f"launching worker {worker.container_id} for {USER}, as Storm's supervisor does")
    if show(launcher, USER, "run-oci-container", worker.workdir, request,
            worker.workdir / "artifacts").returncode != 0:
        return False
    output = worker.artifacts / f"runc-{worker.container_id}.out"
    print(f"\nwhat the worker printed ({output.name}):")
    for _ in range(100):
        if output.exists() and "workdir" in output.read_text():
            break
        subprocess.run(["sleep", "0.05"])
    print(output.read_text().rstrip())
    print(f"\nmounted for it: {len(mounted_under(oci.run_root))} mounts, "
          f"{len(loops_backed_by(layers))} loop devices, runc knows: "
          f"{worker.container_id in runc_ids()}")

    step("reaping it")
    reaped = show(launcher, USER, "reap-oci-container", worker.container_id, "0")
    leaks = (mounted_under(oci.run_root), loops_backed_by(layers),
             worker.container_id in runc_ids())
    print(f"left behind: mounts {leaks[0]}, loop devices {leaks[1]}, runc state {leaks[2]}")
    oci.cleanup()
    return reaped.returncode == 0 and not any(leaks)


def main() -> int:
    step("creating the demo accounts and installing into a sandbox prefix")
    conftest.ensure_accounts()
    conftest.TEST_ROOT.mkdir(mode=0o755, exist_ok=True)
    prefix = Path(tempfile.mkdtemp(prefix="demo-", dir=conftest.TEST_ROOT))
    prefix.chmod(0o755)
    build = Path(tempfile.mkdtemp(prefix="wl-build-"))
    try:
        launcher = install(prefix, build)
        print(f"installed {launcher.binary} (root:{conftest.GROUP} 6550), config {launcher.conf}")
        ok = demo(launcher)
        print("\ndemo " + ("succeeded" if ok else "FAILED"))
        return 0 if ok else 1
    finally:
        step("removing the sandbox prefix")
        shutil.rmtree(build, ignore_errors=True)
        shutil.rmtree(prefix, ignore_errors=True)
        print(f"removed {prefix}")


if __name__ == "__main__":
    sys.exit(main())
