"""code-dir on a tree of 10,000 files against `chown -R` + `chmod -R` of the same tree.

Run as root: .venv/bin/python benchmarks/bench_code_dir.py
Installs into a private prefix with a policy naming a storm.local.dir, then, median of 5 on
a freshly built tree each time (100 directories of 100 files, owned by the supervisor
account): the launcher's `code-dir` run as the supervisor account, and as the floor
`chown -R user:group` followed by `chmod -R u-w,g+rwX,o-rwx,g+s` run as root (the same
changes without the safety checks). Target: at most 2x the floor.
"""

import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import conftest, installed_launcher, run_as_supervisor  # noqa: E402

RUNS = 5
DIRS, FILES_PER_DIR = 100, 100
TARGET_RATIO = 2.0
USER = "wlalice"


def build_tree(top: Path, uid: int, gid: int) -> None:
    top.mkdir(mode=0o755)
    os.chown(top, uid, gid)
    for d in range(DIRS):
        sub = top / f"d{d:03}"
        sub.mkdir(mode=0o755)
        os.chown(sub, uid, gid)
        for f in range(FILES_PER_DIR):
            path = sub / f"f{f:03}"
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            os.fchown(fd, uid, gid)
            os.close(fd)


def timed(argv, **kwargs) -> float:
    start = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, **kwargs)
    return (time.perf_counter() - start) * 1000


def main() -> int:
    import pwd

    uid = pwd.getpwnam(conftest.SUPERVISOR).pw_uid
    gid = __import__("grp").getgrnam(conftest.GROUP).gr_gid
    with installed_launcher() as launcher:
        local = launcher.prefix / "storm" / "local"
        local.mkdir(parents=True, mode=0o755)
        os.chmod(local.parent, 0o755)
        policy = launcher.conf.parent / "policy.yaml"
        policy.write_text(f"storm.local.dir: {local}\n")
        os.chmod(policy, 0o644)
        launcher.write_config({"worker.launcher.policy": str(policy)})
        ours, floor = [], []
        for run in range(RUNS):
            top = local / f"topo-{run}"
            build_tree(top, uid, gid)
            ours.append(timed([str(launcher.binary), USER, "code-dir", str(top)],
                              executable=str(launcher.binary), **run_as_supervisor()))
            shutil.rmtree(top)
            build_tree(top, uid, gid)
            floor.append(timed(["chown", "-R", f"{USER}:{conftest.GROUP}", str(top)])
                         + timed(["chmod", "-R", "u-w,g+rwX,o-rwx,g+s", str(top)]))
            shutil.rmtree(top)
    ours_ms, floor_ms = statistics.median(ours), statistics.median(floor)
    ratio = ours_ms / floor_ms
    entries = DIRS * (FILES_PER_DIR + 1) + 1
    print(f"tree: {entries} entries ({DIRS * FILES_PER_DIR} files), median of {RUNS}")
    print(f"code-dir (launcher, as supervisor)  {ours_ms:8.1f} ms   runs: "
          + " ".join(f"{t:.1f}" for t in ours))
    print(f"chown -R + chmod -R (root, floor)   {floor_ms:8.1f} ms   runs: "
          + " ".join(f"{t:.1f}" for t in floor))
    verdict = "meets" if ratio <= TARGET_RATIO else "MISSES"
    print(f"{verdict} the target: at most {TARGET_RATIO:.0f}x the floor (measured {ratio:.2f}x)")
    return 0 if ratio <= TARGET_RATIO else 1


if __name__ == "__main__":
    sys.exit(main())
