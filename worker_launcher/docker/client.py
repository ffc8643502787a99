"""The docker client, as root, through privileged.spawn: argv only, a fixed environment, a new
session. Its exit status is reported as docker's (a signal N as 128 + N), and each run is
recorded for the audit line as `docker <sub-command>`."""

from __future__ import annotations

from ..core.errors import ExitCode, LauncherError, os_error_text

DOCKER_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
QUERY_TIMEOUT = 120


def _status(code) -> int:
    if code is None:  # killed after the timeout
        return 128 + 9
    return code if code >= 0 else 128 - code


def run(launch, args: list, stdout: int = 1, fds=()) -> int:
    """docker `args` with our stderr (and stdout unless told) and the descriptors `fds` as
    its 3, 4, ...; returns its exit status."""
    from ..privileged import spawn

    from ..core import audit

    docker = launch.config.docker_binary
    try:
        code = spawn.run([docker, *args], stdout=stdout, env=DOCKER_ENV, fds=fds)
    except OSError as err:
        raise LauncherError(ExitCode.DOCKER_RUN_FAILED,
                            f"cannot execute {docker}: {os_error_text(err)}") from None
    audit.child_exit(f"docker {args[0]}", code)
    return _status(code)


def query(launch, args: list, fds=()) -> tuple:
    """(exit status, stdout, stderr) of docker `args`, both outputs captured."""
    from ..privileged import spawn

    from ..core import audit

    docker = launch.config.docker_binary
    try:
        code, out, err = spawn.output([docker, *args], env=DOCKER_ENV, timeout=QUERY_TIMEOUT)
    except OSError as error:
        raise LauncherError(ExitCode.DOCKER_RUN_FAILED,
                            f"cannot execute {docker}: {os_error_text(error)}") from None
    audit.child_exit(f"docker {args[0]}", code)
    return _status(code), out, err


def container_state(launch, name: str):
    """(full id, status) of the container `name`, None when there is none, or raise
    LauncherError when docker cannot say (dockerd down)."""
    code, out, err = query(launch, ["inspect", "--type", "container", "--format",
                                    "{{.Id}} {{.State.Status}}", name])
    if code == 0:
        fields = out.decode("ascii", "replace").split()
        if len(fields) == 2 and len(fields[0]) == 64 and fields[0].isalnum():
            return fields[0], fields[1]
    elif b"No such" in err:
        return None
    raise LauncherError(ExitCode.DOCKER_RUN_FAILED,
                        f"docker inspect {name} failed ({code}): "
                        f"{err.decode('ascii', 'replace').strip()[:200]}")
