"""What the verbs may touch: host paths to bind, directory roots, images.

The optional policy file (worker.launcher.policy=<path>) is YAML with Storm's own storm.yaml
key names, so an operator can point it at a root-owned copy of storm.yaml. Everything here is
pure; launch.load_policy reads the root-owned file and resolves the configured paths.
"""

from .config import is_within, normalize  # noqa: F401  (the path rules, re-exported)
from .errors import ExitCode, LauncherError

MAX_POLICY_BYTES = 1024 * 1024
DEFAULT_CGROUP_ROOT = "/sys/fs/cgroup"

# Nothing may bind these, anything under them, or any directory above them.
SENSITIVE = ("/proc", "/sys", "/dev", "/boot", "/root", "/var/run/docker.sock", "/run/docker.sock")
# Nothing may bind these read-write (nor anything under or above them).
SYSTEM_READ_ONLY = ("/etc", "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
# Files Storm's RuncLibContainerManager always binds read-only.
STORM_HOST_FILES = ("/etc/resolv.conf", "/etc/hostname", "/etc/hosts")

LIST_KEYS = ("storm.oci.allowed.images", "storm.oci.readonly.bindmounts",
             "storm.oci.readwrite.bindmounts")
PATH_KEYS = ("storm.local.dir", "storm.home", "storm.workers.artifacts.dir", "storm.oci.nscd.dir",
             "storm.oci.cgroup.root", "storm.oci.cgroup.parent", "storm.oci.seccomp.profile",
             "storm.log.dir", "storm.oci.resources.local.dir")
# Storm's defaults.yaml values of keys a storm.yaml usually leaves out.
DEFAULT_NSCD_DIR = "/var/run/nscd"


def _matches(path: str, pattern: str) -> bool:
    """`pattern` components match the start of `path`; '*' matches one component."""
    want = pattern.strip("/").split("/") if pattern != "/" else []
    have = path.strip("/").split("/") if path != "/" else []
    if len(have) < len(want):
        return False
    return all(w == "*" or w == h for w, h in zip(want, have))


def _related(path: str, other: str) -> bool:
    return is_within(path, other) or is_within(other, path)


class Policy:
    """What may be touched. With configured=False only the built-in protections apply."""

    _DEFAULTS = {
        "configured": False, "source": None, "run_root": "/run/worker-launcher",
        "local_dir": None, "storm_home": None, "artifacts_dir": None, "allowed_images": (),
        "readonly_binds": (), "readwrite_binds": (), "nscd_dir": None,
        "cgroup_root": DEFAULT_CGROUP_ROOT, "cgroup_parent": None, "seccomp_profile": None,
        "layer_store": None, "ignored_keys": (),
    }
    __slots__ = tuple(_DEFAULTS)

    def __init__(self, **values):
        unknown = set(values) - set(self._DEFAULTS)
        if unknown:
            raise TypeError(f"unknown policy fields {sorted(unknown)}")
        for name, default in self._DEFAULTS.items():
            setattr(self, name, values.get(name, default))

    # --- bind mounts -------------------------------------------------------------------
    def readwrite_patterns(self) -> tuple:
        patterns = list(self.readwrite_binds)
        if self.local_dir:
            patterns += [f"{self.local_dir}/workers/*", f"{self.local_dir}/workers-users/*",
                         f"{self.local_dir}/supervisor/stormdist/*/shared_by_topology"]
        if self.artifacts_dir:
            patterns.append(f"{self.artifacts_dir}/*/*")
        if self.nscd_dir:
            patterns.append(self.nscd_dir)
        return tuple(patterns)

    def readonly_patterns(self) -> tuple:
        patterns = list(self.readonly_binds) + list(STORM_HOST_FILES) + [self.cgroup_root]
        if self.storm_home:
            patterns.append(self.storm_home)
        if self.local_dir:
            patterns.append(f"{self.local_dir}/supervisor")
        return tuple(patterns) + self.readwrite_patterns()

    def bind_refusal(self, source: str, writable: bool) -> "str | None":
        """Why `source` (a resolved host path) may not be bind-mounted, or None."""
        path = normalize(source)
        if path is None:
            return f"bind source {source!r} is not a normalized absolute path"
        cgroup_exception = not writable and is_within(path, self.cgroup_root)
        for sensitive in SENSITIVE + (self.run_root,):
            if _related(path, sensitive) and not cgroup_exception:
                return f"bind source {path} is or contains the protected host path {sensitive}"
        if writable:
            for system in SYSTEM_READ_ONLY:
                if _related(path, system):
                    return f"bind source {path} may not be writable: it is or contains {system}"
        if not self.configured:
            return None
        patterns = self.readwrite_patterns() if writable else self.readonly_patterns()
        if any(_matches(path, pattern) for pattern in patterns):
            return None
        mode = "read-write" if writable else "read-only"
        return f"bind source {path} is not allowed {mode} by the policy {self.source}"

    # --- directory verbs ---------------------------------------------------------------
    def directory_roots(self) -> tuple:
        return tuple(root for root in (self.local_dir, self.artifacts_dir) if root)

    def directory_refusal(self, target: str) -> "str | None":
        """Why a directory verb may not act on `target` (a resolved path), or None."""
        path = normalize(target)
        if path is None:
            return f"{target!r} is not a normalized absolute path"
        for protected in SENSITIVE + SYSTEM_READ_ONLY + (self.run_root,):
            if _related(path, protected):
                return f"{path} is or contains the protected host path {protected}"
        if not self.configured:
            return None
        for root in self.directory_roots():
            if path != root and is_within(path, root):
                return None
        roots = ", ".join(self.directory_roots()) or "none"
        return f"{path} is not below a storm directory of the policy {self.source} ({roots})"

    # --- images ------------------------------------------------------------------------
    def image_allowed(self, image: str) -> bool:
        return not self.allowed_images or image in self.allowed_images


def _fail(path: str, message: str) -> LauncherError:
    return LauncherError(ExitCode.INVALID_CONFIG_FILE, f"invalid policy file {path}: {message}")


def _path_value(path: str, key: str, value, base: "str | None") -> str:
    if not isinstance(value, str) or not value:
        raise _fail(path, f"{key} must be a path string")
    if not value.startswith("/") and base:
        value = f"{base}/{value}"  # normalized below
    normal = normalize(value)
    if normal is None:
        raise _fail(path, f"{key} must be an absolute path without '.' or '..', got {value!r}")
    return normal


def from_mapping(data, path: str, run_root: str, resolve=lambda p: p) -> Policy:
    """Build a Policy from the parsed YAML document. `resolve` maps configured paths to
    real location (paths.resolve.canonical when loading; identity in unit tests)."""
    if not isinstance(data, dict):
        raise _fail(path, "the document must be a mapping of storm.yaml keys")
    for key in PATH_KEYS:
        if key in data and data[key] is not None and not isinstance(data[key], str):
            raise _fail(path, f"{key} must be a string")
    for key in LIST_KEYS:
        value = data.get(key)
        if value is not None and (not isinstance(value, list)
                                  or not all(isinstance(v, str) and v for v in value)):
            raise _fail(path, f"{key} must be a list of strings")

    def get_path(key, base=None):
        value = data.get(key)
        return None if value is None else resolve(_path_value(path, key, value, base))

    storm_home = get_path("storm.home")
    local_dir = get_path("storm.local.dir", storm_home)
    # HdfsOciResourcesLocalizer: storm.oci.resources.local.dir, else
    # <absolute storm.local.dir, default <storm.home>/storm-local>/supervisor/oci-resources.
    store = get_path("storm.oci.resources.local.dir")
    store_local = local_dir or (storm_home and resolve(f"{storm_home}/storm-local"))
    if store is None and store_local:
        store = f"{store_local}/supervisor/oci-resources"
    log_dir = get_path("storm.log.dir", storm_home) or (storm_home and storm_home + "/logs")
    artifacts = get_path("storm.workers.artifacts.dir", log_dir)
    if artifacts is None and log_dir:
        artifacts = log_dir + "/workers-artifacts"
    binds = {key: tuple(resolve(_path_value(path, key, v, None)) for v in data.get(key) or ())
             for key in ("storm.oci.readonly.bindmounts", "storm.oci.readwrite.bindmounts")}
    parent = data.get("storm.oci.cgroup.parent")
    if parent is not None:
        parent = normalize(parent if parent.startswith("/") else "/" + parent)
        if parent is None:
            raise _fail(path, "storm.oci.cgroup.parent must not contain '.' or '..'")
    known = set(PATH_KEYS) | set(LIST_KEYS)
    return Policy(
        configured=True,
        source=path,
        run_root=run_root,
        local_dir=local_dir,
        storm_home=storm_home,
        artifacts_dir=artifacts,
        allowed_images=tuple(data.get("storm.oci.allowed.images") or ()),
        readonly_binds=binds["storm.oci.readonly.bindmounts"],
        readwrite_binds=binds["storm.oci.readwrite.bindmounts"],
        nscd_dir=get_path("storm.oci.nscd.dir") or resolve(DEFAULT_NSCD_DIR),
        cgroup_root=get_path("storm.oci.cgroup.root") or DEFAULT_CGROUP_ROOT,
        cgroup_parent=parent,
        seccomp_profile=get_path("storm.oci.seccomp.profile"),
        layer_store=store,
        ignored_keys=tuple(sorted(k for k in data if isinstance(k, str) and k not in known)),
    )


def parse_document(text: str, path: str):
    """The policy document: YAML (yaml.safe_load semantics), or JSON, a subset of YAML that
    is read with the json module when the document starts with '{'. Importing PyYAML costs
    every call 10-30 ms; the json package ~14 ms, fastjson (json's C parser) under 1 ms,
    which matters to a launcher run thousands of times a day."""
    if text.lstrip().startswith("{"):
        from .fastjson import loads

        try:
            return loads(text)
        except ValueError as err:
            line = getattr(err, "lineno", None)
            raise _fail(path, f"not valid JSON{f' at line {line}' if line else ''}") from None
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        return yaml.load(text, Loader=loader)
    except yaml.YAMLError as err:
        where = getattr(err, "problem_mark", None)
        line = f" at line {where.line + 1}" if where else ""
        raise _fail(path, f"not valid YAML{line}") from None
