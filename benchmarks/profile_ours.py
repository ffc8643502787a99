"""Where our launcher's time goes, on the same node and requests as bench_compare.py.

Run as root:
    /usr/bin/python3 benchmarks/profile_ours.py --ours <prefix or binary> [--reference <C launcher>]
        [--out <dir to keep the raw files>]

1. Interpreter start-up and imports: `python3 -X importtime` of the installed entry for
   --check-config, signal, a warm launch and a reap. The entry runs outside the stub with the
   ids the setuid stub gives it (real uid the supervisor account, effective uid root, real
   and effective gid the launcher group: `setpriv --ruid wlsuper --euid 0 --rgid G --egid G
   --groups ...`) and the stub's interpreter flags (-I -S -B).
2. System calls: `strace -f -c -u wlsuper` of one warm launch and one reap through the
   installed setuid binary (strace -u keeps the setuid bits working), ours and, with
   --reference, the C launcher. -f counts runc too: the whole call, as the supervisor waits for it.
3. Python time: cProfile of the core for one warm launch, run as in 1.
Every profiled launch is a real one (3 squashfs layers, runc), stopped and reaped after.
"""

import argparse
import grp
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_compare as bench  # noqa: E402
import compare_env as env  # noqa: E402

PYTHON = "/usr/bin/python3"
FLAGS = ["-I", "-S", "-B"]

# The entry's run() ends with os._exit (no atexit, no flush of anything else): made to
# raise SystemExit in this process only, so the profile can be written.
CPROFILE = """import cProfile, os, posix, sys
entry, out = sys.argv[1], sys.argv[2]
sys.argv = [entry] + sys.argv[3:]
real_exit, me, status = posix._exit, os.getpid(), 0
def _exit(code):
    if os.getpid() != me:
        real_exit(code)
    raise SystemExit(code)
posix._exit = os._exit = _exit  # the launcher calls posix._exit (it imports posix as os)
with open(entry) as f:
    code = compile(f.read(), entry, "exec")
profile = cProfile.Profile()
try:
    profile.runctx(code, {"__name__": "__main__"}, None)
except SystemExit as stop:
    status = stop.code
profile.dump_stats(out)
real_exit(status)
"""


def emulated_setuid(group: int) -> list:
    """setpriv prefix giving the entry the ids the stub's exec gives it."""
    groups = ",".join(str(g) for g in sorted(set(os.getgrouplist(env.SUPERVISOR, group))))
    return ["setpriv", f"--ruid={env.uid(env.SUPERVISOR)}", "--euid=0", f"--rgid={group}",
            f"--egid={group}", f"--groups={groups}", "--"]


def entry_of(binary: Path) -> Path:
    return binary.parent.parent / "lib" / "worker-launcher" / "entry.py"


def importtime(prefix: list, entry: Path, args: list) -> tuple:
    """(total ms, top imports by self time [(ms, name)], exit code)."""
    proc = subprocess.run([*prefix, PYTHON, *FLAGS, "-X", "importtime", "--", str(entry), *args],
                          capture_output=True, text=True, cwd="/", env={"PATH": "/usr/bin:/bin"},
                          stdin=subprocess.DEVNULL, timeout=120)
    rows = []
    for line in proc.stderr.splitlines():
        match = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)", line)
        if match:
            rows.append((int(match.group(1)) / 1000, int(match.group(2)) / 1000,
                         len(match.group(3)), match.group(4)))
    total = sum(row[0] for row in rows)
    top = sorted(((row[0], row[3]) for row in rows), reverse=True)[:8]
    return total, top, len(rows), proc.returncode


def find_child(proc, last_arg: str) -> int | None:
    """strace's child that runs the launcher: the one whose command line ends with
    `last_arg` and that is no longer strace (strace forks short-lived probes of itself at
    start-up, and the tracee is strace until its execve)."""
    children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children")
    want = last_arg.encode() + b"\0"
    while proc.poll() is None:
        for pid in children.read_text().split():
            try:
                line = Path(f"/proc/{pid}/cmdline").read_bytes()
                if line.endswith(want) and not line.startswith(b"strace\0"):
                    return int(pid)
            except OSError:
                pass
    return None


