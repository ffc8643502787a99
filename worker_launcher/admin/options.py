"""The operator's options, in any order:

    --check-config [FILE [POLICY]] [--json]   (Storm's name: --checksetup)
    --list-state [--json]
    --version [--json]

Exactly one action; FILE and POLICY (a candidate config and policy, checked without being
installed) only with --check-config; `--` ends the options (a FILE that starts with '-').
"""

from ..core.errors import ExitCode, LauncherError

ACTIONS = {"--check-config": "check", "--checksetup": "check", "--list-state": "state",
           "--version": "version"}
MAX_OPERANDS = {"check": 2, "state": 0, "version": 0}


def _usage_error(message: str) -> LauncherError:
    return LauncherError(ExitCode.INVALID_ARGUMENT_NUMBER,
                         f"{message}; see worker-launcher --help")


def parse(argv: list) -> tuple:
    """(action, json wanted, operands) or LauncherError(1)."""
    actions, operands, as_json, options_ended = [], [], False, False
    for word in argv:
        if options_ended or not word.startswith("-"):
            operands.append(word)
        elif word == "--":
            options_ended = True
        elif word == "--json":
            as_json = True
        elif word in ACTIONS:
            actions.append(word)
        else:
            raise _usage_error(f"unknown option {word!r}")
    if len(actions) != 1:
        raise _usage_error("expected one of --check-config, --list-state, --version"
                           if not actions else f"{' and '.join(actions)} cannot be combined")
    action = ACTIONS[actions[0]]
    if len(operands) > MAX_OPERANDS[action]:
        takes = "at most a config and a policy file" if action == "check" else "no operands"
        raise _usage_error(f"{actions[0]} takes {takes}, got {len(operands)}")
    return action, as_json, operands


def run(argv: list) -> int:
    action, as_json, operands = parse(argv)
    if action == "check":
        from . import checks

        return checks.run(operands, as_json)
    if action == "state":
        from . import state

        return state.run(as_json)
    return version(as_json)


def version(as_json: bool) -> int:
    """The version and the paths compiled in at build time: what this binary will run."""
    import sys

    from .. import __version__, _build

    facts = (("version", __version__), ("config", _build.CONF_PATH),
             ("interpreter", _build.PYTHON_PATH or sys.executable),
             ("python", sys.version.split()[0]), ("entry", _build.ENTRY_PATH),
             ("binary", _build.BINARY_PATH))
    if as_json:
        import json

        print(json.dumps(dict(facts), indent=2))
    else:
        print(f"worker-launcher {__version__}")
        for name, value in facts[1:]:
            print(f"{name + ':':12} {value}")
    return ExitCode.OK
