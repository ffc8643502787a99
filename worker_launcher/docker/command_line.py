"""Storm's docker command file: one line, parsed and checked against what Storm writes.

Pure: no privileges, no file system. `tokens.split_line` turns the file's bytes into
tokens; `validate` checks them against the allowlist of the sub-command and, for `run`, the rules
that keep the container to the target user's rights. Checks that need the file system
(bind sources, the seccomp file, the --config directory, the image policy) are made by
run.py on the `Request` this returns. Every refusal names the offending token.
"""

from __future__ import annotations

from ..core.errors import ExitCode, LauncherError
from ..core.policy import is_within, normalize
from ..core.tokens import image_ok, worker_id_ok

SUBCOMMANDS = ("run", "wait", "ps", "inspect", "stop", "rm", "pull")
TAKES_VALUE = ("-v", "--group-add", "--security-opt")  # Storm writes "<option> <value>"
RUN_FLAGS = ("-d", "--read-only", "--rm")
ONCE = ("--name", "--user", "--net", "--cgroup-parent", "--workdir", "--cidfile", "--cpus",
        "--cpu-shares", "--cpuset-cpus", "--cpuset-mems", "--memory", "--detach", "--cap-drop")
REFUSED = {"--privileged": "privileged containers are not allowed",
           "--cap-add": "adding capabilities is not allowed",
           "--device": "devices are not allowed"}
INSPECT_FORMATS = ("--format='{{.State.Status}}'", "--format='{{.Id}}'", "--format={{.State.Pid}}")
_DIGITS = frozenset("0123456789")


class Rules:
    """What the request may ask for: the target user's ids and the worker's directories
    (the <workdir> argument as given and as resolved), and the configured cgroup parent."""

    __slots__ = ("uid", "gid", "groups", "workdirs", "cgroup_parent")

    def __init__(self, uid: int, gid: int, groups, workdirs, cgroup_parent: str | None = None):
        self.uid, self.gid, self.groups = uid, gid, frozenset(groups)
        self.workdirs = tuple(w for w in workdirs if w)
        self.cgroup_parent = cgroup_parent


class Request:
    """A validated command: `tokens` go to docker unchanged; the rest is for run.py."""

    __slots__ = ("tokens", "subcommand", "config_dir", "binds", "seccomp", "image", "cidfile",
                 "name")

    def __init__(self, tokens):
        self.tokens = list(tokens)
        self.subcommand = None
        self.config_dir = None
        self.binds = []  # (source, destination, writable)
        self.seccomp = []
        self.image = None
        self.cidfile = None
        self.name = None


def reject(path: str, token: str, why: str, code: int = ExitCode.DOCKER_COMMAND_REJECTED):
    return LauncherError(code, f"docker command {path}: refusing {token!r}: {why}")


def validate(tokens: list, rules: Rules, path: str) -> Request:
    """Check every token; return the Request or raise LauncherError (39, or 40 for an image)."""
    request = Request(tokens)
    rest = list(tokens)
    if rest and rest[0].startswith("--config="):
        config_dir = rest.pop(0)[len("--config="):]
        if normalize(config_dir) != config_dir:
            raise reject(path, tokens[0], "--config must name an absolute, normalized directory")
        request.config_dir = config_dir
    if not rest:
        raise reject(path, "", "no docker sub-command")
    sub = rest.pop(0)
    if sub not in SUBCOMMANDS:
        raise reject(path, sub, f"docker sub-command not allowed (only {', '.join(SUBCOMMANDS)})")
    request.subcommand = sub
    if sub == "run":
        _validate_run(rest, rules, path, request)
    elif sub == "pull":
        _expect_count(rest, 1, path, sub)
        request.image = _image(rest[0], path)
    else:
        _validate_named(sub, rest, path, request)
    return request


def _expect_count(rest: list, count: int, path: str, sub: str) -> None:
    if len(rest) != count:
        token = rest[count] if len(rest) > count else sub
        raise reject(path, token, f"`{sub}` takes {count} argument(s) after its options")


def _image(token: str, path: str) -> str:
    if not image_ok(token):
        raise reject(path, token, "not a valid docker image name", ExitCode.INVALID_DOCKER_IMAGE)
    return token


def _worker_id(token: str, path: str) -> str:
    if not worker_id_ok(token):
        raise reject(path, token, "not a Storm worker id (a UUID)")
    return token


def _validate_named(sub: str, rest: list, path: str, request: Request) -> None:
    """wait, ps, inspect, stop, rm: the options Storm writes, then one worker id (not ps)."""
    count = 0
    while count < len(rest) and rest[count].startswith("-"):
        count += 1
    options, names = rest[:count], rest[count:]
    if len(set(options)) != len(options):
        raise reject(path, options[0], "option given twice")
    for option in options:
        if not _named_option_ok(sub, option):
            raise reject(path, option, f"option not allowed for `{sub}`")
    if sub == "ps":
        _expect_count(names, 0, path, sub)
        return
    _expect_count(names, 1, path, sub)
    request.name = _worker_id(names[0], path)