def strace_summary(binary: Path, args: list, keep: Path | None, label: str,
                   follow: bool = True) -> str:
    """strace -f -c of one call. -f also follows the worker runc starts; strace is
    interrupted (it then detaches and writes its summary) once the launcher itself exited."""
    import signal
    import time

    with tempfile.NamedTemporaryFile(suffix=".strace") as out:
        proc = subprocess.Popen(["strace", "-I2", *(["-f"] if follow else []), "-c", "-S", "calls",
                                 "-o", out.name,
                                 "-u", env.SUPERVISOR, str(binary), *args],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd="/",
                                env={"PATH": "/usr/bin:/bin"}, stdin=subprocess.DEVNULL)
        launcher = find_child(proc, args[-1])
        deadline = time.monotonic() + 60
        while launcher and not env.process_gone(launcher) and time.monotonic() < deadline:
            time.sleep(0.001)
        try:  # nothing else traced: strace ends by itself
            proc.wait(timeout=0.3)
        except subprocess.TimeoutExpired:  # still following the worker: detach
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=60)
        text = Path(out.name).read_text()
        problem = proc.stderr.read().decode(errors="replace").strip()
    if not text.strip():
        return f"strace wrote nothing (exit {proc.returncode}): {problem[-500:]}"
    if keep:
        (keep / f"strace-{label}.txt").write_text(text)
    rows = {}
    total = "?"
    for line in text.splitlines():
        fields = line.split()
        if not fields or line.startswith(("---", "% time")):
            continue
        if fields[-1] == "total":
            total = fields[3]
            continue
        calls = int(fields[3])
        rows[fields[-1]] = calls
    top = sorted(rows.items(), key=lambda item: -item[1])[:10]
    processes = sum(rows.get(name, 0) for name in ("clone", "clone3", "vfork", "fork"))
    return (f"{total} system calls, {rows.get('execve', 0)} execve, {processes} clone/vfork; "
            "most called: " + ", ".join(f"{name} {calls}" for name, calls in top))


