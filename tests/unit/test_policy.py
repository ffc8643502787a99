import pytest

from worker_launcher.core import policy
from worker_launcher.core.errors import ExitCode, LauncherError

RUN_ROOT = "/run/worker-launcher"
STORM = {
    "storm.local.dir": "/var/storm",
    "storm.home": "/usr/share/apache-storm-2.3.0",
    "storm.workers.artifacts.dir": "/var/log/storm/workers-artifacts",
    "storm.oci.allowed.images": ["storm/rhel7:dev_current"],
    "storm.oci.readonly.bindmounts": ["/etc/krb5.conf", "/home/y/lib64/storm"],
    "storm.oci.readwrite.bindmounts": ["/data/shared"],
    "storm.oci.nscd.dir": "/var/run/nscd",
    "storm.oci.cgroup.root": "/sys/fs/cgroup",
    "storm.oci.cgroup.parent": "/storm",
    "storm.oci.seccomp.profile": "/etc/storm/seccomp.json",
    "topology.workers": 3,  # any other storm.yaml key is ignored
}
WID = "8198e1f0-f323-4b9d-8625-e4fd640cd058"


@pytest.fixture
def configured():
    return policy.from_mapping(STORM, "/etc/storm/policy.yaml", RUN_ROOT)


def test_normalize():
    assert policy.normalize("/a//b/") == "/a/b"
    assert policy.normalize("/") == "/"
    for bad in ("a/b", "/a/../b", "/a/./b", "", "/a\0b", None):
        assert policy.normalize(bad) is None


# Exactly what Storm's DockerManager and RuncLibContainerManager bind (the seeds).
@pytest.mark.parametrize("source, writable", [
    ("/sys/fs/cgroup", False),
    ("/usr/share/apache-storm-2.3.0", False),
    ("/var/storm/supervisor", False),
    (f"/var/storm/workers/{WID}", True),
    ("/var/log/storm/workers-artifacts/word-count-1-1591895933/6703", True),
    (f"/var/storm/workers-users/{WID}", True),
    ("/var/run/nscd", True),
    ("/var/run/nscd", False),
    ("/var/storm/supervisor/stormdist/word-count-1-1591895933/shared_by_topology", True),
    (f"/var/storm/workers/{WID}/tmp", True),
    ("/etc/krb5.conf", False),
    ("/home/y/lib64/storm", False),
    ("/etc/resolv.conf", False),
    ("/etc/hostname", False),
    ("/etc/hosts", False),
    ("/data/shared", True),
])
def test_policy_allows_what_storm_binds(configured, source, writable):
    assert configured.bind_refusal(source, writable) is None


@pytest.mark.parametrize("source, writable, fragment", [
    ("/", False, "protected host path"),
    ("/proc", False, "/proc"),
    ("/proc/1/root", False, "/proc"),
    ("/sys", False, "/sys"),
    ("/sys/fs/cgroup", True, "/sys"),
    ("/sys/kernel", False, "/sys"),
    ("/dev", False, "/dev"),
    ("/dev/sda", False, "/dev"),
    ("/boot", False, "/boot"),
    ("/root/.ssh", False, "/root"),
    ("/var/run/docker.sock", False, "docker.sock"),
    ("/run/docker.sock", False, "docker.sock"),
    ("/var/run", False, "docker.sock"),
    ("/run", False, "protected host path"),
    ("/run/worker-launcher/layers", False, RUN_ROOT),
    ("/etc/storm", True, "may not be writable"),
    ("/usr/local", True, "/usr"),
    ("/lib64", True, "/lib64"),
    ("/var/storm/supervisor", True, "not allowed read-write"),
    ("/var/storm/workers", True, "not allowed read-write"),
    ("/home/other", False, "not allowed read-only"),
    ("/etc/shadow", False, "not allowed read-only"),
    ("relative/path", False, "not a normalized absolute path"),
    ("/var/storm/workers/../../etc", True, "not a normalized absolute path"),
])
def test_policy_refuses(configured, source, writable, fragment):
    refusal = configured.bind_refusal(source, writable)
    assert refusal is not None and fragment in refusal


def test_without_policy_only_protected_paths_are_refused():
    builtin = policy.Policy(run_root=RUN_ROOT)
    assert builtin.bind_refusal("/home/y/anything", True) is None
    assert builtin.bind_refusal("/etc/storm", False) is None
    assert builtin.bind_refusal("/sys/fs/cgroup", False) is None
    assert builtin.bind_refusal("/etc/storm", True) is not None
    assert builtin.bind_refusal("/", False) is not None
    assert builtin.bind_refusal(RUN_ROOT, False) is not None


