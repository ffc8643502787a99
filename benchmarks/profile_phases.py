"""Where each path's milliseconds go, phase by phase: the "Profile per path" table of
benchmarks/README.md.

Run as root:
    /usr/bin/python3 benchmarks/profile_phases.py --ours <prefix or binary> [--rounds 12]

On the node and requests of bench_compare.py, each round runs a warm launch, `signal <pid>
15`, the reap and --check-config. Each call is the installed entry run as the stub runs it
(interpreter flags -I -S -B, the ids the setuid stub gives it: see profile_ours.py), under a
small wrapper that times, without a profiler's overhead per line:
  - spawn to the first line of Python (the interpreter's start-up, setpriv's exec included);
  - every import (the outermost import statement, so nested imports count once);
  - the named functions of each phase (trust checks, config, policy, user lookup, each step
    of a launch and a reap, runc, mounts, the layer lock), inclusive, with the imports done
    inside them; they are wrapped when their module is first imported.
Also per round: the bare interpreter (`python3 -I -S -B -c pass`) and setpriv exec'ing
/bin/true the same way. Medians over the rounds. The wrapper is written, root-owned, into a
root-only directory (the launcher's code-trust check refuses anything else).
"""

import argparse
import ast
import grp
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_compare as bench  # noqa: E402
import compare_env as env  # noqa: E402
import profile_ours as prof  # noqa: E402

PYTHON = "/usr/bin/python3"
PHASES = {  # module -> functions (Class.method for methods)
    "worker_launcher.main": ["dispatch"],
    "worker_launcher.core.identity": ["start", "become", "acting_as.__enter__",
                                      "acting_as.__exit__"],
    "worker_launcher.paths.trust": ["require_trusted_code", "read_root_file", "root_chain"],
    "worker_launcher.launch": ["load_config", "load_policy"],
    "worker_launcher.core.users": ["lookup"],
    "worker_launcher.core.audit": ["finish"],
    "worker_launcher.classic.signals": ["send"],
    "worker_launcher.classic.dirs": ["prepare_workdir"],
    "worker_launcher.admin.checks": ["_config_checks", "_code_checks"],
    "worker_launcher.admin.runtime_checks": ["collect"],
    "worker_launcher.oci.request": ["Request.__init__", "Request.check_worker_files",
                                    "Request.check_cgroup", "Request.open_layers",
                                    "Request.open_binds"],
    "worker_launcher.oci.verbs": ["run_oci_container", "reap_oci_container", "mount_rootfs",
                                  "_remove_tree"],
    "worker_launcher.oci.launch": ["open_runc_outputs", "write_configs", "runc_run",
                                   "publish_pid", "runc_delete"],
    "worker_launcher.oci.runc_state": ["forget_stopped"],
    "worker_launcher.oci.cgroups": ["require_absent", "remove"],
    "worker_launcher.oci.binds": ["stage", "release"],
    "worker_launcher.oci.layers": ["mount_layers", "reap_layers", "LayerLock.__enter__"],
    "worker_launcher.oci.mountinfo": ["read"],
    "worker_launcher.paths.tree": ["remove_below"],
    "worker_launcher.privileged.mounts": ["mount_overlay", "mount_layer", "unmount"],
    "worker_launcher.privileged.spawn": ["run"],
}
STDLIB = {"posix": ["getgrouplist", "posix_spawn"], "pwd": ["getpwnam", "getpwuid"],
          "grp": ["getgrnam"], "fcntl": ["lockf"]}

