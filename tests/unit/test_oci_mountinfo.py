"""Pure parsing of /proc/self/mountinfo for the OCI runtime: escapes, and the lower
directories a live overlay still uses (which reap-layers must never unmount)."""

from worker_launcher.oci import mountinfo

RUN = "/var/run/worker-launcher"
L1, L2 = f"{RUN}/layers/{'a' * 64}/mnt", f"{RUN}/layers/{'b' * 64}/mnt"
TEXT = (
    f"36 25 7:0 / {L1} ro,nosuid,nodev,relatime shared:1 - squashfs /dev/loop0 ro\n"
    f"37 25 7:1 / {L2} ro,nosuid,nodev,relatime shared:2 - squashfs /dev/loop1 ro\n"
    f"40 25 0:50 / {RUN}/6700-x/rootfs rw,nosuid,nodev - overlay overlay "
    f"rw,lowerdir={L2}:{L1},upperdir={RUN}/6700-x/upper,workdir={RUN}/6700-x/work\n"
    "41 25 0:51 / /mnt/with\\040space rw - tmpfs tmp\\134fs rw\n"
    "garbage line\n"
)


def test_parse_unescapes_and_skips_garbage():
    entries = mountinfo.parse(TEXT)
    assert [e.mount_point for e in entries] == [L1, L2, f"{RUN}/6700-x/rootfs", "/mnt/with space"]
    assert entries[0].fstype == "squashfs" and entries[0].source == "/dev/loop0"
    assert entries[3].source == "tmp\\fs"


def test_layers_in_use_are_the_overlay_lower_dirs():
    entries = mountinfo.parse(TEXT)
    assert mountinfo.layers_in_use(entries) == {L1, L2}
    assert entries[2].lower_dirs() == [L2, L1]  # the top layer first
    assert entries[0].lower_dirs() == []


def test_new_mount_api_lists_lower_dirs_one_by_one():
    line = f"50 25 0:60 / /x rw - overlay overlay rw,lowerdir+={L1},lowerdir+={L2},upperdir=/u\n"
    assert mountinfo.layers_in_use(mountinfo.parse(line)) == {L1, L2}


def test_mounted_at_keeps_the_top_mount():
    text = (f"36 25 7:0 / {L1} ro - squashfs /dev/loop0 ro\n"
            f"38 36 0:9 / {L1} rw - tmpfs tmpfs rw\n")
    assert mountinfo.mounted_at(mountinfo.parse(text))[L1].fstype == "tmpfs"
