"""worker-launcher.cfg: Storm's key=value file. Parsing is pure; reading is in trust.py.

Also the rule every path the launcher trusts or decides on is put in (`normalize`,
`is_within`): here, where every call loads it anyway, not in policy.py, which the code-trust
check would then load on every call for these two functions."""

from .errors import ExitCode, LauncherError

GROUP_KEY = "storm.worker-launcher.group"

# key -> default (None: no default). Storm's keys plus our policy key.
DEFAULTS = {
    GROUP_KEY: None,
    "min.user.id": "1000",
    "banned.users": "bin",
    "worker.profiler.script.path": None,
    "docker.binary": "/usr/bin/docker",
    "nsenter.binary": "/usr/bin/nsenter",
    "worker.launcher.oci.run-root": "/run/worker-launcher",
    "worker.launcher.oci.runc": "/usr/bin/runc",
    "worker.launcher.policy": None,
    "worker.launcher.oci.lock-timeout": "30",
}
PATH_KEYS = (
    "worker.profiler.script.path",
    "docker.binary",
    "nsenter.binary",
    "worker.launcher.oci.run-root",
    "worker.launcher.oci.runc",
    "worker.launcher.policy",
)
# Not a key: where docker's runc keeps its containers: dockerd's own containerd (Debian's
# docker.io), then a system containerd (docker-ce with containerd.io). Namespace "moby". Here
# (loaded by every call), so --check-config names them without importing the docker package.
DOCKER_RUNC_ROOTS = ("/run/docker/runtime-runc/moby", "/run/containerd/runc/moby")
MAX_CONFIG_BYTES = 64 * 1024
MAX_LOCK_TIMEOUT = 3600


class Config:
    """The checked settings. (No dataclass: importing dataclasses costs ~9 ms per call.)"""

    __slots__ = ("path", "group", "min_user_id", "banned_users", "profiler_script",
                 "docker_binary", "nsenter_binary", "run_root", "runc", "policy_path",
                 "lock_timeout", "unknown_keys")

    def __init__(self, **values):
        for name in self.__slots__:
            setattr(self, name, values[name])


# storm.oci.cgroup.parent in Storm's defaults.yaml: the cgroup parent of both runtimes'
# containers when the policy names none.
DEFAULT_CGROUP_PARENT = "/storm"


def normalize(path: str) -> "str | None":
    """The canonical form of an absolute path, or None if it is relative or has '.', '..'."""
    if not isinstance(path, str) or not path.startswith("/") or "\0" in path:
        return None
    parts = [part for part in path.split("/") if part]
    if any(part in (".", "..") for part in parts):
        return None
    return "/" + "/".join(parts)


def is_within(path: str, top: str) -> bool:
    """True when `path` is `top` or below it (both normalized)."""
    return path == top or top == "/" or path.startswith(top + "/")


def _fail(path: str, message: str) -> LauncherError:
    return LauncherError(ExitCode.INVALID_CONFIG_FILE, f"invalid config file {path}: {message}")


def parse_pairs(text: str, path: str) -> dict:
    """Lines of key=value; '#' starts a comment line; the value may itself contain '='."""
    pairs = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key:
            raise _fail(path, f"line {number}: expected key=value")
        if key in pairs:
            raise _fail(path, f"line {number}: {key} is set twice")
        if "\0" in value:
            raise _fail(path, f"line {number}: NUL byte in the value of {key}")
        pairs[key] = value
    return pairs


def _absolute_path(path: str, key: str, value: str) -> str:
    parts = value.split("/")
    if not value.startswith("/") or ".." in parts or "." in parts:
        raise _fail(path, f"{key} must be an absolute path without '.' or '..', got {value!r}")
    return value.rstrip("/") or "/"


def parse(text: str, path: str) -> "Config":
    pairs = parse_pairs(text, path)
    values = {key: pairs.get(key, default) for key, default in DEFAULTS.items()}
    group = values[GROUP_KEY]
    if not group:
        raise _fail(path, f"{GROUP_KEY} is not set")
    min_uid_text = values["min.user.id"]
    if not min_uid_text.isdigit() or len(min_uid_text) > 10:
        raise _fail(path, f"min.user.id must be a whole number, got {min_uid_text!r}")
    lock_timeout = values["worker.launcher.oci.lock-timeout"]
    if not lock_timeout.isdigit() or not 1 <= int(lock_timeout) <= MAX_LOCK_TIMEOUT:
        raise _fail(path, f"worker.launcher.oci.lock-timeout must be a whole number of seconds "
                          f"from 1 to {MAX_LOCK_TIMEOUT}, got {lock_timeout!r}")
    banned = frozenset(name.strip() for name in values["banned.users"].split(",") if name.strip())
    for key in PATH_KEYS:
        if values[key] is not None:
            if values[key] == "":
                raise _fail(path, f"{key} is empty")
            values[key] = _absolute_path(path, key, values[key])
    return Config(
        path=path,
        group=group,
        min_user_id=int(min_uid_text),
        banned_users=banned,
        profiler_script=values["worker.profiler.script.path"],
        docker_binary=values["docker.binary"],
        nsenter_binary=values["nsenter.binary"],
        run_root=values["worker.launcher.oci.run-root"],
        runc=values["worker.launcher.oci.runc"],
        policy_path=values["worker.launcher.policy"],
        lock_timeout=int(lock_timeout),
        unknown_keys=tuple(sorted(set(pairs) - set(DEFAULTS))),
    )
