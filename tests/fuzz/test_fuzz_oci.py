"""oci-config.json under hypothesis: Storm's request with any field replaced, removed or
added, and arbitrary bytes. Every input is an OciSpec or exit 24 with one line; an accepted
spec never carries a relative or dotted path, another user, a terminal or privileges."""

import copy
import json

from hypothesis import given, strategies as st

from support.fuzz import FUZZ
from support.oci import storm_json, storm_request
from worker_launcher.core.errors import ExitCode, LauncherError, one_line
from worker_launcher.core.policy import normalize
from worker_launcher.oci import spec as oci_spec

WID = "8198e1f0-f323-4b9d-8625-e4fd640cd058"
WORKDIR = f"/storm/local/workers/{WID}"
EXPECT = oci_spec.Expect("wlalice", WORKDIR, "/storm", "/sys/fs/cgroup")
SEED = storm_request(user="wlalice", worker_id=WID, port=6700, local="/storm/local",
                     storm_home="/opt/storm", nscd="/var/run/nscd", cgroup_root="/sys/fs/cgroup",
                     artifacts="/storm/artifacts/topo/6700", topology="topo",
                     layers=["/storm/local/supervisor/oci-resources/layers/a.sqsh"],
                     memory=1 << 30, numa=("0,1", "0"))
SEED["ociRuntimeConfig"]["linux"]["seccomp"] = {
    "defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_X86_64"],
    "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW",
                  "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"}]},
                 {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]}

SCALARS = (st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats()
           | st.text(max_size=12) | st.sampled_from(
               ["/", "..", "/a/../b", "relative", "/a//b", "/proc", "root", "wlbob", "rw", "ro",
                "rbind", "rprivate", "bind", "tmpfs", "SCMP_ACT_ALLOW", "SCMP_CMP_EQ", "\0",
                "/etc/shadow", f"6700-{WID}/../x", "application/vnd.squashfs", "\n"]))
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=8)


def _paths(node, prefix=()):
    """Every (path to a value) in the document."""
    yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, prefix + (key,))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _paths(value, prefix + (index,))


ALL_PATHS = list(_paths(SEED))


def _edit(document, path, op, value):
    if not path:
        return value if op == "replace" else document
    parent = document
    for step in path[:-1]:
        parent = parent[step]
    last = path[-1]
    if op == "replace":
        parent[last] = value
    elif op == "delete":
        del parent[last]
    elif isinstance(parent, dict):
        parent[f"extra{len(parent)}"] = value
    else:
        parent.append(value)
    return document


EDITS = st.lists(st.tuples(st.sampled_from(ALL_PATHS),
                           st.sampled_from(["replace", "delete", "add"]), VALUES), max_size=3)


def _apply(edits):
    document = copy.deepcopy(SEED)
    for path, op, value in edits:
        try:
            document = _edit(document, path, op, value)
        except (KeyError, IndexError, TypeError, AttributeError):
            pass  # an earlier edit removed or replaced the parent
    return document


def _mutate(edit) -> bytes:
    """Storm's exact bytes (storm_json) with a few bytes replaced: what a truncated write or
    a corrupted file gives."""
    position, inserted, removed = edit
    data = storm_json(SEED)
    position %= len(data) + 1
    return data[:position] + inserted + data[position + removed:]


def _one_line_24(err: LauncherError) -> None:
    """Exit 24, naming the file. (A JSON key may hold a newline, which the message quotes;
    main prints every message through errors.one_line, which escapes it.)"""
    assert err.code == ExitCode.INVALID_CONFIG_FILE, err.message
    assert err.message.startswith("oci-config.json ") and "\n" not in one_line(err.message)


def test_the_seed_is_accepted():
    parsed = oci_spec.parse(copy.deepcopy(SEED), EXPECT)
    assert parsed.container_id == SEED["containerId"]


@FUZZ
@given(EDITS.map(_apply))
def test_parse_accepts_or_refuses_with_24(document):
    try:
        parsed = oci_spec.parse(document, EXPECT)
    except LauncherError as err:
        _one_line_24(err)
        return
    assert parsed.container_id == SEED["containerId"]
    assert parsed.cwd == WORKDIR and parsed.args[-2:] == ("bash", parsed.script)
    for path in (parsed.pid_file, parsed.script, parsed.cwd, parsed.cgroups_path, *parsed.layers,
                 *(m.source for m in parsed.mounts), *(m.destination for m in parsed.mounts)):
        assert normalize(path) == path
    assert parsed.cgroups_path != "/"
    for mount in parsed.mounts:
        assert set(mount.options) in ({"ro", "rbind", "rprivate"}, {"rw", "rbind", "rprivate"})
        assert oci_spec.destination_problem(mount.destination, mount.source, mount.writable,
                                            "/sys/fs/cgroup") is None
    assert parsed.cgroups_path == f"/storm/{parsed.container_id}"
    assert set(parsed.resources) <= {"memory", "cpu"}
    assert not {"realtimeRuntime", "realtimePeriod"} & set(parsed.resources.get("cpu", {}))
    process = document["ociRuntimeConfig"]["process"]
    assert process.get("noNewPrivileges", True) is True and process.get("terminal") in (None, False)
    if parsed.seccomp is not None:
        assert parsed.seccomp["defaultAction"] not in ("SCMP_ACT_ALLOW", "SCMP_ACT_LOG")
        assert "listenerPath" not in parsed.seccomp


@FUZZ
@given(st.binary(max_size=400) | EDITS.map(_apply).map(lambda d: json.dumps(d).encode())
       | st.tuples(st.integers(0, 4000), st.binary(max_size=4), st.integers(0, 3)).map(_mutate)
       | st.integers(1, 100000).map(lambda n: b"[" * n + b"]" * n)
       | st.integers(1, 100000).map(lambda n: b'{"a":' * n + b"1" + b"}" * n))
def test_decode_then_parse_never_raises_anything_else(data):
    try:
        oci_spec.parse(oci_spec.decode(data), EXPECT)
    except LauncherError as err:
        _one_line_24(err)


@FUZZ
@given(st.text(max_size=50) | st.from_regex(r"\A[0-9]{1,6}-[0-9a-fA-F-]{30,40}\Z") | VALUES)
def test_container_id_is_never_a_path(text):
    if oci_spec.valid_container_id(text):
        assert "/" not in text and ".." not in text and text.isascii() and text == text.strip()
