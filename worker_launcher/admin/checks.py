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


def _read_candidate(path: str, limit: int, what: str) -> tuple:
    """(the path, its text): a candidate file read with the caller's rights, like any file
    the caller names. Its owner and mode are not checked: it is not installed yet."""
    from ..paths import files

    try:
        return path, files.read_as_caller(path, limit).decode("utf-8")
    except UnicodeDecodeError:
        raise LauncherError(ExitCode.INVALID_CONFIG_FILE, f"{what} {path} is not UTF-8 text") from None


def _read_config(candidate):
    from ..core import config
    from ..launch import read_config

    if candidate is None:
        return read_config()
    path, text = _read_candidate(candidate, config.MAX_CONFIG_BYTES, "config file")
    return config.parse(text, path)


def _load_policy(cfg, candidate):
    """The installed policy named by the config, or a candidate policy file (read, and its
    paths resolved, with the caller's rights)."""
    from ..launch import load_policy

    if candidate is None:
        return load_policy(cfg)
    from ..core import identity, policy
    from ..paths import resolve

    path, text = _read_candidate(candidate, policy.MAX_POLICY_BYTES, "policy file")
    data = policy.parse_document(text, path)

    def canonical(value):  # with the caller's rights: a candidate shows the caller nothing new
        try:
            with identity.acting_as(identity.caller()):
                return resolve.canonical(value, pseudo_ok=True)
        except LauncherError as err:
            raise LauncherError(ExitCode.INVALID_CONFIG_FILE,
                                f"invalid policy file {path}: {err.message}") from None

    return policy.from_mapping(data, path, cfg.run_root, resolve=canonical)


def _config_checks(candidate=None, candidate_policy=None) -> tuple:
    """(results, the parsed config or None)."""
    import grp

    from .. import _build
    from ..paths import trust

    results = []
    try:
        cfg = _read_config(candidate)
    except LauncherError as err:
        return [Result(FAIL, "config", err.message)], None
    resolved = cfg.path
    results.append(Result(OK, "config", f"{resolved} parses (a candidate: not installed, its "
                                        f"owner and mode not checked)" if candidate else
                                        f"{resolved} is root-owned and parses"))
    if cfg.unknown_keys:
        from . import keys

        results += [Result(FAIL, "config", problem)
                    for problem in keys.config_key_problems(cfg.unknown_keys, resolved)]
    try:
        gid = grp.getgrnam(cfg.group).gr_gid
        results.append(Result(OK, "group", f"launcher group {cfg.group} is gid {gid}"))
        problem = trust.binary_problem(_build.BINARY_PATH, gid)
        results.append(Result(FAIL, "binary", problem) if problem else
                       Result(OK, "binary", f"{_build.BINARY_PATH} is root:{cfg.group}, "
                                            "setuid and setgid, no access for others"))
    except KeyError:
        results.append(Result(FAIL, "group", f"launcher group {cfg.group} does not exist"))
    if candidate is not None and candidate_policy is None and cfg.policy_path:
        candidate_policy = named_policy = cfg.policy_path  # read as the caller, as the config
    else:
        named_policy = None
    results += _policy_checks(cfg, candidate_policy, named_policy)
    return results, cfg


def _policy_checks(cfg, candidate, named=None) -> list:
    """`named`: the policy a candidate config names, which must also be safe to install."""
    from ..paths import trust

    try:
        loaded = _load_policy(cfg, candidate)
    except LauncherError as err:
        return [Result(FAIL, "policy", err.message)]
    if not loaded.configured:
        return [Result(WARN, "policy", "no worker.launcher.policy is set: only the built-in "
                                       "protected paths are refused")]
    problem = named and trust.chain_problem(named)  # the caller could read it: no secret
    if problem:
        results = [Result(FAIL, "policy", f"policy file {named} is not safe: {problem}")]
    else:
        results = [Result(OK, "policy", f"{loaded.source} is valid (a candidate: not installed)"
                          if candidate and not named else
                          f"{loaded.source} is root-owned and valid")]
    if loaded.ignored_keys:
        from . import keys

        results += [Result(FAIL, "policy", problem)
                    for problem in keys.policy_key_problems(loaded.ignored_keys, loaded.source)]
    results += [Result(FAIL, "policy", problem) for problem in unusable_verbs(loaded)]
    if not loaded.allowed_images:
        results.append(Result(WARN, "policy", f"{loaded.source} sets no storm.oci.allowed.images: "
                                              "docker-run accepts any image, which root's docker "
                                              "pulls with root's registry credentials"))
    return results


def unusable_verbs(loaded) -> list:
    """What a configured policy leaves no verb can do, one line each."""
    if not loaded.configured:
        return []
    problems = []
    if not loaded.local_dir:
        problems.append(f"{loaded.source} sets no storm.local.dir: code-dir, blob, rmr, worker, "
                        f"launch-docker-container and run-oci-container refuse every path "
                        f"(exit 5), as nothing is below a storm directory")
    if not loaded.artifacts_dir:
        problems.append(f"{loaded.source} sets none of storm.workers.artifacts.dir, storm.log.dir "
                        f"and storm.home: artifacts-dir refuses every worker's artifacts "
                        f"directory (exit 5), and no container may bind it")
    return problems


def collect(candidate=None, candidate_policy=None) -> list:
    from . import runtime_checks

    config_results, cfg = _config_checks(candidate, candidate_policy)
    results = [_privilege_check()] + _code_checks() + config_results
    if cfg is not None and candidate is None:
        results += [Result(*item) for item in runtime_checks.collect(cfg)]
    elif cfg is not None:  # the paths a candidate names are looked at with the caller's rights
        import _socket  # noqa: F401  what the checks load, loaded as root (see entry.py)
        import codecs

        from ..core import identity

        codecs.lookup("ascii")  # encodings.ascii, for /proc/filesystems

        with identity.acting_as(identity.caller()):
            results += [Result(*item) for item in runtime_checks.collect(cfg)]
    return results


def run(files: list, as_json: bool = False) -> int:
    """--check-config [FILE [POLICY]]: the installed config (or the candidate FILE) and the
    policy it names (or the candidate POLICY). Exit 0, or Storm's 22 (the binary, the code)
    or 24 (anything else) for the first failure, which is also named on stderr."""
    import sys

    results = collect(*files)
    failures = [result for result in results if result.status == FAIL]
    code = (EXIT_FOR_CHECK.get(failures[0].name, ExitCode.INVALID_CONFIG_FILE) if failures
            else ExitCode.OK)
    if as_json:
        import json

        print(json.dumps({"ok": not failures, "exit": code,
                          "checks": [{"status": r.status, "name": r.name, "detail": r.detail}
                                     for r in results],
                          "summary": {"checks": len(results), "failed": len(failures),
                                      "warnings": sum(r.status == WARN for r in results)}},
                         indent=2))
    else:
        for result in results:
            print(f"{result.status:4} {result.name:8} {result.detail}")
        print(f"{'FAIL' if failures else 'ok':4} summary  {len(failures)} of {len(results)} "
              f"checks failed")
    if failures:
        from ..core.errors import one_line

        sys.stdout.flush()
        sys.stderr.write(f"worker-launcher: {len(failures)} of {len(results)} checks failed; "
                         f"first: {one_line(failures[0].detail)}\n")
    return code