# The wrapper: argv t_spawn out_file entry args... Times as described above and writes
# {"start": s, "run": s, "imports": s, "calls": {name: [calls, s, import s]}, "code": c}
# to out_file at the entry's os._exit. Kept free of imports beyond sys/posix/time/builtins:
# the launcher imports posix as os (os.py would cost ~1.2 ms), and so does the wrapper.
WRAPPER = '''import time
T_START = time.monotonic()
import builtins, posix as os, sys
T_SPAWN, OUT, ENTRY = float(sys.argv[1]), sys.argv[2], sys.argv[3]
OUT_FD = os.open(OUT, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
sys.argv = [ENTRY] + sys.argv[4:]
PHASES, STDLIB = %(phases)r, %(stdlib)r
calls, imports, patched = {}, {"depth": 0, "total": 0.0}, set()

def timed(name, function):
    def wrapper(*args, **kwargs):
        start, before = time.monotonic(), imports["total"]
        try:
            return function(*args, **kwargs)
        finally:
            entry = calls.setdefault(name, [0, 0.0, 0.0])
            entry[0] += 1
            entry[1] += time.monotonic() - start
            entry[2] += imports["total"] - before
    return wrapper

def patch(module, short, dotted):
    owner, name = module, dotted
    if "." in dotted:
        owner_name, name = dotted.split(".")
        owner = getattr(module, owner_name, None)
    function = getattr(owner, name, None) if owner is not None else None
    if function is not None:
        setattr(owner, name, timed(f"{short}.{dotted}", function))

for module_name, names in STDLIB.items():
    module = __import__(module_name)
    for name in names:
        patch(module, module_name, name)

real_import = builtins.__import__
def counted_import(*args, **kwargs):
    if imports["depth"]:
        return real_import(*args, **kwargs)
    imports["depth"] = 1
    start = time.monotonic()
    try:
        return real_import(*args, **kwargs)
    finally:
        imports["total"] += time.monotonic() - start
        imports["depth"] = 0
        for module_name, names in PHASES.items():
            module = sys.modules.get(module_name)
            if module is not None and module_name not in patched:
                patched.add(module_name)
                for name in names:
                    patch(module, module_name.replace("worker_launcher.", ""), name)
builtins.__import__ = counted_import

real_exit = os._exit
def timed_exit(code):
    end = time.monotonic()
    os.write(OUT_FD, repr({"start": T_START - T_SPAWN, "run": end - T_START,
                           "imports": imports["total"], "calls": calls,
                           "code": code}).encode())
    real_exit(code)
os._exit = timed_exit
with open(ENTRY) as handle:
    code = compile(handle.read(), ENTRY, "exec")
exec(code, {"__name__": "__main__"})
'''


def run_wrapped(prefix: list, wrapper: Path, entry: Path, args: list, out: Path) -> dict:
    start = time.monotonic()
    proc = subprocess.run([*prefix, PYTHON, "-I", "-S", "-B", str(wrapper), repr(start),
                           str(out), str(entry), *map(str, args)],
                          capture_output=True, text=True, cwd="/", env={"PATH": "/usr/bin:/bin"},
                          stdin=subprocess.DEVNULL, timeout=120)
    wall = time.monotonic() - start
    try:
        found = ast.literal_eval(out.read_text())
    except (OSError, SyntaxError, ValueError):
        sys.exit(f"{args[:2]}: no timing written (exit {proc.returncode}): {proc.stderr[-400:]}")
    if found["code"] != 0:
        sys.exit(f"{args[:2]}: exit {found['code']}: {proc.stderr[-400:]}")
    found["wall"] = wall
    return found


def timed_plain(argv: list) -> float:
    start = time.monotonic()
    subprocess.run(argv, cwd="/", env={"PATH": "/usr/bin:/bin"}, stdin=subprocess.DEVNULL,
                   stdout=subprocess.DEVNULL)
    return time.monotonic() - start


