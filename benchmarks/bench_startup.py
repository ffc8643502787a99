"""Start-up cost of the installed setuid launcher against the bare interpreter.

Run as root: .venv/bin/python benchmarks/bench_startup.py
Installs into a private prefix, then times (median of 20) `--check-config` and `--help`
run as the supervisor account, and `/usr/bin/python3 -I -c pass`. Target: the launcher adds
at most 15 ms median to the bare interpreter.
"""

import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import installed_launcher, run_as_supervisor  # noqa: E402

RUNS = 20
TARGET_MS = 15.0


def median_ms(argv, **kwargs) -> float:
    samples = []
    for _ in range(RUNS):
        start = time.perf_counter()
        subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kwargs)
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


def main() -> int:
    with installed_launcher() as launcher:
        bare = median_ms(["/usr/bin/python3", "-I", "-c", "pass"], **run_as_supervisor())
        worst = 0.0
        print(f"bare interpreter          {bare:7.2f} ms")
        for args in (["--check-config"], ["--help"]):
            took = median_ms([str(launcher.binary), *args], **run_as_supervisor())
            worst = max(worst, took - bare)
            print(f"launcher {' '.join(args):16} {took:7.2f} ms  (+{took - bare:.2f} ms)")
    verdict = "meets" if worst <= TARGET_MS else "MISSES"
    print(f"{verdict} the target: at most +{TARGET_MS:.0f} ms (worst +{worst:.2f} ms)")
    return 0 if worst <= TARGET_MS else 1


if __name__ == "__main__":
    sys.exit(main())
