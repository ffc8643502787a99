"""The pure rules and fd walks behind code-dir, artifacts-dir, blob, rmr and signal."""

import os
import stat

import pytest

from support.env import require
from worker_launcher import commands
from worker_launcher.core.errors import ExitCode, LauncherError
from worker_launcher.paths import resolve as pathwalk, tree as dirtree
from worker_launcher.privileged import ownership


@pytest.mark.parametrize("mode, writable, setgid, want", [
    (stat.S_IFREG | 0o644, False, True, 0o460),
    (stat.S_IFREG | 0o644, True, True, 0o660),
    (stat.S_IFREG | 0o755, False, True, 0o560),
    (stat.S_IFREG | 0o4777, True, True, 0o760),  # set-id and 'other' bits never survive
    (stat.S_IFREG | 0o000, False, True, 0o060),
    (stat.S_IFDIR | 0o755, False, True, 0o2570),
    (stat.S_IFDIR | 0o755, True, True, 0o2770),
    (stat.S_IFDIR | 0o1777, True, False, 0o770),  # workdir/tmp: no setgid, no sticky bit
    (stat.S_IFDIR | 0o000, False, True, 0o2070),
])
def test_storm_mode(mode, writable, setgid, want):
    assert ownership.storm_mode(mode, writable, setgid) == want


@pytest.mark.parametrize("prefix, target, rest, want", [
    ("/var", "/data/storm", ["workers", "x"], "/data/storm/workers/x"),
    ("/var", "storm-2", ["x"], "/var/storm-2/x"),
    ("/var/lib", "../../srv/./s", [], "/srv/s"),
    ("/", "../../..", ["etc"], "/etc"),
    ("/a", "b//c/", [], "/a/b/c"),
])
def test_follow_link(prefix, target, rest, want):
    assert pathwalk.follow_link(prefix, target, rest) == want


def _st(uid, mode):
    return os.stat_result((mode, 1, 1, 1, uid, 0, 0, 0, 0, 0))


def test_only_root_planted_links_are_trusted():
    root_dir = _st(0, stat.S_IFDIR | 0o755)
    assert pathwalk.trusted_link(_st(0, stat.S_IFLNK | 0o777), root_dir)
    assert not pathwalk.trusted_link(_st(1901, stat.S_IFLNK | 0o777), root_dir)
    assert not pathwalk.trusted_link(_st(0, stat.S_IFLNK | 0o777), _st(0, stat.S_IFDIR | 0o1777))
    assert not pathwalk.trusted_link(_st(0, stat.S_IFLNK | 0o777), _st(0, stat.S_IFDIR | 0o775))
    assert not pathwalk.trusted_link(_st(0, stat.S_IFLNK | 0o777), _st(1901, stat.S_IFDIR | 0o755))


def test_prepare_workdir_signature_is_stable():
    import inspect

    from worker_launcher.classic import dirs
    assert list(inspect.signature(dirs.prepare_workdir).parameters) == ["launch", "workdir"]


def test_storm_commands_are_registered():
    for name, args in (("code-dir", 1), ("artifacts-dir", 1), ("blob", 1), ("rmr", 1),
                       ("worker", 2), ("profiler", 2), ("signal", 2)):
        command = commands.find(name.upper())
        assert command is not None and len(command.args) == args and not command.ours


# --- walks on a real tree, with our own uid (no privileges needed) -----------------------
@pytest.fixture
def tree(tmp_path):
    top = tmp_path / "top"
    (top / "a" / "b").mkdir(parents=True)
    (top / "tmp" / "t").mkdir(parents=True)
    for name, mode in (("f", 0o644), ("a/x", 0o755), ("a/b/y", 0o600), ("tmp/t/z", 0o644)):
        (top / name).write_text(name)
        os.chmod(top / name, mode)
    outside = tmp_path / "outside"
    outside.mkdir(mode=0o700)
    (outside / "keep").write_text("keep")
    os.chmod(outside / "keep", 0o600)
    os.symlink(outside, top / "a" / "to-outside")
    os.symlink(outside / "keep", top / "to-keep")
    return top, outside


def _modes(top):
    return {p.relative_to(top).as_posix(): stat.S_IMODE(p.lstat().st_mode)
            for p in [top, *top.rglob("*")] if not p.is_symlink()}


def test_fix_tree_applies_the_rule_and_skips_symlinks(tree):
    top, outside = tree
    rule = ownership.Rule(os.getuid(), os.getgid(), True)
    tmp_rule = ownership.Rule(os.getuid(), os.getgid(), True, setgid_dirs=False)
    fd = os.open(top, dirtree.DIR_READ_FLAGS)
    try:
        ownership.fix_tree(fd, str(top), rule, {"tmp": tmp_rule})
    finally:
        os.close(fd)
    assert _modes(top) == {".": 0o2770, "a": 0o2770, "a/b": 0o2770, "tmp": 0o770, "tmp/t": 0o770,
                           "f": 0o660, "a/x": 0o760, "a/b/y": 0o660, "tmp/t/z": 0o660}
    assert stat.S_IMODE(outside.stat().st_mode) == 0o700
    assert stat.S_IMODE((outside / "keep").stat().st_mode) == 0o600


def test_fix_tree_refuses_a_fifo(tree):
    top, _ = tree
    os.mkfifo(top / "a" / "fifo")
    fd = os.open(top, dirtree.DIR_READ_FLAGS)
    try:
        with pytest.raises(LauncherError) as caught:
            ownership.fix_tree(fd, str(top), ownership.Rule(os.getuid(), os.getgid(), False))
    finally:
        os.close(fd)
    assert caught.value.code == dirtree.TREE_FAILED and "a/fifo" in caught.value.message


def test_remove_below_never_follows_symlinks(tree):
    top, outside = tree
    fd = os.open(top, dirtree.DIR_READ_FLAGS)
    errors = []

    def open_dir(parent, name, where):
        child = os.open(name, dirtree.DIR_READ_FLAGS, dir_fd=parent)
        return child, os.fstat(child)
    try:
        dirtree.remove_below(fd, str(top), errors, open_dir)
    finally:
        os.close(fd)
    assert errors == [] and os.listdir(top) == []
    assert (outside / "keep").read_text() == "keep"


def test_locate(tree):
    top, _ = tree
    entry = pathwalk.locate(str(top / "a" / "x"))
    try:
        assert entry.path == str(top / "a" / "x") and stat.S_ISREG(entry.st.st_mode)
    finally:
        entry.close()
    os.chmod(top, 0o775)  # not root's alone: a final symlink there is returned, not followed
    entry = pathwalk.locate(str(top / "to-keep"))
    try:
        assert stat.S_ISLNK(entry.st.st_mode)
    finally:
        entry.close()
    assert pathwalk.locate(str(top / "missing" / "deeper")).st is None


def test_locate_refuses_a_link_others_could_have_planted(tree):
    top, _ = tree
    os.chmod(top / "a", 0o777)  # anyone could have put the link there
    with pytest.raises(LauncherError) as caught:
        pathwalk.locate(str(top / "a" / "to-outside" / "keep"))
    assert caught.value.code == ExitCode.INVALID_NM_ROOT_DIRS
    assert "to-outside is a symlink" in caught.value.message


def test_locate_follows_a_link_only_root_could_plant(tree):
    require(os.geteuid() == 0, "needs a root-owned link in a root-owned directory")
    top, outside = tree
    os.chmod(top / "a", 0o755)
    entry = pathwalk.locate(str(top / "a" / "to-outside" / "keep"))
    try:
        assert entry.path == str(outside / "keep")
    finally:
        entry.close()
