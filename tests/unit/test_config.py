import pytest

from worker_launcher.core import config
from worker_launcher.core.errors import ExitCode, LauncherError


def parse(text):
    return config.parse(text, "/etc/storm/worker-launcher.cfg")


def test_defaults_follow_storm():
    cfg = parse("storm.worker-launcher.group=storm\n")
    assert cfg.group == "storm"
    assert cfg.min_user_id == 1000
    assert cfg.banned_users == frozenset({"bin"})
    assert cfg.docker_binary == "/usr/bin/docker"
    assert cfg.nsenter_binary == "/usr/bin/nsenter"
    assert cfg.run_root == "/run/worker-launcher"
    assert cfg.runc == "/usr/bin/runc"
    assert cfg.profiler_script is None
    assert cfg.policy_path is None
    assert cfg.lock_timeout == 30
    assert cfg.unknown_keys == ()


def test_lock_timeout():
    assert parse("storm.worker-launcher.group=s\nworker.launcher.oci.lock-timeout=3\n").lock_timeout == 3


def test_values_may_contain_equals_and_comments_are_skipped():
    cfg = parse("# comment\n\n storm.worker-launcher.group = storm \n"
                "worker.profiler.script.path=/opt/a=b/profile.sh\nbanned.users=bin, daemon,,x\n")
    assert cfg.profiler_script == "/opt/a=b/profile.sh"
    assert cfg.banned_users == frozenset({"bin", "daemon", "x"})


def test_unknown_keys_are_reported_not_fatal():
    cfg = parse("storm.worker-launcher.group=storm\nsome.other=1\n")
    assert cfg.unknown_keys == ("some.other",)


@pytest.mark.parametrize("text, fragment", [
    ("", "storm.worker-launcher.group is not set"),
    ("storm.worker-launcher.group=\n", "storm.worker-launcher.group is not set"),
    ("storm.worker-launcher.group=storm\nmin.user.id=abc\n", "min.user.id"),
    ("storm.worker-launcher.group=storm\nmin.user.id=-1\n", "min.user.id"),
    ("storm.worker-launcher.group=storm\njunk line\n", "line 2: expected key=value"),
    ("storm.worker-launcher.group=storm\n=x\n", "line 2"),
    ("storm.worker-launcher.group=a\nstorm.worker-launcher.group=b\n", "set twice"),
    ("storm.worker-launcher.group=s\ndocker.binary=docker\n", "docker.binary must be an absolute"),
    ("storm.worker-launcher.group=s\nworker.launcher.oci.run-root=/run/../etc\n", "run-root"),
    ("storm.worker-launcher.group=s\nworker.launcher.policy=\n", "worker.launcher.policy is empty"),
    ("storm.worker-launcher.group=s\nworker.launcher.oci.lock-timeout=0\n", "lock-timeout"),
    ("storm.worker-launcher.group=s\nworker.launcher.oci.lock-timeout=1.5\n", "lock-timeout"),
    ("storm.worker-launcher.group=s\nworker.launcher.oci.lock-timeout=3601\n", "lock-timeout"),
])
def test_bad_config_exits_24_naming_the_problem(text, fragment):
    with pytest.raises(LauncherError) as caught:
        parse(text)
    assert caught.value.code == ExitCode.INVALID_CONFIG_FILE
    assert fragment in caught.value.message
    assert "/etc/storm/worker-launcher.cfg" in caught.value.message
