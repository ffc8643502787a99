"""The launcher's own cost for `run-docker-cmd` with Storm's `ps` command file.

Run as root: .venv/bin/python benchmarks/bench_docker.py
docker.binary points at /bin/true (root-owned, exits at once), so the time measured is the
launcher from invocation until docker is exec'd: read and check the config and user, read
and validate the command file, locate the workdir, setsid, exec. Median of 20 runs as the
supervisor account, against `/usr/bin/python3 -I -c pass`. Target: at most +20 ms.
"""

import os
import sys
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_startup import median_ms  # noqa: E402
from harness import installed_launcher, run_as_supervisor  # noqa: E402

TARGET_MS = 20.0
STUB_DOCKER = "/bin/true"


def main() -> int:
    with installed_launcher() as launcher:
        launcher.write_config({"docker.binary": STUB_DOCKER})
        supervisor = run_as_supervisor()
        wid = str(uuid.uuid4())
        workdir = launcher.prefix / "workers" / wid
        workdir.mkdir(parents=True, mode=0o755)
        os.chown(workdir, supervisor["user"], supervisor["group"])
        command = workdir / "docker-command.sh"
        command.write_text(f"ps --filter=name={wid} --quiet=true")  # DockerManager.areAllProcessesDead
        os.chown(command, supervisor["user"], supervisor["group"])
        argv = [str(launcher.binary), "wlalice", "run-docker-cmd", str(workdir), str(command)]
        import subprocess

        check = subprocess.run(argv, capture_output=True, text=True, **supervisor)
        if check.returncode != 0:
            print(f"run-docker-cmd failed ({check.returncode}): {check.stderr.strip()}")
            return 1
        bare = median_ms(["/usr/bin/python3", "-I", "-c", "pass"], **supervisor)
        took = median_ms(argv, **supervisor)
        policy = launcher.conf.parent / "policy.yaml"
        policy.write_text(f"storm.local.dir: {launcher.prefix}\n")
        os.chmod(policy, 0o644)
        launcher.write_config({"docker.binary": STUB_DOCKER, "worker.launcher.policy": str(policy)})
        with_policy = median_ms(argv, **supervisor)
    over = took - bare
    print(f"bare interpreter             {bare:7.2f} ms")
    print(f"run-docker-cmd ps (to exec)  {took:7.2f} ms  (+{over:.2f} ms)")
    print(f"  the same with a policy     {with_policy:7.2f} ms  (+{with_policy - bare:.2f} ms;"
          f" loading YAML is the policy's cost)")
    verdict = "meets" if over <= TARGET_MS else "MISSES"
    print(f"{verdict} the target: at most +{TARGET_MS:.0f} ms over the bare interpreter")
    return 0 if over <= TARGET_MS else 1


if __name__ == "__main__":
    sys.exit(main())
