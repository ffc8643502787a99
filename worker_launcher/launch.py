"""What a command handler gets (`Launch`), and the reading of the root-owned settings it
carries: worker-launcher.cfg at the build-time path, the launcher group, the binary's
permissions and the optional policy file."""

from .core.errors import ExitCode, LauncherError


class Launch:
    """The checked config, the caller, the target user; the policy is read on first use."""

    def __init__(self, config, caller, user, group_gid):
        self.config = config
        self.caller = caller
        self.user = user
        self.group_gid = group_gid
        self._policy = None

    def before_exec(self) -> None:
        """Called by a handler right before it execs and so never returns to dispatch: a
        call cancelled by now does not exec; else it is logged."""
        from .core import audit, interrupts

        interrupts.checkpoint()
        audit.exec_now()

    @property
    def policy(self):
        if self._policy is None:
            self._policy = load_policy(self.config)
        return self._policy


def read_config():
    """worker-launcher.cfg at the build-time path: root-owned all the way up, parsed."""
    from . import _build
    from .core import config
    from .paths import trust

    resolved, text = trust.read_root_file(_build.CONF_PATH, "config file", config.MAX_CONFIG_BYTES,
                                          ExitCode.INVALID_CONFIG_FILE)
    return config.parse(text, resolved)


def load_config():
    """Read and check worker-launcher.cfg, the launcher group and the binary."""
    import grp

    from . import _build
    from .paths import trust

    cfg = read_config()
    try:
        group_gid = grp.getgrnam(cfg.group).gr_gid
    except KeyError:
        raise LauncherError(ExitCode.INVALID_CONFIG_FILE,
                            f"launcher group {cfg.group} named in {cfg.path} does not exist") from None
    problem = trust.binary_problem(_build.BINARY_PATH, group_gid)
    if problem:
        raise LauncherError(ExitCode.INVALID_CONTAINER_EXEC_PERMISSIONS,
                            f"invalid permissions on the worker-launcher binary: {problem}")
    return cfg, group_gid


def load_policy(config, resolve_paths: bool = True):
    """The policy named by the config, or the built-in one when none is configured.
    `resolve_paths` False: its paths only normalized, not resolved (no walk, no
    paths.resolve), for a verb that uses none of them (reap: only the cgroup parent)."""
    from .core import policy
    from .paths import trust

    if not config.policy_path:
        return policy.Policy(run_root=config.run_root)
    resolved, text = trust.read_root_file(config.policy_path, "policy file",
                                          policy.MAX_POLICY_BYTES, ExitCode.INVALID_CONFIG_FILE)
    data = policy.parse_document(text, resolved)
    if not resolve_paths:
        return policy.from_mapping(data, resolved, config.run_root)
    from .paths import resolve

    def canonical(path):  # as root: trusted symlinks only, so no caller can redirect a root
        try:
            return resolve.canonical(path, pseudo_ok=True)
        except LauncherError as err:
            raise LauncherError(ExitCode.INVALID_CONFIG_FILE,
                                f"invalid policy file {resolved}: {err.message}") from None

    return policy.from_mapping(data, resolved, config.run_root, resolve=canonical)
