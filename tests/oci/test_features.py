"""OCI runtime features: binds, mount-layers, shared layers, undo on failure, kill -9,
concurrency. Each test ends with nothing mounted, attached or left in runc."""

import os
import signal
import subprocess
import threading
import time
from pathlib import Path

from support.env import SUPERVISOR
from support.oci import assert_nothing_left, loops_backed_by, mounted_under, runc_ids
from support.env import USER, gid_of_group, uid_of


def assert_clean(oci, *workers):
    assert_nothing_left(oci, *workers)


def test_bind_mounts_are_read_only_or_writable_as_requested(oci):
    """Storm's binds: <storm.local.dir>/supervisor and storm.home read-only, the workdir,
    the artifacts directory, workers-users/<id> and shared_by_topology writable, the
    workdir's tmp at /tmp."""
    (oci.supervisor / "conf").write_text("supervisor data\n")
    worker = oci.new_worker(f"cat {oci.supervisor}/conf > $WORKDIR/ro.out\n"
                            f"touch {oci.supervisor}/x 2>/dev/null && echo rw > $WORKDIR/ro-write.out"
                            f" || echo ro > $WORKDIR/ro-write.out\n"
                            f"touch {oci.storm_home}/x 2>/dev/null || echo ro > $WORKDIR/home.out\n"
                            "touch $WORKDIR/rw-ok && echo rw > $WORKDIR/rw.out\n"
                            f"cat {oci.storm.local}/workers-users/$(basename $WORKDIR) > $WORKDIR/user.out\n"
                            "echo tmp > /tmp/t && cat $WORKDIR/tmp/t > $WORKDIR/tmp.out\n"
                            "ls /sys/fs/cgroup/memory > /dev/null && echo cg > $WORKDIR/cgroup.out\n")
    assert worker.launch().returncode == 0
    assert worker.wait_for("ro.out") == "supervisor data\n"
    assert worker.wait_for("ro-write.out") == "ro\n"
    assert worker.wait_for("home.out") == "ro\n"
    assert worker.wait_for("rw.out") == "rw\n"
    assert worker.wait_for("user.out") == USER
    assert worker.wait_for("tmp.out") == "tmp\n"
    assert worker.wait_for("cgroup.out") == "cg\n"
    assert not (oci.supervisor / "x").exists()
    assert worker.reap().returncode == 0
    assert_clean(oci, worker)


def test_mount_layers_prints_the_root_and_is_reaped(oci):
    worker = oci.new_worker()
    path = oci.write_request(worker.request)
    result = oci.launcher.run(USER, "mount-layers", path)
    assert result.returncode == 0, result.stderr
    rootfs = Path(result.stdout.strip())
    assert rootfs == oci.run_root / worker.container_id / "rootfs"
    assert (rootfs / "etc" / "wl-layer").read_text() == "layer 2\n"
    assert (rootfs / "bin" / "busybox").exists()
    assert len(loops_backed_by(oci.layers)) == 3
    assert worker.reap().returncode == 0
    assert_clean(oci, worker)


LOOP = "while true; do cat /etc/wl-layer > $WORKDIR/tick.tmp && mv $WORKDIR/tick.tmp " \
       "$WORKDIR/tick.out; sleep 0.1; done\n"


def test_reaping_one_container_keeps_the_shared_layers_of_another(oci):
    first, second = oci.new_worker(LOOP, port=6701), oci.new_worker(LOOP, port=6702)
    for worker in (first, second):
        assert worker.launch().returncode == 0
        assert worker.wait_for("tick.out") == "layer 2\n"
    assert first.reap(keep=0).returncode == 0  # keep 0: only the live overlay protects them
    assert len(loops_backed_by(oci.layers)) == 3
    (second.workdir / "tick.out").unlink()
    assert second.wait_for("tick.out") == "layer 2\n"  # still running, layers still readable
    assert second.container_id in runc_ids() and first.container_id not in runc_ids()
    assert second.reap(keep=0).returncode == 0
    assert_clean(oci, first, second)


