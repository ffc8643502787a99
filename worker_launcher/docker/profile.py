"""Storm's `profile-docker-container <worker-id> <command-file>`: the profiler in a docker
worker.

The worker id names the user's container only if `docker inspect --type container` shows
one named /<worker-id>, running, started with --user=<uid>:<gid> of the user (as
docker-run allows for that user), not paused or restarting. The profiler then runs with
`runc exec` against docker's own runc state (classic/profiler.py), found by the container's
full id: the same runtime and the same confinement `docker exec` would use (docker exec is
containerd asking runc), with two differences that are the point: the process gets umask
0027, which docker exec cannot give (its processes get 0022), and only the environment of
process.json, not the container's. runc's state must show that container running with the
init docker reported. Anything else is refused with exit 9; a docker whose containers runc
does not keep in one of DOCKER_RUNC_ROOTS (another runtime) exits 7.
"""

import posix as os
import stat

from ..classic import profiler
from ..core.errors import ExitCode, LauncherError, os_error_text
from ..core.tokens import worker_id_ok
from . import DOCKER_RUNC_ROOTS

DOCKER_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
INSPECT_TIMEOUT = 120
_HEX = frozenset("0123456789abcdef")


def profile_docker_container(launch, worker_id: str, command_file: str) -> int:
    if not worker_id_ok(worker_id):
        raise LauncherError(ExitCode.INVALID_CONTAINER_NAME,
                            f"invalid container name {worker_id!r}: not a Storm worker id")
    script = profiler.profiler_path(launch)
    arguments = profiler.read_arguments(launch, command_file)
    target = find_container(launch, worker_id)
    try:
        return profiler.run(launch, target, script, arguments)
    finally:
        target.close()


def find_container(launch, worker_id: str) -> profiler.Target:
    from ..core import audit

    who = launch.user.identity
    container_id, pid = container_facts(inspect(launch, worker_id), worker_id, who.uid, who.gid,
                                        launch.user.name)
    audit.note(container=worker_id, docker_id=container_id)
    what = f"docker container {worker_id}"
    pidfd = profiler.open_pidfd(pid, what)
    try:
        root = runc_root(launch, container_id, pid, what)
        # As docker-run has it: --group-add for every group of the user, the primary one too.
        return profiler.Target(container_id, root, pid, pidfd, who.groups, worker_id)
    except BaseException:
        os.close(pidfd)
        raise


def inspect(launch, worker_id: str):
    """The document `docker inspect --type container <worker-id>` prints (a list)."""
    from ..core.fastjson import loads
    from ..privileged import spawn

    docker = launch.config.docker_binary
    try:
        code, out, err = spawn.output([docker, "inspect", "--type", "container", worker_id],
                                      env=DOCKER_ENV, timeout=INSPECT_TIMEOUT)
    except OSError as error:
        raise LauncherError(ExitCode.INVALID_CONTAINER_PID,
                            f"cannot run {docker} inspect: {os_error_text(error)}") from None
    if code != 0:
        said = err.decode("utf-8", "replace").strip().splitlines()
        raise profiler.refuse(f"docker container {worker_id}",
                              f"no running docker container {worker_id} (docker inspect: "
                              f"{said[-1] if said else f'exit {code}'})")
    try:
        return loads(out.decode("utf-8"))
    except ValueError:
        raise profiler.refuse(f"docker container {worker_id}",
                              "docker inspect printed no JSON") from None


def container_facts(document, worker_id: str, uid: int, gid: int, user: str) -> tuple:
    """(full id, init pid) of the inspected container when it is the user's running worker
    `worker_id`; exit 9 naming the first mismatch otherwise. Pure."""
    what = f"docker container {worker_id}"
    if not (isinstance(document, list) and len(document) == 1
            and isinstance(document[0], dict)):
        raise profiler.refuse(what, "docker inspect did not describe one container")
    info = document[0]
    state, config = info.get("State"), info.get("Config")
    container_id = info.get("Id")
    if not (isinstance(state, dict) and isinstance(config, dict) and isinstance(container_id, str)
            and len(container_id) == 64 and set(container_id) <= _HEX):
        raise profiler.refuse(what, "docker inspect did not describe a container")
    if info.get("Name") != f"/{worker_id}":
        raise profiler.refuse(what, f"the container found is named {info.get('Name')!r}")
    if config.get("User") != f"{uid}:{gid}":
        raise profiler.refuse(what, f"it runs as {config.get('User')!r}, not as {user} "
                                    f"({uid}:{gid})")
    if state.get("Running") is not True or state.get("Paused") or state.get("Restarting"):
        raise profiler.refuse(what, f"it is {state.get('Status')!r}, not running")
    pid = state.get("Pid")
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 1:
        raise profiler.refuse(what, f"docker reports no init pid ({pid!r})")
    return container_id, pid


def _is_dir(path: str) -> bool:
    try:
        return stat.S_ISDIR(os.stat(path).st_mode)
    except OSError:
        return False


def runc_root(launch, container_id: str, pid: int, what: str) -> str:
    """The root-owned runc state directory that has `container_id` running with init `pid`."""
    from ..paths.trust import chain_problem

    looked = []
    for root in DOCKER_RUNC_ROOTS:
        if not _is_dir(root) or chain_problem(root):
            continue
        state = profiler.runc_state(launch, root, container_id)
        if state is None:
            looked.append(root)
            continue
        problem = profiler.state_problem(state, pid)
        if problem:
            raise profiler.refuse(what, f"runc's state of {container_id}: {problem}")
        return root
    raise LauncherError(ExitCode.UNABLE_TO_EXECUTE_CONTAINER_SCRIPT,
                        f"cannot profile {what}: runc does not know {container_id} under "
                        f"{' or '.join(looked or DOCKER_RUNC_ROOTS)} (is docker's runtime runc?)")
