"""Entry of the trusted core: argv -> checks -> one command. Never prints a traceback."""

import os
import sys

from . import privileges
from .errors import ExitCode, LauncherError

USAGE = """\
Usage: worker-launcher --check-config     (alias: --checksetup)
       worker-launcher --help
       worker-launcher <user> <command> <args...>"""


class Launch:
    """What a command handler gets: the checked config, the caller, the target user."""

    def __init__(self, config, caller, user, group_gid, command=None, args=()):
        self.config = config
        self.caller = caller
        self.user = user
        self.group_gid = group_gid
        self.command = command
        self.args = tuple(args)
        self._policy = None

    def before_exec(self) -> None:
        """Called by a handler right before it execs and so never returns to dispatch."""
        from . import audit

        audit.exec_now()

    @property
    def policy(self):
        if self._policy is None:
            from . import policy

            self._policy = policy.load(self.config)
        return self._policy


def help_text() -> str:
    from .commands import COMMANDS, usage_line

    lines = [USAGE, "", "Verbs:"]
    lines += [f"  {usage_line(c):64} {c.summary}" for c in COMMANDS if c.ours]
    lines += ["", "Storm commands (names accepted case-insensitively):"]
    lines += [f"  {usage_line(c):64} {c.summary}" for c in COMMANDS if not c.ours]
    lines += ["", "Exit codes follow Storm's worker-launcher; see worker-launcher(8)."]
    return "\n".join(lines)


def read_config():
    """worker-launcher.cfg at the build-time path: root-owned all the way up, parsed."""
    from . import _build, config, trust

    resolved, text = trust.read_root_file(_build.CONF_PATH, "config file", config.MAX_CONFIG_BYTES,
                                          ExitCode.INVALID_CONFIG_FILE)
    return config.parse(text, resolved)


def load_config():
    """Read and check worker-launcher.cfg, the launcher group and the binary."""
    import grp

    from . import _build, trust

    cfg = read_config()
    resolved = cfg.path
    try:
        group_gid = grp.getgrnam(cfg.group).gr_gid
    except KeyError:
        raise LauncherError(ExitCode.INVALID_CONFIG_FILE,
                            f"launcher group {cfg.group} named in {resolved} does not exist") from None
    problem = trust.binary_problem(_build.BINARY_PATH, group_gid)
    if problem:
        raise LauncherError(ExitCode.INVALID_CONTAINER_EXEC_PERMISSIONS,
                            f"invalid permissions on the worker-launcher binary: {problem}")
    return cfg, group_gid


def dispatch(argv: list) -> int:
    caller = privileges.start()
    if privileges.privileged():
        from . import trust

        trust.require_trusted_code()
    if argv and argv[0] in ("--help", "-h"):
        print(help_text())
        return ExitCode.OK
    if argv and argv[0] in ("--check-config", "--checksetup"):
        from . import checks

        return checks.run(argv[1:])
    if len(argv) < 2:
        print(USAGE)
        return ExitCode.INVALID_ARGUMENT_NUMBER

    from . import commands, users

    cfg, group_gid = load_config()
    from . import audit

    audit.begin(caller.uid, argv[0], argv[1], argv[2:])
    user = users.lookup(argv[0], cfg.min_user_id, cfg.banned_users)
    command = commands.find(argv[1])
    if command is None:
        raise LauncherError(ExitCode.INVALID_COMMAND_PROVIDED,
                            f"invalid command {argv[1]!r}; see worker-launcher --help")
    args = argv[2:]
    if len(args) != len(command.args):
        print(f"Usage: {commands.usage_line(command)}")
        raise LauncherError(ExitCode.INVALID_ARGUMENT_NUMBER,
                            f"{command.name} takes {len(command.args)} arguments, got {len(args)}")
    if not privileges.privileged():  # else each verb fails at its first privileged step
        raise LauncherError(ExitCode.SETUID_OPER_FAILED,
                            "not running with root privileges: the setuid bit of worker-launcher "
                            "is missing or was ignored (no_new_privs, a nosuid mount)")
    import importlib

    module_name, function_name = command.handler.split(":")
    handler = getattr(importlib.import_module(f"worker_launcher.{module_name}"), function_name)
    if privileges.privileged():
        from . import trust

        trust.require_trusted_code()
    return handler(Launch(cfg, caller, user, group_gid, command.name, args), *args)


def run(argv: list) -> None:
    message = None
    try:
        code = int(dispatch(argv))
    except LauncherError as err:
        code, message = int(err.code), err.message
    except KeyboardInterrupt:
        code, message = ExitCode.INVALID_ARGUMENT_NUMBER, "interrupted"
    except Exception as err:  # the last line of defence: one line, never a traceback
        code = ExitCode.INITIALIZE_USER_FAILED
        message = f"internal error: {type(err).__name__}: {err}"
    if message:
        _report(message)
    if "worker_launcher.audit" in sys.modules:
        try:
            sys.modules["worker_launcher.audit"].finish(code, message)
        except Exception:  # an unreachable syslog never changes the outcome
            pass
    try:
        sys.stdout.flush()
    except OSError:
        pass
    os._exit(code)


def _report(message: str) -> None:
    try:
        from .errors import one_line

        sys.stderr.write(f"worker-launcher: {one_line(message)}\n")
        sys.stderr.flush()
    except OSError:
        pass
