"""Storm's `profile-docker-container <worker-id> <command-file>`: the profiler in a docker
worker."""

from ..classic.profiler import PROFILER_ENV, enter
from ..core.errors import ExitCode, LauncherError
from ..core.tokens import worker_id_ok


def profile_docker_container(launch, worker_id: str, command_file: str) -> int:
    if not worker_id_ok(worker_id):
        raise LauncherError(ExitCode.INVALID_CONTAINER_NAME,
                            f"invalid container name {worker_id!r}: not a Storm worker id")
    return enter(launch, docker_pid(launch, worker_id), command_file)


def docker_pid(launch, worker_id: str) -> int:
    """`docker inspect --format {{.State.Pid}} <worker-id>`, as root, argv only."""
    import subprocess

    docker = launch.config.docker_binary
    try:
        result = subprocess.run([docker, "inspect", "--format", "{{.State.Pid}}", worker_id],
                                stdin=subprocess.DEVNULL, capture_output=True, env=PROFILER_ENV,
                                timeout=120, check=False)
    except (OSError, subprocess.SubprocessError) as err:
        raise LauncherError(ExitCode.INVALID_CONTAINER_PID,
                            f"cannot run {docker} inspect: {err}") from None
    text = result.stdout.decode("ascii", "replace").strip()
    if result.returncode != 0 or not text.isdigit() or int(text) <= 1:
        raise LauncherError(ExitCode.INVALID_CONTAINER_PID,
                            f"no running docker container {worker_id} (docker inspect said "
                            f"{text or result.stderr.decode('ascii', 'replace').strip()!r})")
    return int(text)
