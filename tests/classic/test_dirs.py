"""code-dir, artifacts-dir, blob and rmr, run for real as the supervisor account."""

import os
import stat
import subprocess

import pytest

from support.env import SUPERVISOR, require
from support.env import USER, gid_of_group, uid_of
from support.storm import assert_rule, make_tree, snapshot


def _code_tree(storm):
    top = storm.local / "supervisor" / "stormdist" / "topo-1"
    top.mkdir(parents=True, mode=0o755)
    make_tree(top)
    return top


@pytest.mark.parametrize("verb, writable", [("code-dir", False), ("artifacts-dir", True),
                                            ("blob", False), ("CODE-DIR", False)])
def test_tree_gets_storm_owner_and_modes(launcher, storm, verb, writable):
    top = _code_tree(storm)
    before = snapshot(top)
    result = launcher.run(USER, verb, top)
    assert result.returncode == 0, result.stderr
    assert_rule(before, writable)
    # spot checks written out, independent of the helper's formula
    assert stat.S_IMODE(top.stat().st_mode) == (0o2770 if writable else 0o2570)
    assert stat.S_IMODE((top / "none").stat().st_mode) == (0o260 if writable else 0o060)
    assert stat.S_IMODE((top / "exec").stat().st_mode) == (0o760 if writable else 0o560)
    assert stat.S_IMODE((top / "sub" / "setuid").stat().st_mode) == (0o760 if writable else 0o560)


def test_second_run_changes_nothing(launcher, storm):
    top = _code_tree(storm)
    assert launcher.run(USER, "code-dir", top).returncode == 0
    before = {p: (s.st_uid, s.st_gid, s.st_mode, s.st_ctime_ns) for p, s in snapshot(top).items()}
    assert launcher.run(USER, "code-dir", top).returncode == 0
    after = {p: (s.st_uid, s.st_gid, s.st_mode, s.st_ctime_ns) for p, s in snapshot(top).items()}
    assert after == before


def test_blob_on_a_single_file(launcher, storm):
    blob = storm.local / "blob.jar"
    blob.write_text("jar")
    os.chmod(blob, 0o644)
    os.chown(blob, uid_of(SUPERVISOR), gid_of_group())
    assert launcher.run(USER, "blob", blob).returncode == 0
    st = blob.stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (uid_of(USER), gid_of_group(), 0o460)


def test_symlinks_inside_are_left_alone_and_targets_untouched(launcher, storm):
    top = _code_tree(storm)
    os.symlink(storm.victim, top / "to-victim-dir")
    os.symlink(storm.victim / "secret", top / "sub" / "to-victim-file")
    os.symlink("/nonexistent", top / "dangling")
    for link in ("to-victim-dir", "sub/to-victim-file", "dangling"):
        os.lchown(top / link, uid_of(USER), uid_of(USER))
    victim = storm.victim_state()
    before = snapshot(top)
    assert launcher.run(USER, "artifacts-dir", top).returncode == 0
    assert storm.victim_state() == victim
    assert_rule(before, True)
    assert (top / "to-victim-dir").lstat().st_uid == uid_of(USER)  # the link itself untouched


@pytest.mark.parametrize("verb", ["code-dir", "artifacts-dir", "blob", "rmr"])
def test_symlink_at_the_top_is_refused_or_unlinked(launcher, storm, verb):
    link = storm.workdir() / "link"
    os.symlink(storm.victim, link)
    os.lchown(link, uid_of(SUPERVISOR), gid_of_group())
    victim = storm.victim_state()
    result = launcher.run(USER, verb, link)
    if verb == "rmr":  # removes the link itself, as Storm does
        assert result.returncode == 0, result.stderr
        assert not os.path.lexists(link)
    else:
        assert result.returncode == 5, result.stderr
        assert "is a symlink" in result.stderr
    assert storm.victim_state() == victim


@pytest.mark.parametrize("verb", ["code-dir", "artifacts-dir", "rmr"])
def test_planted_symlink_component_is_refused(launcher, storm, verb):
    workers = storm.workdir().parent
    os.symlink(storm.base, workers / "planted")
    os.lchown(workers / "planted", uid_of(SUPERVISOR), gid_of_group())
    victim = storm.victim_state()
    result = launcher.run(USER, verb, workers / "planted" / "victim")
    assert result.returncode == 5, result.stderr
    assert "is a symlink" in result.stderr
    assert storm.victim_state() == victim


