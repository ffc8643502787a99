"""The fixed set of commands: our verb names, Storm's names, argument lists and handlers.

A handler is "module:function" under worker_launcher; it is imported only when its command
runs, and called as function(launch, *args) with a Launch context. Verb issues add rows here.
"""


class Command:
    """One row of the table. (A plain class: typing.NamedTuple costs ~10 ms per call.)"""

    __slots__ = ("name", "args", "handler", "summary", "ours")

    def __init__(self, name: str, args: tuple, handler: str, summary: str, ours: bool = False):
        self.name = name
        self.args = args  # argument names, for usage lines
        self.handler = handler
        self.summary = summary
        self.ours = ours  # one of our five verb names (listed first in --help)


COMMANDS = (
    Command("mount-layers", ("oci-config.json",), "runc.verbs:mount_layers_verb",
            "mount a container's squashfs layers and overlay root, print its path", ours=True),
    Command("runc-run", ("workdir", "oci-config.json", "artifacts-dir"),
            "runc.verbs:run_oci_container",
            "set up the workdir, mount the layers, launch the worker with runc", ours=True),
    Command("reap-layers", ("container-id", "keep-count"), "runc.verbs:reap_oci_container",
            "delete the container, unmount its root and unused layers", ours=True),
    Command("run-oci-container", ("workdir", "oci-config.json", "artifacts-dir"),
            "runc.verbs:run_oci_container", "Storm's name for runc-run"),
    Command("reap-oci-container", ("container-id", "keep-count"),
            "runc.verbs:reap_oci_container", "Storm's name for reap-layers"),
    Command("docker-run", ("workdir", "command-file"), "docker.run:docker_run",
            "run a validated docker command file (sets up the workdir for run)", ours=True),
    Command("nsenter", ("pid-or-worker-id", "command-file"), "verbs.nsenter:nsenter",
            "run the profiler script in the user's container as the user", ours=True),
    Command("launch-docker-container", ("workdir", "command-file"),
            "docker.run:launch_docker_container",
            "set up the workdir, then run the validated docker command file"),
    Command("run-docker-cmd", ("workdir", "command-file"), "docker.run:run_docker_cmd",
            "run the validated docker command file (run, wait, ps, inspect, stop, rm, pull)"),
    Command("profile-docker-container", ("worker-id", "command-file"),
            "verbs.nsenter:profile_docker_container",
            "run the profiler script in the user's docker container"),
    Command("profile-oci-container", ("pid", "command-file"),
            "verbs.nsenter:profile_oci_container",
            "run the profiler script in the user's runc container"),
    Command("code-dir", ("dir",), "verbs.dirs:code_dir",
            "give a topology's code to the user, read-only"),
    Command("artifacts-dir", ("dir",), "verbs.dirs:artifacts_dir",
            "give a worker's artifacts directory to the user, writable"),
    Command("blob", ("path",), "verbs.dirs:blob", "give a localized blob to the user, read-only"),
    Command("rmr", ("path",), "verbs.dirs:rmr",
            "delete a tree as the user, the top entry as the supervisor account"),
    Command("worker", ("workdir", "script"), "verbs.worker:worker",
            "set up the workdir, then run the script there as the user"),
    Command("profiler", ("workdir", "script"), "verbs.worker:profiler",
            "run the script in the workdir as the user"),
    Command("signal", ("pid", "signal"), "verbs.signals:signal",
            "signal the user's process group (or process) as the user"),
)

BY_NAME = {command.name: command for command in COMMANDS}


def find(name: str) -> Command | None:
    """Storm matches command names case-insensitively."""
    return BY_NAME.get(name.lower())


def usage_line(command: Command) -> str:
    args = " ".join(f"<{arg}>" for arg in command.args)
    return f"worker-launcher <user> {command.name} {args}".rstrip()
