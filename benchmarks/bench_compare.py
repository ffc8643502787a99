"""Our launcher against a reference launcher, row by row, in one run (issue 17).

Run as root:
    /usr/bin/python3 benchmarks/bench_compare.py --ours <prefix or binary> --reference <C launcher | none>
        [--reference-config <its worker-launcher.cfg>] [--runs N] [--concurrent-rounds N]

Rows (both launchers called as the supervisor account, interleaved, alternating who goes
first, so machine noise hits both):
  launch    run-oci-container of a fresh worker from 3 squashfs layers with a real runc
            (warm: the layers stay mounted between launches, keep count 100 as Storm sends)
  signal    `signal <container pid> 15`, Storm's first kill; the worker then exits
  reap      reap-oci-container <id> 100 after the worker exited
  check     --check-config (ours) / --checksetup (C)
  8 x launch, 8 x reap   eight at once (a barrier releases eight threads), p50 of the
            per-call latencies over --concurrent-rounds rounds
With `--reference none` the reference column is the floor, `python3 -I -S -c pass`.
Targets (same run): launch <= 0.7 x C, reap <= 1.5 x C, signal and check <= bare + 5 ms,
8 concurrent launches p50 <= 1.0 x C, 8 concurrent reaps p50 <= 1.5 x C, no failure, and
nothing left (mounts under the run roots, loop devices on the layers, runc containers).
Exit status 0 only when all of that holds.

The bench writes our launcher's config (and a JSON policy) for the run and puts back what
was there; the reference is used with its own config, read-only. See benchmarks/README.md.
"""

import argparse
import datetime
import grp
import json
import os
import platform
import re
import shutil
import stat
import sys
import tempfile
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import compare_env as env  # noqa: E402

BARE = ["/usr/bin/python3", "-I", "-S", "-c", "pass"]
OUR_RUN_ROOT = "/run/wl-bench-ours"
CONCURRENCY = 8
FLOOR_MS = 5.0


class Launcher:
    def __init__(self, name: str, binary: Path, run_root: str, check_flag: str, group: int):
        self.name, self.binary, self.run_root = name, binary, run_root
        self.check_flag, self.gid = check_flag, group
        self.resolved_artifacts = False   # ours: fall back from the artifacts symlink
        self.samples = {row: [] for row in ("launch", "signal", "reap", "check",
                                            "claunch", "creap")}
        self.failures = []
        self.notes = []

    def launch_argv(self, worker):
        artifacts = worker.artifacts_dir if self.resolved_artifacts else worker.artifacts_link
        return [str(self.binary), env.USER, "run-oci-container", str(worker.workdir),
                str(worker.request_path), str(artifacts)]

    def signal_argv(self, pid: int, number: int = 15):
        return [str(self.binary), env.USER, "signal", str(pid), str(number)]

    def reap_argv(self, container_id: str, keep: int = env.KEEP):
        return [str(self.binary), env.USER, "reap-oci-container", container_id, str(keep)]

    def fail(self, what: str, call) -> None:
        self.failures.append(f"{what}: exit {call.code}: {call.last_line()}")


# --- set-up ------------------------------------------------------------------------------------

def resolve_ours(given: str):
    path = Path(given).resolve()
    binary = path / "bin" / "worker-launcher" if path.is_dir() else path
    build = binary.parent.parent / "lib" / "worker-launcher" / "worker_launcher" / "_build.py"
    match = re.search(r'^CONF_PATH = "([^"]+)"', build.read_text(), re.M) if build.exists() else None
    if not binary.exists() or match is None:
        sys.exit(f"--ours {given}: no installed launcher there (expected {binary} and {build}; "
                 "install with make -C native install PREFIX=...)")
    return binary, Path(match.group(1))


def read_cfg(path: Path) -> dict:
    values = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "=" in line:
            key, value = line.split("=", 1)
            values[key.strip()] = value.strip()
    return values


def reference_config(binary: Path, given: str | None, who: dict) -> Path:
    """The C launcher's config: --reference-config, else what its --checksetup says it uses."""
    if given:
        return Path(given)
    call = env.timed([str(binary), "--checksetup"], who)
    match = re.search(r"Using configuration file (\S+)", call.output)
    if call.code != 0 or not match:
        sys.exit(f"{binary} --checksetup failed as {env.SUPERVISOR} (exit {call.code}): "
                 f"{call.last_line()}; pass --reference-config")
    return Path(match.group(1))


