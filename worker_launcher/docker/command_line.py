"""Storm's docker command file: one line, parsed and checked against what Storm writes.

Pure: no privileges, no file system. `tokens.split_line` turns the file's bytes into tokens;
`validate` checks them against what Storm's DockerManager can write (DockerRunCommand,
DockerWaitCommand, DockerPsCommand, DockerStopCommand, DockerRmCommand; storm-facts.md 4)
and, for `run`, the rules that keep the container to the target user's rights. Anything
Storm cannot produce is refused, naming the offending token: other sub-commands (`inspect`,
`pull`, `exec`), a leading `--config=`, options DockerManager never sets (`--rm`,
`--detach=`, `--cpu-shares=`, `--time=`), and anything that names another worker than the
one whose directory the call names. Checks that need the file system (bind sources, the
seccomp file, the image policy) are made by run.py on the `Request` this returns.
"""

from __future__ import annotations

from ..core.errors import ExitCode, LauncherError
from ..core.config import DEFAULT_CGROUP_PARENT, normalize
from ..core.tokens import image_ok, worker_id_ok

SUBCOMMANDS = ("run", "wait", "ps", "stop", "rm")
TAKES_VALUE = ("-v", "--group-add", "--security-opt")  # Storm writes "<option> <value>"
RUN_FLAGS = ("-d", "--read-only")
ONCE = ("--name", "--user", "--net", "--cgroup-parent", "--workdir", "--cidfile", "--cpus",
        "--cpuset-cpus", "--cpuset-mems", "--memory", "--cap-drop")
# What every DockerManager.launchWorkerProcess line has (as shown in a refusal).
REQUIRED = {"--name": "--name=<worker id>", "--user": "--user=<uid>:<gid>", "-d": "-d",
            "--net": "--net=host", "--read-only": "--read-only",
            "--cgroup-parent": "--cgroup-parent=<cgroup parent>",
            "--workdir": "--workdir=<workdir>", "--cidfile": "--cidfile=<workdir>/container.cid",
            "--cap-drop": "--cap-drop=ALL", "no-new-privileges": "--security-opt no-new-privileges"}
REFUSED = {"--privileged": "privileged containers are not allowed",
           "--cap-add": "adding capabilities is not allowed",
           "--device": "devices are not allowed",
           "--rm": "Storm's DockerManager never sets it",
           "--detach": "Storm's DockerManager never sets it (it writes -d)",
           "--cpu-shares": "Storm's DockerManager never sets it"}
CONFIG_REFUSAL = ("Storm never writes --config, and docker (root) would load that directory's "
                  "config.json and CLI plugins")
SCRIPT = "storm-worker-script.sh"  # ServerUtils.writeScript
CIDFILE = "container.cid"  # DockerManager.dockerCidFilePath
CONTAINER_TMP = "/tmp"  # DockerManager binds <workdir>/tmp there
_DIGITS = frozenset("0123456789")


class Rules:
    """What the request may ask for: the target user's ids, the worker's directory (the
    <workdir> argument as given and as resolved) and the cgroup parent (the policy's, else
    Storm's default, as for OCI: never one the supervisor picks)."""

    __slots__ = ("uid", "gid", "groups", "workdirs", "cgroup_parent")

    def __init__(self, uid: int, gid: int, groups, workdirs, cgroup_parent: str | None = None):
        self.uid, self.gid, self.groups = uid, gid, frozenset(groups)
        self.workdirs = tuple(dict.fromkeys(w for w in workdirs if w))
        self.cgroup_parent = cgroup_parent or DEFAULT_CGROUP_PARENT

    def worker_ids(self) -> tuple:
        """The worker id the call is about: Storm's workdir is <storm.local.dir>/workers/<id>."""
        return tuple(w.rsplit("/", 1)[-1] for w in self.workdirs)


class Request:
    """A validated command: `tokens` as Storm wrote them; the rest is for run.py."""

    __slots__ = ("tokens", "subcommand", "binds", "seccomp", "image", "cidfile", "name",
                 "workdir", "options", "command")

    def __init__(self, tokens):
        self.tokens = list(tokens)
        self.subcommand = None
        self.binds = []  # (source, destination, writable)
        self.seccomp = None  # the path of --security-opt seccomp=<path>
        self.image = None
        self.cidfile = None
        self.name = None  # the container: the worker id
        self.workdir = None  # the workdir the request names (run: --workdir)
        self.options = []  # run: the option tokens before the image, in order
        self.command = []  # run: what follows the image


