"""The entry: argv -> checks -> one command of commands.py. Never prints a traceback."""

import posix as os
import sys

from .core import identity
from .core.errors import ExitCode, LauncherError

USAGE = """\
Usage: worker-launcher --check-config [FILE [POLICY]] [--json]     (alias: --checksetup)
       worker-launcher --list-state [--json]
       worker-launcher --version | --help
       worker-launcher <user> <command> <args...>"""


def help_text() -> str:
    from .commands import COMMANDS, usage_line

    lines = [USAGE, "", "Verbs:"]
    lines += [f"  {usage_line(c):64} {c.summary}" for c in COMMANDS if c.ours]
    lines += ["", "Storm commands (names accepted case-insensitively):"]
    lines += [f"  {usage_line(c):64} {c.summary}" for c in COMMANDS if not c.ours]
    lines += ["", "Exit codes follow Storm's worker-launcher; see worker-launcher(8)."]
    return "\n".join(lines)


def dispatch(argv: list) -> int:
    caller = identity.start()
    if identity.privileged():
        from .paths import trust

        trust.require_trusted_code()
    if argv and argv[0] in ("--help", "-h"):
        print(help_text())
        return ExitCode.OK
    if argv and argv[0] in ("--check-config", "--checksetup", "--list-state", "--version",
                            "--json"):
        from .admin import options

        return options.run(argv)

    from .core import audit

    audit.begin(caller.uid, argv)  # from here on every outcome is logged
    if len(argv) < 2:
        print(USAGE)
        raise LauncherError(ExitCode.INVALID_ARGUMENT_NUMBER, "")  # the usage says it all

    from . import commands
    from .core import users
    from .launch import Launch, load_config

    cfg, group_gid = load_config()
    command = commands.find(argv[1])
    user = users.lookup(argv[0], cfg.min_user_id, cfg.banned_users,
                        groups=command is None or command.user_groups)
    if command is None:
        raise LauncherError(ExitCode.INVALID_COMMAND_PROVIDED,
                            f"invalid command {argv[1]!r}; see worker-launcher --help")
    audit.command(command.verb)
    args = argv[2:]
    if len(args) != len(command.args):
        print(f"Usage: {commands.usage_line(command)}")
        raise LauncherError(ExitCode.INVALID_ARGUMENT_NUMBER,
                            f"{command.name} takes {len(command.args)} arguments, got {len(args)}")
    if not identity.privileged():  # else each verb fails at its first privileged step
        raise LauncherError(ExitCode.SETUID_OPER_FAILED,
                            "not running with root privileges: the setuid bit of worker-launcher "
                            "is missing or was ignored (no_new_privs, a nosuid mount)")
    return command.handler(Launch(cfg, caller, user, group_gid), *args)


def run(argv: list) -> None:
    from .core import interrupts
    from .core.errors import FAILED, outcome_of

    interrupts.install()  # before anything is done: a cancel signal becomes an undo
    message = None
    try:
        code = int(dispatch(argv))
        outcome = "ok" if code == 0 else FAILED  # a child's status passed on (docker)
    except LauncherError as err:
        code, message, outcome = int(err.code), err.message, outcome_of(err)
    except KeyboardInterrupt:  # SIGINT before install()
        code, message, outcome = 128 + 2, "cancelled by SIGINT", FAILED
    except Exception as err:  # the last line of defence: one line, never a traceback
        code, outcome = ExitCode.INITIALIZE_USER_FAILED, FAILED
        message = f"internal error: {type(err).__name__}: {err}"
    if message:
        _report(message)
    if "worker_launcher.core.audit" in sys.modules:
        try:
            sys.modules["worker_launcher.core.audit"].finish(code, outcome, message)
        except Exception:  # an unreachable syslog never changes the outcome
            pass
    try:
        sys.stdout.flush()
    except OSError:
        pass
    os._exit(code)


def _report(message: str) -> None:
    try:
        from .core.errors import one_line

        sys.stderr.write(f"worker-launcher: {one_line(message)}\n")
        sys.stderr.flush()
    except OSError:
        pass