def write_our_config(conf: Path, group: str, policy: Path):
    """Write our launcher's config for the run; returns a function that puts back the old."""
    old = conf.read_bytes() if conf.exists() else None
    conf.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    conf.write_text(f"storm.worker-launcher.group={group}\nmin.user.id=1000\nbanned.users=bin\n"
                    f"worker.launcher.oci.run-root={OUR_RUN_ROOT}\n"
                    f"worker.launcher.oci.runc={env.runc_binary()}\n"
                    f"worker.launcher.policy={policy}\n")
    os.chown(conf, 0, 0)
    os.chmod(conf, 0o644)

    def restore():
        if old is None:
            conf.unlink(missing_ok=True)
        else:
            conf.write_bytes(old)
            os.chmod(conf, 0o644)
    return restore


# --- one worker's life -------------------------------------------------------------------------

def launch(launcher: Launcher, worker, who: dict, row: str | None):
    """run-oci-container; True when the worker runs. Ours falls back, once and loudly, from
    Storm's symlinked artifacts argument to the resolved directory if it refuses the first."""
    call = env.timed(launcher.launch_argv(worker), who)
    if call.code != 0 and launcher.name == "ours" and not launcher.resolved_artifacts \
            and not launcher.samples["launch"]:
        launcher.notes.append(
            f"ours refused Storm's artifacts argument {worker.artifacts_link} (a symlink to "
            f"{worker.artifacts_dir}): exit {call.code}: {call.last_line()}; every launch of "
            "ours in this run passes the resolved artifacts directory instead")
        launcher.resolved_artifacts = True
        call = env.timed(launcher.launch_argv(worker), who)
    if call.code != 0:
        launcher.fail(f"run-oci-container {worker.container_id}", call)
        return False
    worker.launched = True
    if row:
        launcher.samples[row].append(call.ms)
    return True


def confirm_running(launcher: Launcher, worker) -> bool:
    ran_as = env.wait_started(worker)
    worker.pid = env.read_pid(worker)
    if ran_as != str(env.uid(env.USER)) or worker.pid is None:
        launcher.failures.append(f"worker {worker.container_id}: ran as {ran_as or 'nobody'} "
                                 f"(want {env.uid(env.USER)}), pid file {worker.pid}")
        return False
    return True


def stop(launcher: Launcher, worker, who: dict, row: str | None) -> bool:
    call = env.timed(launcher.signal_argv(worker.pid), who)
    if call.code != 0:
        launcher.fail(f"signal {worker.pid} 15", call)
        return False
    if row:
        launcher.samples[row].append(call.ms)
    return True


def reap(launcher: Launcher, worker, who: dict, row: str | None) -> None:
    call = env.timed(launcher.reap_argv(worker.container_id), who)
    if call.code != 0:
        launcher.fail(f"reap-oci-container {worker.container_id}", call)
    elif row:
        launcher.samples[row].append(call.ms)


def wait_exited(launcher: Launcher, worker) -> None:
    if worker.pid and not env.wait_gone(worker.pid):
        launcher.failures.append(f"worker {worker.container_id} (pid {worker.pid}) did not exit "
                                 "after SIGTERM")


# --- rounds ------------------------------------------------------------------------------------

def sequential_round(launchers, storm, who, counted: bool, bare: list, ports) -> None:
    workers = {}
    for launcher in launchers:
        worker = storm.new_worker(ports[launcher.name])
        if launch(launcher, worker, who, "launch" if counted else None):
            workers[launcher.name] = worker
    running = {name: w for name, w in workers.items()
               if confirm_running(by_name(launchers, name), w)}
    for launcher in launchers:
        worker = running.get(launcher.name)
        if worker is not None and not stop(launcher, worker, who, "signal" if counted else None):
            env.timed(launcher.signal_argv(worker.pid, 9), who)
    for launcher in launchers:
        worker = running.get(launcher.name)
        if worker is not None:
            wait_exited(launcher, worker)
    for launcher in launchers:
        if launcher.name in workers:
            reap(launcher, workers[launcher.name], who, "reap" if counted else None)
    for launcher in launchers:
        call = env.timed([str(launcher.binary), launcher.check_flag], who)
        if call.code != 0:
            launcher.fail(launcher.check_flag, call)
        elif counted:
            launcher.samples["check"].append(call.ms)
        call = env.timed(BARE, who)
        if counted:
            bare.append(call.ms)