def test_root_owned_symlink_is_followed_and_confined(launcher, storm):
    top = _code_tree(storm)
    alias = storm.base / "alias"  # root-owned link in a root-owned 0755 directory
    os.symlink(storm.local, alias)
    before = snapshot(top)
    result = launcher.run(USER, "code-dir", alias / "supervisor" / "stormdist" / "topo-1")
    assert result.returncode == 0, result.stderr
    assert_rule(before, False)
    os.symlink(storm.victim, storm.base / "to-victim")
    victim = storm.victim_state()
    result = launcher.run(USER, "code-dir", storm.base / "to-victim")
    assert result.returncode == 5 and "is not below a storm directory" in result.stderr
    assert storm.victim_state() == victim


@pytest.mark.parametrize("verb", ["code-dir", "artifacts-dir", "blob", "rmr"])
def test_outside_the_storm_directories_is_refused(launcher, storm, verb):
    victim = storm.victim_state()
    for target in (storm.victim, storm.victim / "secret", storm.local / ".." / "victim",
                   storm.local, "victim"):
        result = launcher.run(USER, verb, target)
        assert result.returncode == 5, (target, result.stderr)
        assert result.stderr.startswith("worker-launcher: ") and result.stderr.count("\n") == 1
    assert storm.victim_state() == victim


@pytest.mark.parametrize("target", ["/etc", "/usr/lib", "/proc/1", "/"])
def test_without_policy_system_paths_are_refused(launcher, target):
    before = os.lstat(target)
    result = launcher.run(USER, "code-dir", target)
    assert result.returncode == 5, result.stderr
    after = os.lstat(target)
    assert (after.st_uid, after.st_mode) == (before.st_uid, before.st_mode)


def test_missing_path_exits_21_and_rmr_succeeds(launcher, storm):
    for verb in ("code-dir", "artifacts-dir", "blob"):
        result = launcher.run(USER, verb, storm.local / "nope" / "deeper")
        assert result.returncode == 21, result.stderr
        assert "does not exist" in result.stderr
    assert launcher.run(USER, "rmr", storm.local / "nope").returncode == 0


def test_other_file_systems_are_not_entered(launcher, storm):
    top = _code_tree(storm)
    mnt = top / "mnt"
    mnt.mkdir(mode=0o755)
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=0755", "wltest", str(mnt)],
                            capture_output=True, text=True)
    require(result.returncode == 0, f"cannot mount tmpfs: {result.stderr}")
    try:
        (mnt / "inside").write_text("x")
        assert launcher.run(USER, "artifacts-dir", top).returncode == 0
        assert (mnt.stat().st_uid, stat.S_IMODE(mnt.stat().st_mode)) == (0, 0o755)
        assert (mnt / "inside").stat().st_uid == 0
        result = launcher.run(USER, "rmr", top)
        assert result.returncode == 20 and "another file system" in result.stderr
        assert (mnt / "inside").exists()
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=True)


def test_hard_link_to_a_root_file_is_left_alone(launcher, storm):
    top = _code_tree(storm)
    os.link(storm.victim / "secret", top / "hard")
    victim = storm.victim_state()
    result = launcher.run(USER, "artifacts-dir", top)
    assert result.returncode == 20 and f"{top}/hard (uid 0)" in result.stderr
    assert storm.victim_state() == victim


@pytest.mark.parametrize("verb", ["code-dir", "artifacts-dir", "blob"])
def test_nested_entries_of_others_are_left_alone_and_reported(launcher, storm, verb):
    """Root's and another user's files (and a root directory with the supervisor's files
    inside) nested in a tree keep their owners; everything else is set up; exit 20."""
    top = _code_tree(storm)
    (top / "roots").write_text("root's")
    os.chmod(top / "roots", 0o600)
    (top / "bobs").write_text("bob's")
    os.chown(top / "bobs", uid_of("wlbob"), uid_of("wlbob"))
    os.chmod(top / "bobs", 0o600)
    (top / "rootdir").mkdir(mode=0o700)
    (top / "rootdir" / "inside").write_text("x")
    os.chown(top / "rootdir" / "inside", uid_of(SUPERVISOR), gid_of_group())
    before = {p: p.lstat() for p in (top / "roots", top / "bobs", top / "rootdir",
                                     top / "rootdir" / "inside")}
    result = launcher.run(USER, verb, top)
    assert result.returncode == 20, result.stderr
    assert "left alone" in result.stderr and "(and 2 more)" in result.stderr
    for path, old in before.items():
        now = path.lstat()
        assert (now.st_uid, now.st_gid, now.st_mode) == (old.st_uid, old.st_gid, old.st_mode)
    assert (top / "plain").stat().st_uid == uid_of(USER)