def reject(path: str, token: str, why: str, code: int = ExitCode.DOCKER_COMMAND_REJECTED):
    return LauncherError(code, f"docker command {path}: refusing {token!r}: {why}")


def validate(tokens: list, rules: Rules, path: str) -> Request:
    """Check every token; return the Request or raise LauncherError (39, or 40 for an image)."""
    request = Request(tokens)
    rest = list(tokens)
    if rest and rest[0].startswith("--config"):
        raise reject(path, rest[0], CONFIG_REFUSAL)
    if not rest:
        raise reject(path, "", "no docker sub-command")
    sub = rest.pop(0)
    if sub not in SUBCOMMANDS:
        raise reject(path, sub, f"docker sub-command not allowed (Storm writes only "
                                f"{', '.join(SUBCOMMANDS)})")
    request.subcommand = sub
    if sub == "run":
        _validate_run(rest, rules, path, request)
    else:
        _validate_named(sub, rest, rules, path, request)
    return request


def _worker_id(token: str, shown: str, rules: Rules, path: str) -> str:
    if not worker_id_ok(token):
        raise reject(path, shown, "not a Storm worker id (a UUID)")
    if token not in rules.worker_ids():
        raise reject(path, shown, f"not the worker of {rules.workdirs[0]}")
    return token


def _validate_named(sub: str, rest: list, rules: Rules, path: str, request: Request) -> None:
    """Exactly what DockerManager writes: `wait <id>`, `ps --filter=name=<id> --quiet=true`,
    `stop <id>`, `rm <id>`, `rm --force <id>`."""
    if sub == "ps":
        prefix = "--filter=name="
        if len(rest) != 2 or not rest[0].startswith(prefix) or rest[1] != "--quiet=true":
            raise reject(path, " ".join(["ps"] + rest), "Storm writes `ps --filter=name=<worker "
                                                        "id> --quiet=true`")
        request.name = _worker_id(rest[0][len(prefix):], rest[0], rules, path)
        return
    options = rest[:-1]
    if sub == "rm" and options == ["--force"]:
        options = []
    if options or len(rest) < 1:
        token = options[0] if options else sub
        raise reject(path, token, f"Storm writes `{sub} <worker id>`"
                                  + (" or `rm --force <worker id>`" if sub == "rm" else ""))
    request.name = _worker_id(rest[-1], rest[-1], rules, path)


def _validate_run(rest: list, rules: Rules, path: str, request: Request) -> None:
    seen = set()
    index = 0
    while index < len(rest) and rest[index].startswith("-"):
        token = rest[index]
        if token in TAKES_VALUE:
            if index + 1 >= len(rest):
                raise reject(path, token, "missing its value")
            _run_pair(token, rest[index + 1], rules, path, request, seen)
            index += 2
            continue
        _run_option(token, rules, path, request, seen)
        index += 1
    request.options = rest[:index]
    for required, shown in REQUIRED.items():
        if required not in seen:
            raise reject(path, "run", f"{shown} is required (Storm always writes it)")
    if index >= len(rest):
        raise reject(path, rest[-1] if rest else "run", "no image", ExitCode.INVALID_DOCKER_IMAGE)
    if not image_ok(rest[index]):
        raise reject(path, rest[index], "not a valid docker image name",
                     ExitCode.INVALID_DOCKER_IMAGE)
    request.image = rest[index]
    command = rest[index + 1:]
    script = f"{request.workdir}/{SCRIPT}"
    if command != ["bash", script]:
        raise reject(path, " ".join(command) or request.image,
                     f"the command after the image must be `bash {script}`")
    request.command = command


def _run_pair(option: str, value: str, rules: Rules, path: str, request: Request, seen) -> None:
    token = f"{option} {value}"
    if option == "--group-add":
        if not (_number(value) and str(int(value)) == value and int(value) in rules.groups):
            raise reject(path, token, "only the user's own group ids may be added")
        if token in seen:
            raise reject(path, token, "option given twice")
        seen.add(token)
    elif option == "--security-opt":
        if value == "no-new-privileges" and value not in seen:
            seen.add(value)
        elif value.startswith("seccomp=") and request.seccomp is None:
            request.seccomp = value[len("seccomp="):]
            if normalize(request.seccomp) != request.seccomp:
                raise reject(path, token, "the seccomp profile must be an absolute, normalized path")
        else:
            raise reject(path, token, "only no-new-privileges and one seccomp=<file> are allowed")
    else:
        request.binds.append(_bind(value, rules, path))