def together(jobs) -> list:
    """Run the callables at once (released by a barrier); their results in order."""
    results = [None] * len(jobs)
    barrier = threading.Barrier(len(jobs))

    def run(index, job):
        barrier.wait()
        results[index] = job()

    threads = [threading.Thread(target=run, args=pair) for pair in enumerate(jobs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def concurrent_round(launcher: Launcher, storm, who) -> None:
    workers = [storm.new_worker(6710 + index) for index in range(CONCURRENCY)]
    calls = together([lambda w=w: env.timed(launcher.launch_argv(w), who) for w in workers])
    for worker, call in zip(workers, calls):
        if call.code == 0:
            worker.launched = True
            launcher.samples["claunch"].append(call.ms)
        else:
            launcher.fail(f"concurrent run-oci-container {worker.container_id}", call)
    launched = [w for w in workers if w.launched]
    for worker in launched:
        if confirm_running(launcher, worker) and not stop(launcher, worker, who, None):
            env.timed(launcher.signal_argv(worker.pid, 9), who)
    for worker in launched:
        wait_exited(launcher, worker)
    calls = together([lambda w=w: env.timed(launcher.reap_argv(w.container_id), who)
                      for w in launched])
    for worker, call in zip(launched, calls):
        if call.code == 0:
            launcher.samples["creap"].append(call.ms)
        else:
            launcher.fail(f"concurrent reap-oci-container {worker.container_id}", call)


def loadavg() -> str:
    return " ".join(open("/proc/loadavg").read().split()[:3])


def by_name(launchers, name):
    return next(launcher for launcher in launchers if launcher.name == name)


# --- report ------------------------------------------------------------------------------------

ROWS = (
    ("launch", "OCI launch (run-oci-container, 3 layers)", "ratio", 0.7),
    ("signal", "signal", "bare", FLOOR_MS),
    ("reap", "reap-oci-container after the worker exited", "ratio", 1.5),
    ("check", "--check-config (ours) / --checksetup (C)", "bare", FLOOR_MS),
    ("claunch", f"{CONCURRENCY} concurrent launches, p50", "ratio", 1.0),
    ("creap", f"{CONCURRENCY} concurrent reaps, p50", "ratio", 1.5),
)


def report(ours: Launcher, reference: Launcher | None, bare_ms: float, args) -> bool:
    met_all = True
    ref_label = "C launcher" if reference else "bare python3"
    header = f"| row | ours median (ms) | {ref_label} median (ms) | ratio | target | result |"
    lines = [header, "|---|---:|---:|---:|---|---|"]
    for key, title, kind, bound in ROWS:
        ours_ms = env.median(ours.samples[key])
        ref_ms = env.median(reference.samples[key]) if reference else bare_ms
        ratio = ours_ms / ref_ms if ref_ms else float("nan")
        if kind == "bare":
            target = f"<= bare + {bound:.0f} ms ({bare_ms + bound:.1f})"
            met = ours_ms <= bare_ms + bound
        elif reference:
            target = f"<= {bound} x C"
            met = ratio <= bound
        else:
            target, met = f"{bound} x C (no C launcher given)", None
        if met is False or ours_ms != ours_ms:
            met_all = False
        verdict = "met" if met else ("not met" if met is False else "n/a")
        lines.append(f"| {title} | {ours_ms:.1f} | {ref_ms:.1f} | {ratio:.2f} | {target} | {verdict} |")
    print("\n".join(lines))
    print(f"bare interpreter (python3 -I -S -c pass, as the supervisor): {bare_ms:.1f} ms median")
    print(f"samples: {args.runs} sequential rounds; {args.concurrent_rounds} concurrent rounds of "
          f"{CONCURRENCY} (p50 over {args.concurrent_rounds * CONCURRENCY} calls)")
    return met_all


def print_samples(launchers, bare) -> None:
    for launcher in launchers:
        for key, title, _, _ in ROWS:
            values = " ".join(f"{v:.0f}" for v in launcher.samples[key])
            print(f"  {launcher.name:9} {key:8} {values}")
    print(f"  bare      {' '.join(f'{v:.0f}' for v in bare)}")


# --- main --------------------------------------------------------------------------------------

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ours", required=True, help="install prefix or its bin/worker-launcher")
    parser.add_argument("--reference", required=True,
                        help="the C worker-launcher (root:<group> 6550), or 'none' for the floor")
    parser.add_argument("--reference-config",
                        help="its worker-launcher.cfg (default: the one its --checksetup names)")
    parser.add_argument("--runs", type=int, default=20, help="sequential rounds (default 20)")
    parser.add_argument("--concurrent-rounds", type=int, default=5,
                        help=f"rounds of {CONCURRENCY} concurrent launches and reaps (default 5)")
    parser.add_argument("--samples", action="store_true", help="also print every sample")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root")
    for tool in ("mksquashfs", "losetup", env.runc_binary(), env.BUSYBOX):
        if not shutil.which(tool) and not os.path.exists(tool):
            sys.exit(f"{tool} is missing (tools/deps installs it)")

    env.ensure_accounts()
    our_binary, our_conf = resolve_ours(args.ours)
    our_group = os.stat(our_binary).st_gid
    extra = {our_group}
    reference = None
    ref_cfg = {}
    if args.reference != "none":
        ref_binary = Path(args.reference).resolve()
        st = os.stat(ref_binary)
        if st.st_uid != 0 or not st.st_mode & stat.S_ISUID:
            sys.exit(f"--reference {ref_binary} is not setuid root (install it root:<group> 6550)")
        extra.add(st.st_gid)
        cfg_path = reference_config(ref_binary, args.reference_config, env.as_supervisor(extra))
        ref_cfg = read_cfg(cfg_path)
        ref_root = ref_cfg.get("worker.launcher.oci.run-root", "/run/worker-launcher")
        if os.path.realpath(ref_root) == os.path.realpath(OUR_RUN_ROOT):
            sys.exit(f"the reference's run root {ref_root} is ours: give it its own")
        reference = Launcher("reference", ref_binary, ref_root, "--checksetup", st.st_gid)
    who = env.as_supervisor(extra)
    ours = Launcher("ours", our_binary, OUR_RUN_ROOT, "--check-config", our_group)
    launchers = [ours] + ([reference] if reference else [])
    created_roots = [root for root in (ours.run_root, reference and reference.run_root)
                     if root and not os.path.exists(root)]

    env.BENCH_ROOT.mkdir(mode=0o755, exist_ok=True)
    os.chmod(env.BENCH_ROOT, 0o755)
    bench_dir = Path(tempfile.mkdtemp(prefix="run-", dir=env.BENCH_ROOT))
    os.chmod(bench_dir, 0o755)
    started = datetime.datetime.now().astimezone()
    print(f"bench_compare: {started:%Y-%m-%d %H:%M %Z} on {platform.node()}, {os.cpu_count()} cpus, "
          f"kernel {platform.release()}, runc {env.runc_binary()}, load {loadavg()}")
    print(f"ours:      {our_binary} (config {our_conf}, written for this run; run root {OUR_RUN_ROOT})")
    if reference:
        print(f"reference: {reference.binary} (run root {reference.run_root})")
    else:
        print("reference: none: the floor is python3 -I -S -c pass")

    storm = env.Storm(bench_dir / "node")
    policy = bench_dir / "policy.json"
    policy.write_text(json.dumps(storm.policy()))
    os.chmod(policy, 0o644)
    restore = write_our_config(our_conf, grp.getgrgid(our_group).gr_name, policy)
    bare = []
    leftovers, forced = [], []
    run_roots = [launcher.run_root for launcher in launchers]
    try:
        ports = {"ours": 6700, "reference": 6701}
        for index in range(1 + args.runs):  # round 0 warms up: mounts the layers, not counted
            order = launchers if index % 2 else list(reversed(launchers))
            sequential_round(order, storm, who, index > 0, bare, ports)
            if index == 0 and any(l.failures for l in launchers):
                break
        if not any(l.failures for l in launchers):
            for index in range(args.concurrent_rounds):
                for launcher in (launchers if index % 2 else list(reversed(launchers))):
                    concurrent_round(launcher, storm, who)
    finally:
        for launcher in launchers:  # what an operator does to empty the layer cache: keep 0
            call = env.timed(launcher.reap_argv("6799-00000000-0000-4000-8000-000000000000", 0), who)
            if call.code not in (0, 1) or (call.code == 1 and launcher is ours):
                launcher.fail("final reap-oci-container <unused id> 0", call)
        ids = [worker.container_id for worker in storm.workers]
        leftovers = env.leaks(run_roots, bench_dir, storm.layers, ids)
        if leftovers:
            forced = env.force_cleanup(run_roots, bench_dir, storm.layers, ids)
        env.remove_cgroup_parents()
        restore()
        if not env.mounts_under([bench_dir]):
            shutil.rmtree(bench_dir)
        for root in created_roots:
            if os.path.isdir(root) and not env.mounts_under([root]):
                shutil.rmtree(root)

    print(f"\nload average at the end: {loadavg()}")
    met = report(ours, reference, env.median(bare), args)
    if args.samples:
        print_samples(launchers, bare)
    for launcher in launchers:
        for note in launcher.notes:
            print(f"NOTE ({launcher.name}): {note}")
    failures = [(l.name, f) for l in launchers for f in l.failures]
    for name, failure in failures:
        print(f"FAILURE ({name}): {failure}")
    if leftovers:
        print("LEAK: " + "; ".join(leftovers))
        print("cleaned by force: " + "; ".join(forced))
    else:
        print("no leak: no mount under the run roots or the bench directory, no loop device on "
              "the layer files, no runc container, no cgroup left")
    ok = met and not failures and not leftovers
    if not ok:
        print("NOT all targets met (see above)")
    elif reference:
        print("all targets met")
    else:
        print("the targets that apply without a C launcher (signal, check) are met; the OCI rows "
              "need --reference <C launcher>")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
