"""The fixed set of commands: our verb names, Storm's names, argument lists and handlers.

Each handler below imports its verb module only when its command runs (start-up stays lean)
and calls it as function(launch, *args) with a launch.Launch context. A unit test imports
every handler's module and checks each row's argument count against the verb's signature.
"""


def _mount_layers(launch, config):
    from .oci.verbs import mount_layers_verb
    return mount_layers_verb(launch, config)


def _run_oci_container(launch, workdir, config, artifacts):
    from .oci.verbs import run_oci_container
    return run_oci_container(launch, workdir, config, artifacts)


def _reap_oci_container(launch, container_id, keep):
    from .oci.verbs import reap_oci_container
    return reap_oci_container(launch, container_id, keep)


def _docker_run(launch, workdir, command_file):
    from .docker.run import docker_run
    return docker_run(launch, workdir, command_file)


def _launch_docker_container(launch, workdir, command_file):
    from .docker.run import launch_docker_container
    return launch_docker_container(launch, workdir, command_file)


def _run_docker_cmd(launch, workdir, command_file):
    from .docker.run import run_docker_cmd
    return run_docker_cmd(launch, workdir, command_file)


def _nsenter(launch, target, command_file):
    if target.isdigit():
        return _profile_oci_container(launch, target, command_file)
    return _profile_docker_container(launch, target, command_file)


def _profile_docker_container(launch, worker_id, command_file):
    from .docker.profile import profile_docker_container
    return profile_docker_container(launch, worker_id, command_file)


def _profile_oci_container(launch, pid, command_file):
    from .oci.profile import profile_oci_container
    return profile_oci_container(launch, pid, command_file)


def _code_dir(launch, path):
    from .classic.dirs import code_dir
    return code_dir(launch, path)


def _artifacts_dir(launch, path):
    from .classic.dirs import artifacts_dir
    return artifacts_dir(launch, path)


def _blob(launch, path):
    from .classic.dirs import blob
    return blob(launch, path)


def _rmr(launch, path):
    from .classic.dirs import rmr
    return rmr(launch, path)


def _worker(launch, workdir, script):
    from .classic.worker import worker
    return worker(launch, workdir, script)


def _profiler(launch, workdir, script):
    from .classic.worker import profiler
    return profiler(launch, workdir, script)


def _signal(launch, pid, signal):
    from .classic.signals import signal as send_signal
    return send_signal(launch, pid, signal)


class Command:
    """One row of the table. (A plain class: typing.NamedTuple costs ~10 ms per call.)"""

    __slots__ = ("name", "args", "handler", "summary", "ours", "verb", "user_groups")

    def __init__(self, name: str, args: tuple, handler, summary: str, ours: bool = False,
                 verb: str = None, user_groups: bool = True):
        self.name = name
        self.args = args  # argument names, for usage lines
        self.handler = handler
        self.summary = summary
        self.ours = ours  # one of our five verb names (listed first in --help)
        self.verb = verb or name  # our name for a Storm command (the audit log names both)
        self.user_groups = user_groups  # the user's supplementary groups are looked up


COMMANDS = (
    Command("mount-layers", ("oci-config.json",), _mount_layers,
            "mount a container's squashfs layers and overlay root, print its path", ours=True),
    Command("runc-run", ("workdir", "oci-config.json", "artifacts-dir"), _run_oci_container,
            "set up the workdir, mount the layers, launch the worker with runc", ours=True),
    Command("reap-layers", ("container-id", "keep-count"), _reap_oci_container,
            "delete the container, unmount its root and unused layers", ours=True,
            user_groups=False),  # acts as root only
    Command("run-oci-container", ("workdir", "oci-config.json", "artifacts-dir"),
            _run_oci_container, "Storm's name for runc-run", verb="runc-run"),
    Command("reap-oci-container", ("container-id", "keep-count"), _reap_oci_container,
            "Storm's name for reap-layers", verb="reap-layers", user_groups=False),
    Command("docker-run", ("workdir", "command-file"), _docker_run,
            "run a validated docker command file (sets up the workdir for run)", ours=True),
    Command("nsenter", ("pid-or-worker-id", "command-file"), _nsenter,
            "run the profiler script in the user's container as the user", ours=True),
    Command("launch-docker-container", ("workdir", "command-file"), _launch_docker_container,
            "set up the workdir, then run the validated docker command file", verb="docker-run"),
    Command("run-docker-cmd", ("workdir", "command-file"), _run_docker_cmd,
            "run the validated docker command file (run, wait, ps, stop, rm)",
            verb="docker-run"),
    Command("profile-docker-container", ("worker-id", "command-file"),
            _profile_docker_container, "run the profiler script in the user's docker container",
            verb="nsenter"),
    Command("profile-oci-container", ("pid", "command-file"), _profile_oci_container,
            "run the profiler script in the user's runc container", verb="nsenter"),
    Command("code-dir", ("dir",), _code_dir, "give a topology's code to the user, read-only"),
    Command("artifacts-dir", ("dir",), _artifacts_dir,
            "give a worker's artifacts directory to the user, writable"),
    Command("blob", ("path",), _blob, "give a localized blob to the user, read-only"),
    Command("rmr", ("path",), _rmr,
            "delete a tree as the user, the top entry as the supervisor account"),
    Command("worker", ("workdir", "script"), _worker,
            "set up the workdir, then run the script there as the user"),
    Command("profiler", ("workdir", "script"), _profiler,
            "run the script in the workdir as the user"),
    Command("signal", ("pid", "signal"), _signal,
            "signal the user's process group (or process) as the user",
            user_groups=False),  # kill(2) asks only for the uid
)

BY_NAME = {command.name: command for command in COMMANDS}


def find(name: str):
    """The row for `name` or None; Storm matches command names case-insensitively."""
    return BY_NAME.get(name.lower())


def usage_line(command: Command) -> str:
    args = " ".join(f"<{arg}>" for arg in command.args)
    return f"worker-launcher <user> {command.name} {args}".rstrip()