@pytest.mark.parametrize("owner, allowed", [(SUPERVISOR, False), ("wlbob", False), (USER, True)])
def test_hard_links_are_taken_over_only_from_the_user(launcher, storm, owner, allowed):
    top = _code_tree(storm)
    other = storm.local / "elsewhere"
    other.write_text("x")
    os.chown(other, uid_of(owner), uid_of(owner))
    os.chmod(other, 0o600)
    os.link(other, top / "hard")
    result = launcher.run(USER, "code-dir", top)
    assert result.returncode == (0 if allowed else 20), result.stderr
    st = other.stat()
    now = (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode))
    if allowed:
        assert now == (uid_of(USER), gid_of_group(), 0o460)
    else:
        assert now == (uid_of(owner), uid_of(owner), 0o600)


def test_fifo_is_refused_like_storm(launcher, storm):
    top = _code_tree(storm)
    os.mkfifo(top / "fifo")
    result = launcher.run(USER, "code-dir", top)
    assert result.returncode == 20 and "fifo" in result.stderr


# --- rmr -------------------------------------------------------------------------------
def test_rmr_removes_the_tree_but_not_symlink_targets(launcher, storm):
    top = storm.workdir()
    make_tree(top, owner=USER)
    os.chmod(top / "private", 0o500)  # the user's own read-only directory: made writable first
    os.symlink(storm.victim, top / "to-victim")
    os.symlink(storm.victim / "secret", top / "sub" / "to-secret")
    victim = storm.victim_state()
    result = launcher.run(USER, "rmr", top)
    assert result.returncode == 0, result.stderr
    assert not os.path.lexists(top)
    assert storm.victim_state() == victim


def test_rmr_uses_the_users_rights(launcher, storm):
    top = storm.workdir()
    make_tree(top, owner=USER)
    (top / "rootdir").mkdir(mode=0o755)  # root's: the user cannot empty it
    (top / "rootdir" / "keep").write_text("root's")
    result = launcher.run(USER, "rmr", top)
    assert result.returncode == 20, result.stderr
    assert "rootdir/keep" in result.stderr and "Permission denied" in result.stderr
    assert (top / "rootdir" / "keep").read_text() == "root's"
    assert not (top / "sub").exists()  # the rest went


def test_rmr_of_another_users_tree_removes_nothing_of_theirs(launcher, storm):
    top = storm.workdir("bobs")
    make_tree(top, owner="wlbob")
    os.chmod(top, 0o755)
    result = launcher.run(USER, "rmr", top)
    assert result.returncode == 20
    assert (top / "plain").read_text() == "plain"


def test_rmr_top_directory_goes_with_the_supervisor_rights(launcher, storm):
    top = storm.workdir()
    os.chown(top, uid_of(USER), gid_of_group())
    os.chmod(top, 0o700)
    (top / "f").write_text("x")
    os.chown(top / "f", uid_of(USER), gid_of_group())
    assert launcher.run(USER, "rmr", top).returncode == 0
    assert not top.exists()


def test_rmr_of_a_file(launcher, storm):
    path = storm.workdir() / "file"
    path.write_text("x")
    assert launcher.run(USER, "rmr", path).returncode == 0
    assert not path.exists()


def test_deep_tree_beyond_path_max_and_recursion_limits(launcher, storm):
    top = storm.workdir()
    depth = 1500  # > Python's recursion limit; paths below exceed PATH_MAX
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    for _ in range(depth):  # as Storm's supervisor would leave it: the supervisor's
        os.mkdir("d", 0o755, dir_fd=fd)
        child = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.fchown(child, uid_of(SUPERVISOR), gid_of_group())
        os.close(fd)
        fd = child
    leaf = os.open("leaf", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
    os.fchown(leaf, uid_of(SUPERVISOR), gid_of_group())
    os.close(leaf)
    try:
        assert launcher.run(USER, "artifacts-dir", top).returncode == 0
        st = os.stat("leaf", dir_fd=fd)
        assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (uid_of(USER), 0o660)
        assert os.fstat(fd).st_mode & stat.S_ISGID
    finally:
        os.close(fd)
    result = launcher.run(USER, "rmr", top)
    assert result.returncode == 0, result.stderr
    assert not os.path.lexists(top)


def test_rmr_below_a_parent_the_user_cannot_search(launcher, storm):
    """Storm's supervisor under a umask of 027 leaves workers/ 0750: the user cannot reach
    its workdir by name, yet `rmr <workdir>` must remove it (found by the Storm replay)."""
    top = storm.workdir()
    make_tree(top, owner=USER)
    os.chmod(top.parent, 0o750)
    result = launcher.run(USER, "rmr", top)
    assert result.returncode == 0, result.stderr
    assert not os.path.lexists(top)