def _named_option_ok(sub: str, option: str) -> bool:
    if sub == "ps":
        return option == "--quiet=true" or (option.startswith("--filter=name=")
                                            and worker_id_ok(option[len("--filter=name="):]))
    if sub == "inspect":
        return option in INSPECT_FORMATS
    if sub == "stop":
        value = option[len("--time="):]
        return option.startswith("--time=") and 0 < len(value) <= 6 and set(value) <= _DIGITS
    if sub == "rm":
        return option == "--force"
    return False


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
    for required, why in (("--name", "--name=<worker id> is required"),
                          ("--user", "--user=<uid>:<gid> is required"),
                          ("--cap-drop", "--cap-drop=ALL is required"),
                          ("no-new-privileges", "--security-opt no-new-privileges is required")):
        if required not in seen:
            raise reject(path, " ".join(rest[:index])[-40:] or "run", why)
    if index >= len(rest):
        raise reject(path, rest[-1] if rest else "run", "no image", ExitCode.INVALID_DOCKER_IMAGE)
    request.image = _image(rest[index], path)
    command = rest[index + 1:]
    if len(command) != 2 or command[0] != "bash":
        raise reject(path, " ".join(command) or request.image,
                     "the command after the image must be `bash <script in the workdir>`")
    if not _under_workdir(command[1], rules, allow_top=False):
        raise reject(path, command[1], "the script must be below the worker's directory")


def _under_workdir(value: str, rules: Rules, allow_top: bool) -> bool:
    normal = normalize(value)
    if normal != value:
        return False
    return any(is_within(value, top) and (allow_top or value != top) for top in rules.workdirs)


def _run_pair(option: str, value: str, rules: Rules, path: str, request: Request, seen) -> None:
    token = f"{option} {value}"
    if option == "--group-add":
        if not (_number(value) and str(int(value)) == value and int(value) in rules.groups):
            raise reject(path, token, "only the user's own group ids may be added")
    elif option == "--security-opt":
        if value == "no-new-privileges":
            seen.add(value)
        elif value.startswith("seccomp=") and normalize(value[8:]) == value[8:]:
            request.seccomp.append(value[8:])
        else:
            raise reject(path, token, "only no-new-privileges and seccomp=<file> are allowed")
    else:
        request.binds.append(_bind(value, path))


def _bind(spec: str, path: str) -> tuple:
    parts = spec.split(":")
    if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] != "ro"):
        raise reject(path, f"-v {spec}", "a bind is <source>:<destination> or "
                                         "<source>:<destination>:ro")
    source, destination = parts[0], parts[1]
    for side in (source, destination):
        if normalize(side) != side:
            raise reject(path, f"-v {spec}", f"{side!r} is not an absolute path without "
                                             f"'.', '..' or repeated '/'")
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
        return None if worker_id_ok(value) else "not a Storm worker id (a UUID)"
    if name == "--user":
        want = f"{rules.uid}:{rules.gid}"
        return None if value == want else f"the container must run as the user, {want}"
    if name == "--net":
        return None if value in ("host", "none") else "the network must be host or none"
    if name == "--cap-drop":
        return None if value == "ALL" else "only --cap-drop=ALL is allowed"
    if name == "--cgroup-parent":
        if normalize(value) != value:
            return "not an absolute, normalized cgroup path"
        if rules.cgroup_parent and value != rules.cgroup_parent:
            return f"the policy's cgroup parent is {rules.cgroup_parent}"
        return None
    if name in ("--workdir", "--cidfile"):
        if not _under_workdir(value, rules, allow_top=name == "--workdir"):
            return "must be in the worker's directory"
        if name == "--cidfile":
            request.cidfile = value
        return None
    return _resource_problem(name, value)


def _resource_problem(name: str, value: str) -> str | None:
    if name == "--detach":
        return None if value in ("true", "false") else "must be true or false"
    if name == "--cpus":
        return None if _number(value, fraction=True) else "not a number of cpus"
    if name == "--cpu-shares":
        return None if _number(value) else "not a whole number"
    if name == "--memory":
        digits = value[:-1] if value[-1:] in ("b", "k", "m", "g") else value
        return None if _number(digits) else "not a memory size (<n>[bkmg])"
    # --cpuset-cpus, --cpuset-mems: lists like 0-3,5
    ok = value and set(value) <= _DIGITS | {",", "-"} and value[0] in _DIGITS
    return None if ok and len(value) <= 256 else "not a cpu or memory node list"
