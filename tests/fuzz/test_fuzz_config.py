"""Every worker-launcher.cfg, policy document and user name is accepted or refused with exit 24
(or 2) and one clear line: never another exception, never a traceback."""

from hypothesis import given, strategies as st

from support.fuzz import FUZZ
from worker_launcher.core import config, policy, users
from worker_launcher.core.errors import ExitCode, LauncherError

KEYS = st.sampled_from(sorted(config.DEFAULTS) + ["x", "", " ", "#", "=", "min.user.id "])
VALUES = st.text(max_size=40) | st.sampled_from(["/a", "/a=b", "storm", "1000", "-1", "/../x", ""])
LINES = st.tuples(KEYS, st.sampled_from(["=", " = ", "==", ""]), VALUES).map("".join)


def one_clear_line(err: LauncherError, code: int) -> None:
    assert err.code == code
    assert err.message and "\n" not in err.message and "Traceback" not in err.message


@FUZZ
@given(st.lists(LINES, max_size=12).map("\n".join) | st.text(max_size=300))
def test_config_parse(text):
    try:
        cfg = config.parse(text, "/etc/storm/worker-launcher.cfg")
    except LauncherError as err:
        one_clear_line(err, ExitCode.INVALID_CONFIG_FILE)
        return
    assert cfg.group and cfg.min_user_id >= 0
    for path in (cfg.docker_binary, cfg.run_root, cfg.runc):
        assert path.startswith("/") and ".." not in path.split("/")


YAML_SCALARS = st.none() | st.booleans() | st.integers() | st.text(max_size=20) | \
    st.sampled_from(["/var/storm", "relative", "/a/../b", "/", "/etc"])
YAML_VALUES = st.recursive(YAML_SCALARS, lambda inner: st.lists(inner, max_size=4) |
                           st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=10)
POLICY_KEYS = st.sampled_from(list(policy.PATH_KEYS + policy.LIST_KEYS) + ["other.key"])


@FUZZ
@given(st.dictionaries(POLICY_KEYS, YAML_VALUES, max_size=8) | YAML_VALUES)
def test_policy_from_mapping(data):
    try:
        loaded = policy.from_mapping(data, "/etc/storm/policy.yaml", "/run/worker-launcher")
    except LauncherError as err:
        one_clear_line(err, ExitCode.INVALID_CONFIG_FILE)
        return
    for path in (loaded.local_dir, loaded.artifacts_dir, loaded.nscd_dir, loaded.storm_home):
        assert path is None or policy.normalize(path) == path


PATHS = st.lists(st.sampled_from(["", ".", "..", "proc", "sys", "fs", "cgroup", "etc", "var", "run",
                                  "docker.sock", "storm", "workers", "x"]), max_size=5).map(
    lambda parts: "/" + "/".join(parts)) | st.text(max_size=30)


@FUZZ
@given(PATHS, st.booleans())
def test_bind_refusal_never_allows_protected_paths(path, writable):
    builtin = policy.Policy()
    refusal = builtin.bind_refusal(path, writable)
    normal = policy.normalize(path)
    if normal is None:
        assert refusal is not None
        return
    for protected in policy.SENSITIVE:
        if policy.is_within(normal, protected) and not (
                not writable and policy.is_within(normal, builtin.cgroup_root)):
            assert refusal is not None
    if refusal is not None:
        assert "\n" not in refusal


@FUZZ
@given(st.text(max_size=40), st.one_of(st.none(), st.integers(min_value=0, max_value=2**32)))
def test_user_problem(name, uid):
    problem = users.user_problem(name, uid, 1000, frozenset({"bin"}))
    if problem is None:
        assert uid is not None and uid >= 1000 and users.valid_user_name(name)
    else:
        assert "\n" not in problem