def _bind(spec: str, rules: Rules, path: str) -> tuple:
    """DockerRunCommand.addRead{Only,Write}MountLocation: <source>:<destination>[:ro], the
    destination the source itself except <workdir>/tmp, which goes to /tmp."""
    parts = spec.split(":")
    if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] != "ro"):
        raise reject(path, f"-v {spec}", "a bind is <source>:<destination> or "
                                         "<source>:<destination>:ro")
    source, destination = parts[0], parts[1]
    for side in (source, destination):
        if normalize(side) != side:
            raise reject(path, f"-v {spec}", f"{side!r} is not an absolute path without "
                                             f"'.', '..' or repeated '/'")
    tmp = destination == CONTAINER_TMP and any(source == f"{w}/tmp" for w in rules.workdirs)
    if destination != source and not tmp:
        raise reject(path, f"-v {spec}", "Storm binds a source at the same path in the "
                                         "container (only <workdir>/tmp goes to /tmp)")
    return source, destination, len(parts) == 2


def _run_option(token: str, rules: Rules, path: str, request: Request, seen) -> None:
    name, equals, value = token.partition("=")
    if name in REFUSED or token in REFUSED:
        raise reject(path, token, REFUSED.get(name) or REFUSED[token])
    if token in RUN_FLAGS:
        if token in seen:
            raise reject(path, token, "option given twice")
        seen.add(token)
        return
    if not equals or name not in ONCE:
        raise reject(path, token, "option not allowed for `run`")
    if name in seen:
        raise reject(path, token, "option given twice")
    seen.add(name)
    why = _run_value_problem(name, value, rules, request)
    if why:
        raise reject(path, token, why)


def _number(value: str, fraction: bool = False) -> bool:
    whole, dot, part = value.partition(".") if fraction else (value, "", "")
    return (0 < len(value) <= 20 and whole != "" and set(whole) <= _DIGITS
            and (not dot or (part != "" and set(part) <= _DIGITS)))


def _run_value_problem(name: str, value: str, rules: Rules, request: Request) -> str | None:
    """Why the value of a `run` option is not allowed, or None."""
    if name == "--name":
        request.name = value
        if not worker_id_ok(value):
            return "not a Storm worker id (a UUID)"
        return None if value in rules.worker_ids() else f"not the worker of {rules.workdirs[0]}"
    if name == "--user":
        want = f"{rules.uid}:{rules.gid}"
        return None if value == want else f"the container must run as the user, {want}"
    if name == "--net":
        return None if value == "host" else "Storm's network is host"
    if name == "--cap-drop":
        return None if value == "ALL" else "only --cap-drop=ALL is allowed"
    if name == "--cgroup-parent":
        parent = value.rstrip("/") or "/"  # Storm keeps a configured trailing slash
        if normalize(parent) != parent:
            return "not an absolute, normalized cgroup path"
        if parent != rules.cgroup_parent:
            return (f"the cgroup parent is {rules.cgroup_parent} (the policy's "
                    "storm.oci.cgroup.parent, else Storm's default)")
        return None
    if name == "--workdir":
        request.workdir = value
        return None if value in rules.workdirs else "must be the worker's directory"
    if name == "--cidfile":
        request.cidfile = value
        if any(value == f"{w}/{CIDFILE}" for w in rules.workdirs):
            return None
        return f"must be {CIDFILE} in the worker's directory"
    return _resource_problem(name, value)


def _resource_problem(name: str, value: str) -> str | None:
    if name == "--cpus":  # DockerRunCommand.setCpus: Java's Double.toString, e.g. 1.0, 0.5
        return None if _number(value, fraction=True) and "." in value else "not a number of cpus"
    if name == "--memory":  # setMemoryMb: <n>m
        return None if value.endswith("m") and _number(value[:-1]) else "not <megabytes>m"
    # --cpuset-cpus, --cpuset-mems (addCpuSetBindings): lists like 0,1,2 (ranges too)
    ok = value and set(value) <= _DIGITS | {",", "-"} and value[0] in _DIGITS
    return None if ok and len(value) <= 256 else "not a cpu or memory node list"
