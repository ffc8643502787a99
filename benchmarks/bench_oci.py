"""OCI runtime latency through the installed setuid launcher, as the supervisor account.

Run as root: .venv/bin/python benchmarks/bench_oci.py
Figures (median of 10): launch (invoke -> pid file exists) and reap, with 3 and 7 layers,
cold (layers unmounted before) and warm (layers already mounted); `runc run -d` alone on the
same kind of bundle; reap of 200 stale layers; 8 concurrent launches.
Targets: warm launch at most +40 ms over runc alone; reap of 200 stale layers under 2 s.
"""

import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import installed_launcher  # noqa: E402
from support.env import USER  # noqa: E402
from support.oci import Oci, build_image, runc_binary  # noqa: E402
from support.storm import Storm  # noqa: E402

RUNS = 10
WARM_TARGET_MS = 40.0
STALE_TARGET_S = 2.0


def wait_for(path: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{path} did not appear")
        time.sleep(0.001)


def launch_and_reap(oci, keep: int) -> tuple:
    worker = oci.new_worker("sleep 300\n")
    worker.write()
    pid_file = worker.pid_file
    start = time.perf_counter()
    result = oci.launcher.run(USER, "run-oci-container", worker.workdir, worker.config,
                              worker.workdir / "artifacts")
    if result.returncode != 0:
        raise RuntimeError(result.stderr)
    wait_for(pid_file)
    launched = time.perf_counter() - start
    start = time.perf_counter()
    result = worker.reap(keep)
    if result.returncode != 0:
        raise RuntimeError(result.stderr)
    return launched * 1000, (time.perf_counter() - start) * 1000


def runc_alone(oci) -> float:
    """`runc run -d` alone on the bundle the launcher writes: the config.json of a real
    launch, pointed at a fresh root mounted by mount-layers for every sample (as a launch
    gets one), timed from invoke to pid file."""
    model = oci.new_worker("sleep 300\n")
    model.launch()
    config = json.loads((oci.run_root / model.container_id / "config.json").read_text())
    model.reap(1000)
    samples = []
    for index in range(RUNS):
        worker = oci.new_worker("sleep 300\n")
        rootfs = oci.launcher.run(USER, "mount-layers",
                                  oci.write_request(worker.request)).stdout.strip()
        bundle = Path(rootfs).parent / "bench-bundle"
        bundle.mkdir()
        config["root"]["path"] = rootfs
        # the launcher binds staged copies of the sources (gone with the model); runc alone
        # binds the model request's own paths
        binds = [m for m in config["mounts"] if m["type"] == "bind"]
        for mount, asked in zip(binds, model.request["ociRuntimeConfig"]["mounts"]):
            mount["source"] = asked["source"]
        config["linux"]["cgroupsPath"] = f"/wltest-storm/{worker.container_id}"
        (bundle / "config.json").write_text(json.dumps(config))
        pid_file = bundle / "container.pid"
        start = time.perf_counter()
        subprocess.run([runc_binary(), "run", "-d", "--pid-file", str(pid_file), "-b", str(bundle),
                        worker.container_id], check=True, stdin=subprocess.DEVNULL,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={})
        wait_for(pid_file)
        samples.append((time.perf_counter() - start) * 1000)
        worker.reap(1000)
    return statistics.median(samples)


def stale_reap(oci, directory: Path) -> float:
    """Mount 200 small layers through 8 mount-layers calls, drop the containers but keep the
    layers, then time one reap that unmounts all 200."""
    layers = []
    for index in range(200):
        tree = directory / f"t{index}"
        tree.mkdir()
        (tree / "f").write_text(str(index))
        image = directory / f"stale{index}.sqsh"
        subprocess.run(["mksquashfs", str(tree), str(image), "-quiet", "-noappend", "-no-progress"],
                       check=True, stdout=subprocess.DEVNULL)
        layers.append(oci.localise(image))  # into the layer store
    workers = []
    for chunk in range(8):
        oci.layers = layers[chunk * 25:(chunk + 1) * 25]
        worker = oci.new_worker()
        result = oci.launcher.run(USER, "mount-layers", oci.write_request(worker.request))
        if result.returncode != 0:
            raise RuntimeError(result.stderr)
        workers.append(worker)
    for worker in workers:
        worker.reap(1000)
    start = time.perf_counter()
    result = oci.launcher.run(USER, "reap-oci-container", workers[0].container_id, 0)
    took = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(result.stderr)
    return took


def concurrent(oci, count: int = 8) -> float:
    workers = [oci.new_worker("sleep 300\n", port=6800 + i) for i in range(count)]
    requests = [w.write() for w in workers]
    failures = []

    def go(worker, request):
        result = oci.launcher.run(USER, "run-oci-container", worker.workdir, request,
                                  worker.workdir / "artifacts")
        if result.returncode != 0:
            failures.append(result.stderr)

    threads = [threading.Thread(target=go, args=pair) for pair in zip(workers, requests)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    took = time.perf_counter() - start
    for worker in workers:
        worker.reap(0)
    if failures:
        raise RuntimeError(failures[0])
    return took


def main() -> int:
    with installed_launcher() as launcher:
        base = launcher.prefix / "storm"
        base.mkdir(mode=0o755)
        policy = launcher.conf.parent / "policy.json"
        policy.write_text(json.dumps({"storm.local.dir": str(base / "local"),
                                      "storm.workers.artifacts.dir": str(base / "artifacts")}))
        launcher.write_config({"worker.launcher.policy": str(policy)})
        storm = Storm(base)
        images = launcher.prefix / "images"
        images.mkdir(mode=0o755)
        oci = Oci(launcher, storm, [], policy=policy)
        try:
            warm_over = {}
            for count in (3, 7):
                directory = images / f"{count}"
                directory.mkdir(mode=0o755)
                oci.layers = [oci.localise(layer) for layer in build_image(directory, count)]
                for mode, keep in (("cold", 0), ("warm", 1000)):
                    launch_and_reap(oci, keep)  # warm-up (and, for warm, leave the layers)
                    samples = [launch_and_reap(oci, keep) for _ in range(RUNS)]
                    launch = statistics.median(s[0] for s in samples)
                    reap = statistics.median(s[1] for s in samples)
                    print(f"{count} layers {mode}: launch {launch:7.1f} ms   reap {reap:6.1f} ms")
                    if mode == "warm":
                        warm_over[count] = launch
                oci.launcher.run(USER, "reap-oci-container", oci.new_worker().container_id, 0)
            alone = runc_alone(oci)
            print(f"runc run -d alone:        {alone:7.1f} ms")
            worst = max(warm_over.values()) - alone
            seven = oci.layers
            stale = stale_reap(oci, images)
            oci.layers = seven
            print(f"reap of 200 stale layers: {stale * 1000:7.1f} ms")
            burst = concurrent(oci)
            print(f"8 concurrent launches:    {burst * 1000:7.1f} ms wall")
        finally:
            oci.cleanup()
    ok = worst <= WARM_TARGET_MS and stale <= STALE_TARGET_S
    print(f"warm launch over runc alone: +{worst:.1f} ms (target +{WARM_TARGET_MS:.0f} ms); "
          f"stale reap {stale:.2f} s (target {STALE_TARGET_S:.0f} s): {'meets' if ok else 'MISSES'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
