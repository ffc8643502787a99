"""`--check-config`: every check of the install, one line each, exit 0 only if none fails."""

from ..core.errors import ExitCode, LauncherError

OK, WARN, FAIL = "ok", "WARN", "FAIL"
# Storm's --checksetup exits 22 for a bad binary, 24 for a bad config.
EXIT_FOR_CHECK = {"code": ExitCode.INVALID_CONTAINER_EXEC_PERMISSIONS,
                  "binary": ExitCode.INVALID_CONTAINER_EXEC_PERMISSIONS,
                  "setuid": ExitCode.INVALID_CONTAINER_EXEC_PERMISSIONS}


class Result(tuple):
    """(status, name, detail) of one check."""

    __slots__ = ()

    def __new__(cls, status: str, name: str, detail: str):
        return tuple.__new__(cls, (status, name, detail))

    status = property(lambda self: self[0])
    name = property(lambda self: self[1])
    detail = property(lambda self: self[2])


def _privilege_check() -> Result:
    from ..core import identity

    if identity.privileged():
        return Result(OK, "setuid", "running with root privileges")
    return Result(FAIL, "setuid", "not running with root privileges: the setuid bit of the "
                                  "binary is missing or ignored (a nosuid mount, no_new_privs)")


def _code_checks() -> list:
    from ..paths import trust

    problems = trust.code_problems()
    if problems:
        return [Result(FAIL, "code", problem) for problem in problems]
    return [Result(OK, "code", "interpreter path and modules are root-owned, not group/world-writable")]


def _config_checks() -> tuple:
    """(results, the parsed config or None)."""
    import grp

    from .. import _build
    from ..launch import load_policy, read_config
    from ..paths import trust

    results = []
    try:
        cfg = read_config()
    except LauncherError as err:
        return [Result(FAIL, "config", err.message)], None
    resolved = cfg.path
    results.append(Result(OK, "config", f"{resolved} is root-owned and parses"))
    for key in cfg.unknown_keys:
        results.append(Result(WARN, "config", f"unknown key {key} in {resolved} is ignored"))
    try:
        gid = grp.getgrnam(cfg.group).gr_gid
        results.append(Result(OK, "group", f"launcher group {cfg.group} is gid {gid}"))
        problem = trust.binary_problem(_build.BINARY_PATH, gid)
        results.append(Result(FAIL, "binary", problem) if problem else
                       Result(OK, "binary", f"{_build.BINARY_PATH} is root:{cfg.group}, "
                                            "setuid and setgid, no access for others"))
    except KeyError:
        results.append(Result(FAIL, "group", f"launcher group {cfg.group} does not exist"))
    try:
        loaded = load_policy(cfg)
    except LauncherError as err:
        results.append(Result(FAIL, "policy", err.message))
    else:
        if loaded.configured:
            results.append(Result(OK, "policy", f"{loaded.source} is root-owned and valid"))
            for key in loaded.ignored_keys:
                results.append(Result(WARN, "policy", f"key {key} in {loaded.source} is not used"))
        else:
            results.append(Result(WARN, "policy", "no worker.launcher.policy is set: only the "
                                                  "built-in protected paths are refused"))
    return results, cfg


def collect() -> list:
    from . import runtime_checks

    config_results, cfg = _config_checks()
    results = [_privilege_check()] + _code_checks() + config_results
    if cfg is not None:
        results += [Result(*item) for item in runtime_checks.collect(cfg)]
    return results


def run(args: list) -> int:
    if args not in ([], ["--json"]):
        raise LauncherError(ExitCode.INVALID_ARGUMENT_NUMBER,
                            f"--check-config takes only --json, got {' '.join(args)}")
    results = collect()
    failures = [result for result in results if result.status == FAIL]
    code = (EXIT_FOR_CHECK.get(failures[0].name, ExitCode.INVALID_CONFIG_FILE) if failures
            else ExitCode.OK)
    if args == ["--json"]:
        import json

        print(json.dumps({"ok": not failures, "exit": code,
                          "checks": [{"status": r.status, "name": r.name, "detail": r.detail}
                                     for r in results],
                          "summary": {"checks": len(results), "failed": len(failures),
                                      "warnings": sum(r.status == WARN for r in results)}},
                         indent=2))
        return code
    for result in results:
        print(f"{result.status:4} {result.name:8} {result.detail}")
    print(f"{'FAIL' if failures else 'ok':4} summary  {len(failures)} of {len(results)} checks failed")
    return code