def cprofile(prefix: list, entry: Path, args: list, out: Path) -> tuple:
    proc = subprocess.run([*prefix, PYTHON, *FLAGS, "-c", CPROFILE, str(entry), str(out), *args],
                          capture_output=True, text=True, cwd="/", env={"PATH": "/usr/bin:/bin"},
                          stdin=subprocess.DEVNULL, timeout=120)
    import io
    import pstats

    lines = []
    for key in ("cumulative", "tottime"):
        buffer = io.StringIO()
        stats = pstats.Stats(str(out), stream=buffer)
        stats.strip_dirs().sort_stats(key).print_stats(18)
        lines.append(buffer.getvalue())
    return proc.returncode, proc.stderr.strip(), lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ours", required=True)
    parser.add_argument("--reference", default="none")
    parser.add_argument("--out", help="keep the raw importtime, strace and cProfile files here")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root")
    for tool in ("setpriv", "strace"):
        if not shutil.which(tool):
            sys.exit(f"{tool} is missing")
    env.ensure_accounts()
    binary, conf = bench.resolve_ours(args.ours)
    group = os.stat(binary).st_gid
    extra = {group}
    reference = None
    if args.reference != "none":
        reference = Path(args.reference).resolve()
        extra.add(os.stat(reference).st_gid)
    who = env.as_supervisor(extra)
    keep = Path(args.out) if args.out else None
    if keep:
        keep.mkdir(parents=True, exist_ok=True)

    env.BENCH_ROOT.mkdir(mode=0o755, exist_ok=True)
    bench_dir = Path(tempfile.mkdtemp(prefix="profile-", dir=env.BENCH_ROOT))
    os.chmod(bench_dir, 0o755)
    storm = env.Storm(bench_dir / "node")
    policy = bench_dir / "policy.json"
    policy.write_text(json.dumps(storm.policy()))
    os.chmod(policy, 0o644)
    restore = bench.write_our_config(conf, grp.getgrgid(group).gr_name, policy)
    ours = bench.Launcher("ours", binary, bench.OUR_RUN_ROOT, "--check-config", group)
    roots = [bench.OUR_RUN_ROOT]
    if reference:
        cfg = bench.reference_config(reference, None, who)
        roots.append(bench.read_cfg(cfg).get("worker.launcher.oci.run-root", "/run/worker-launcher"))
    fresh_roots = [not os.path.exists(root) for root in roots]
    prefix, entry = emulated_setuid(group), entry_of(binary)
    failures = []

    def finish(worker, launcher=ours):
        """Stop and reap a profiled worker through the installed launcher."""
        if not env.wait_started(worker):
            failures.append(f"{worker.container_id} did not start")
        worker.pid = env.read_pid(worker)
        if worker.pid:
            bench.stop(launcher, worker, who, None)
            env.wait_gone(worker.pid)
        bench.reap(launcher, worker, who, None)

    try:
        worker = storm.new_worker(6700)  # warm the layers, as in bench_compare
        if not bench.launch(ours, worker, who, None):
            sys.exit(f"warm-up launch failed: {ours.failures}")
        finish(worker)

        print("## 1. start-up and imports (python3 -X importtime, ids as under the stub)\n")
        cases = [("--check-config", lambda: ["--check-config"])]
        for label, make in cases:
            total, top, count, code = importtime(prefix, entry, make())
            print(f"{label}: exit {code}, {count} modules, {total:.1f} ms in imports; "
                  "slowest (self): " + ", ".join(f"{name} {ms:.1f}" for ms, name in top))
        worker = storm.new_worker(6700)
        total, top, count, code = importtime(prefix, entry, ours.launch_argv(worker)[1:])
        print(f"run-oci-container: exit {code}, {count} modules, {total:.1f} ms in imports; "
              "slowest (self): " + ", ".join(f"{name} {ms:.1f}" for ms, name in top))
        env.wait_started(worker)
        worker.pid = env.read_pid(worker)
        if worker.pid:
            total, top, count, code = importtime(prefix, entry, ours.signal_argv(worker.pid)[1:])
            print(f"signal: exit {code}, {count} modules, {total:.1f} ms in imports; "
                  "slowest (self): " + ", ".join(f"{name} {ms:.1f}" for ms, name in top))
            env.wait_gone(worker.pid)
        total, top, count, code = importtime(prefix, entry, ours.reap_argv(worker.container_id)[1:])
        print(f"reap-oci-container: exit {code}, {count} modules, {total:.1f} ms in imports; "
              "slowest (self): " + ", ".join(f"{name} {ms:.1f}" for ms, name in top))

        print("\n## 2. strace -f -c of one warm launch and one reap (through the setuid binary)\n")
        subjects = [("ours", binary, ours)]
        if reference:
            cref = bench.Launcher("reference", reference, "", "--checksetup", 0)
            warm = storm.new_worker(6701)
            if bench.launch(cref, warm, who, None):
                finish(warm, cref)
            subjects.append(("C", reference, cref))
        for label, path, launcher in subjects:
            worker = storm.new_worker(6700 if label == "ours" else 6701)
            print(f"{label} launch, its own process only (no -f): "
                  + strace_summary(path, launcher.launch_argv(worker)[1:], keep,
                                   f"{label}-launch-nof", follow=False))
            finish(worker, launcher)
            worker = storm.new_worker(6700 if label == "ours" else 6701)
            print(f"{label} launch: " + strace_summary(path, launcher.launch_argv(worker)[1:], keep,
                                                      f"{label}-launch"))
            env.wait_started(worker)
            worker.pid = env.read_pid(worker)
            if worker.pid:
                bench.stop(launcher, worker, who, None)
                env.wait_gone(worker.pid)
            print(f"{label} reap:   " + strace_summary(path, launcher.reap_argv(worker.container_id)[1:],
                                                      keep, f"{label}-reap"))

        print("\n## 3. cProfile of one warm launch (entry run as in 1)\n")
        worker = storm.new_worker(6700)
        out = (keep or bench_dir) / "launch.pstats"
        code, stderr, tables = cprofile(prefix, entry, ours.launch_argv(worker)[1:], out)
        print(f"exit {code} {stderr}")
        for table in tables:
            print("\n".join(line for line in table.splitlines()[3:] if line.strip()))
            print()
        finish(worker)
        for launcher in [ours] + ([subjects[1][2]] if reference else []):
            failures += launcher.failures
    finally:
        for label, path in [("ours", binary)] + ([("C", reference)] if reference else []):
            env.timed([str(path), env.USER, "reap-oci-container",
                       "6799-00000000-0000-4000-8000-000000000000", "0"], who)
        ids = [w.container_id for w in storm.workers]
        left = env.leaks(roots, bench_dir, storm.layers, ids)
        created_roots = [root for root, fresh in zip(roots, fresh_roots) if fresh]
        if left:
            print("LEAK: " + "; ".join(left))
            env.force_cleanup(roots, bench_dir, storm.layers, ids)
        env.remove_cgroup_parents()
        restore()
        if not env.mounts_under([bench_dir]):
            shutil.rmtree(bench_dir)
        for root in created_roots:
            if not env.mounts_under([root]):
                shutil.rmtree(root, ignore_errors=True)
    for note in ours.notes:
        print(f"NOTE: {note}")
    for failure in failures:
        print(f"FAILURE: {failure}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