def test_directory_roots(configured):
    assert configured.directory_refusal("/var/storm/supervisor/stormdist/topo-1") is None
    assert configured.directory_refusal("/var/log/storm/workers-artifacts/topo/6703") is None
    assert "not below a storm directory" in configured.directory_refusal("/var/storm")
    assert "not below a storm directory" in configured.directory_refusal("/home/alice")
    assert "protected" in configured.directory_refusal("/etc/storm")
    builtin = policy.Policy()
    assert builtin.directory_refusal("/home/alice/storm") is None
    for protected in ("/", "/etc", "/usr/lib", "/var/run", "/root", "/run/worker-launcher/x"):
        assert builtin.directory_refusal(protected) is not None


def test_images(configured):
    assert configured.image_allowed("storm/rhel7:dev_current")
    assert not configured.image_allowed("evil/image:latest")
    assert policy.Policy().image_allowed("anything:latest")


def test_relative_dirs_follow_storm_defaults():
    loaded = policy.from_mapping({"storm.home": "/opt/storm", "storm.local.dir": "storm-local"},
                                 "/p.yaml", RUN_ROOT)
    assert loaded.local_dir == "/opt/storm/storm-local"
    assert loaded.artifacts_dir == "/opt/storm/logs/workers-artifacts"
    assert policy.from_mapping({"storm.oci.cgroup.parent": "storm"}, "/p", RUN_ROOT).cgroup_parent == "/storm"


@pytest.mark.parametrize("data, key", [
    ([1, 2], "mapping"),
    ({"storm.local.dir": 5}, "storm.local.dir"),
    ({"storm.local.dir": "relative"}, "storm.local.dir"),
    ({"storm.oci.readonly.bindmounts": "/etc"}, "storm.oci.readonly.bindmounts"),
    ({"storm.oci.readwrite.bindmounts": [3]}, "storm.oci.readwrite.bindmounts"),
    ({"storm.oci.allowed.images": {"a": 1}}, "storm.oci.allowed.images"),
    ({"storm.oci.readonly.bindmounts": ["/a/../b"]}, "storm.oci.readonly.bindmounts"),
    ({"storm.oci.cgroup.parent": "/storm/../x"}, "storm.oci.cgroup.parent"),
])
def test_bad_policy_exits_24_naming_the_key(data, key):
    with pytest.raises(LauncherError) as caught:
        policy.from_mapping(data, "/etc/storm/policy.yaml", RUN_ROOT)
    assert caught.value.code == ExitCode.INVALID_CONFIG_FILE
    assert key in caught.value.message and "/etc/storm/policy.yaml" in caught.value.message


def test_json_and_yaml_documents_mean_the_same():
    yaml_text = "storm.local.dir: /var/storm\nstorm.oci.readonly.bindmounts:\n  - /etc/krb5.conf\n"
    json_text = '{"storm.local.dir": "/var/storm", "storm.oci.readonly.bindmounts": ["/etc/krb5.conf"]}'
    assert policy.parse_document(yaml_text, "/p") == policy.parse_document(json_text, "/p")


@pytest.mark.parametrize("text, fragment", [
    ("{\"storm.local.dir\": ", "not valid JSON at line 1"),
    ("storm.local.dir: [unclosed\n", "not valid YAML at line 2"),
])
def test_bad_documents_exit_24(text, fragment):
    with pytest.raises(LauncherError) as caught:
        policy.parse_document(text, "/etc/storm/policy.yaml")
    assert caught.value.code == ExitCode.INVALID_CONFIG_FILE and fragment in caught.value.message


def test_layer_store_follows_storms_localizer():
    """HdfsOciResourcesLocalizer: storm.oci.resources.local.dir, else
    <storm.local.dir>/supervisor/oci-resources, storm.local.dir defaulting to
    <storm.home>/storm-local."""
    assert policy.from_mapping(STORM, "/p", RUN_ROOT).layer_store == \
        "/var/storm/supervisor/oci-resources"
    assert policy.from_mapping({"storm.home": "/opt/storm"}, "/p", RUN_ROOT).layer_store == \
        "/opt/storm/storm-local/supervisor/oci-resources"
    assert policy.from_mapping(dict(STORM, **{"storm.oci.resources.local.dir": "/data/oci"}),
                               "/p", RUN_ROOT).layer_store == "/data/oci"
    assert policy.from_mapping({}, "/p", RUN_ROOT).layer_store is None
    assert policy.Policy().layer_store is None


def test_nscd_dir_defaults_to_storms():
    loaded = policy.from_mapping({"storm.local.dir": "/var/storm"}, "/p", RUN_ROOT)
    assert loaded.nscd_dir == "/var/run/nscd"
    assert loaded.bind_refusal("/var/run/nscd", False) is None