def report(results: dict) -> None:
    def median_ms(values):
        return statistics.median(values) * 1000

    for path, runs in results.items():
        if "calls" not in runs[0]:
            print(f"\n{path}: {median_ms([r['wall'] for r in runs]):.1f} ms")
            continue
        print(f"\n{path}: {median_ms([r['wall'] for r in runs]):.1f} ms from spawn to exit; "
              f"interpreter start {median_ms([r['start'] for r in runs]):.1f}, then "
              f"{median_ms([r['run'] for r in runs]):.1f} to os._exit, of which imports "
              f"{median_ms([r['imports'] for r in runs]):.1f}")
        names = {name for r in runs for name in r["calls"]}
        rows = []
        for name in names:
            got = [r["calls"].get(name, [0, 0.0, 0.0]) for r in runs]
            rows.append((median_ms([g[1] for g in got]), name,
                         statistics.median([g[0] for g in got]), median_ms([g[2] for g in got])))
        for incl, name, count, imported in sorted(rows, reverse=True):
            if incl >= 0.02:
                print(f"  {name:42} {count:4.0f} calls {incl:7.2f} ms  (imports in it {imported:.2f})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ours", required=True, help="install prefix or its bin/worker-launcher")
    parser.add_argument("--rounds", type=int, default=12)
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root")
    env.ensure_accounts()
    binary, conf = bench.resolve_ours(args.ours)
    group = os.stat(binary).st_gid
    who = env.as_supervisor({group})
    env.BENCH_ROOT.mkdir(mode=0o755, exist_ok=True)
    bench_dir = Path(tempfile.mkdtemp(prefix="phases-", dir=env.BENCH_ROOT))
    os.chmod(bench_dir, 0o755)
    wrapper = bench_dir / "phase_wrapper.py"
    wrapper.write_text(WRAPPER % {"phases": PHASES, "stdlib": STDLIB})
    os.chmod(wrapper, 0o644)
    out = bench_dir / "phases.out"
    storm = env.Storm(bench_dir / "node")
    policy = bench_dir / "policy.json"
    policy.write_text(json.dumps(storm.policy()))
    os.chmod(policy, 0o644)
    restore = bench.write_our_config(conf, grp.getgrgid(group).gr_name, policy)
    ours = bench.Launcher("ours", binary, bench.OUR_RUN_ROOT, "--check-config", group)
    prefix, entry = prof.emulated_setuid(group), prof.entry_of(binary)
    results = {}
    try:
        for index in range(args.rounds + 1):  # round 0 mounts the layers, not counted
            worker = storm.new_worker(6700)
            got = {"run-oci-container": run_wrapped(prefix, wrapper, entry,
                                                    ours.launch_argv(worker)[1:], out)}
            env.wait_started(worker)
            worker.pid = env.read_pid(worker)
            got["signal"] = run_wrapped(prefix, wrapper, entry, ours.signal_argv(worker.pid)[1:], out)
            env.wait_gone(worker.pid)
            got["reap-oci-container"] = run_wrapped(prefix, wrapper, entry,
                                                    ours.reap_argv(worker.container_id)[1:], out)
            got["--check-config"] = run_wrapped(prefix, wrapper, entry, ["--check-config"], out)
            got["bare interpreter (-I -S -B -c pass)"] = {
                "wall": timed_plain([*prefix, PYTHON, "-I", "-S", "-B", "-c", "pass"])}
            got["setpriv exec'ing /bin/true"] = {"wall": timed_plain([*prefix, "/bin/true"])}
            if index:
                for path, found in got.items():
                    results.setdefault(path, []).append(found)
    finally:
        for worker in storm.workers:
            subprocess.run([env.runc_binary(), "delete", "--force", worker.container_id],
                           capture_output=True)
            env.timed(ours.reap_argv(worker.container_id), who)
        env.timed(ours.reap_argv("6799-00000000-0000-4000-8000-000000000000", 0), who)
        ids = [worker.container_id for worker in storm.workers]
        left = env.leaks([bench.OUR_RUN_ROOT], bench_dir, storm.layers, ids)
        if left:
            print("LEAK: " + "; ".join(left))
            env.force_cleanup([bench.OUR_RUN_ROOT], bench_dir, storm.layers, ids)
        env.remove_cgroup_parents()
        restore()
        if not env.mounts_under([bench_dir]):
            shutil.rmtree(bench_dir)
    print(f"profile_phases: {args.rounds} rounds, load {bench.loadavg()}")
    report(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