def test_keep_count_keeps_recent_layers_mounted(oci):
    worker = oci.new_worker()
    assert worker.launch().returncode == 0
    assert worker.reap(keep=100).returncode == 0
    assert len(loops_backed_by(oci.layers)) == 3  # a cache for the next launch
    warm = oci.new_worker("echo warm > $WORKDIR/warm.out\n")
    assert warm.launch().returncode == 0
    assert warm.wait_for("warm.out") == "warm\n"
    assert len(loops_backed_by(oci.layers)) == 3  # reused, no new loop device
    assert warm.reap(keep=0).returncode == 0
    assert_clean(oci, worker, warm)


def root_owned_program(oci, name: str, text: str) -> Path:
    path = oci.launcher.prefix / "bin" / name
    path.write_text(text)
    os.chmod(path, 0o755)
    return path


def test_failed_runc_leaves_nothing_behind(oci):
    failing = root_owned_program(oci, "failing-runc", "#!/bin/sh\necho runc broke >&2\nexit 3\n")
    oci.launcher.write_config({"worker.launcher.policy": str(oci.launcher.conf.parent / "policy.yaml"),
                               "worker.launcher.oci.runc": str(failing)})
    worker = oci.new_worker()
    result = worker.launch()
    assert result.returncode == 44
    assert f"runc run {worker.container_id} failed with exit 3" in result.stderr
    assert (worker.artifacts / f"runc-{worker.container_id}.err").read_text() == "runc broke\n"
    assert_clean(oci, worker)


def test_kill_9_mid_launch_then_reap_cleans_everything(oci):
    hanging = root_owned_program(oci, "hanging-runc", "#!/bin/sh\nexec sleep 60\n")
    policy = str(oci.launcher.conf.parent / "policy.yaml")
    oci.launcher.write_config({"worker.launcher.policy": policy,
                               "worker.launcher.oci.runc": str(hanging)})
    worker = oci.new_worker()
    path = worker.write()
    process = subprocess.Popen(
        [str(oci.launcher.binary), USER, "run-oci-container", str(worker.workdir), str(path),
         str(worker.workdir / "artifacts")], user=uid_of(SUPERVISOR), group=gid_of_group(),
        extra_groups=[gid_of_group()], env={"PATH": "/usr/bin:/bin"}, cwd="/",
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    config = worker.workdir / "config.json"
    deadline = time.monotonic() + 20
    while not config.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert config.exists()
    time.sleep(0.3)  # in runc now
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert mounted_under(oci.run_root)  # the launch was cut off with its mounts in place
    oci.launcher.write_config({"worker.launcher.policy": policy})
    reaped = worker.reap(keep=0)
    assert reaped.returncode == 0, reaped.stderr
    assert_clean(oci, worker)


def test_symlinked_runc_output_is_not_followed(oci):
    victim = oci.storm.victim / "secret"
    before = victim.read_bytes()
    worker = oci.new_worker()
    link = worker.artifacts / f"runc-{worker.container_id}.err"
    link.symlink_to(victim)
    os.lchown(link, uid_of(USER), uid_of(USER))
    assert worker.launch().returncode == 0
    assert victim.read_bytes() == before and not link.is_symlink()
    assert worker.reap().returncode == 0
    assert_clean(oci, worker)


def test_eight_concurrent_launches_and_reaps(oci):
    workers = [oci.new_worker("echo up > $WORKDIR/up.out\nsleep 300\n", port=6700 + i)
               for i in range(8)]
    results = {}

    def launch(worker):
        results[worker.container_id] = worker.launch()

    def reap(worker):
        results[worker.container_id] = worker.reap(keep=0)

    for action in (launch, reap):
        threads = [threading.Thread(target=action, args=(w,)) for w in workers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        failures = {k: v.stderr for k, v in results.items() if v.returncode != 0}
        assert not failures
        if action is launch:
            for worker in workers:
                assert worker.wait_for("up.out") == "up\n"
    assert_clean(oci, *workers)
