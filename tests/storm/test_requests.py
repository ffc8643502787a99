"""The request generators (support.stormreq) pinned to what Storm's own code writes, so the
replay's requests cannot drift from Storm's bytes. Pure: no privileges, no processes.

Two sources of truth:
- the byte-exact examples E1-E7 of docs/storm-facts.md (verified there with Storm's
  classes, Jackson 2.17.2 and 2.22.3), with their stated assumptions;
- scenario S below, run through Storm's unchanged OciContainerExecutorConfig and
  Docker*Command classes, ServerUtils.writeScript's logic, java.util.HashMap, SnakeYAML
  2.5 and Double.toString on JDK 17, recorded once by running Storm's unchanged classes on this
shape outside the repository (no Storm code, nor a script that builds it, is kept here).
"""

import hashlib

import pytest

from support import stormreq as req

# --- E-example assumptions (storm-facts "Assumptions") -------------------------------------
WID = "7c3c1f2e-2d0c-4a61-9d4b-8c5f7a1e2b3c"
TOPO = "topo-1-1700000000"
W = f"/var/storm/workers/{WID}"
A = f"/opt/storm/logs/workers-artifacts/{TOPO}/6700"
IMAGE = "storm/rhel7:dev_current"
PATH_ENV = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]
LAYERS = [f"/var/storm/supervisor/oci-resources/layers/{c * 64}.sqsh" for c in "12"]
LD = (f"/var/storm/supervisor/stormdist/{TOPO}/resources/Linux-amd64:/var/storm/supervisor/"
      f"stormdist/{TOPO}/resources:/usr/local/lib:/opt/local/lib:/usr/lib:/usr/lib64")


def e_conf(**yaml):
    return req.StormConf(dict({"storm.local.dir": "/var/storm"}, **yaml), "/opt/storm",
                         "/opt/storm/logs")


def e_worker(**kwargs):
    return req.Worker(WID, TOPO, 6700, "alice", cpu=100.0, mem_on_heap=768, image=IMAGE, **kwargs)


def sha(data) -> str:
    return hashlib.sha256(data if isinstance(data, bytes) else data.encode()).hexdigest()


# --- E1, E2: docker command files ------------------------------------------------------------
E1 = (f"run --name={WID} --user=2001:2001 -d --net=host --read-only -v /sys/fs/cgroup:/sys/fs/"
      f"cgroup:ro -v /opt/storm:/opt/storm:ro -v /var/storm/supervisor:/var/storm/supervisor:ro "
      f"-v {W}:{W} -v {A}:{A} -v /var/storm/workers-users/{WID}:/var/storm/workers-users/{WID} "
      f"-v /var/run/nscd:/var/run/nscd -v /var/storm/supervisor/stormdist/{TOPO}/shared_by_"
      f"topology:/var/storm/supervisor/stormdist/{TOPO}/shared_by_topology -v {W}/tmp:/tmp "
      f"--cgroup-parent=/storm --group-add 2001 --workdir={W} --cidfile={W}/container.cid "
      f"--cap-drop=ALL --security-opt no-new-privileges --cpus=1.0 {IMAGE} bash "
      f"{W}/storm-worker-script.sh")


def test_e1_docker_run():
    command = req.docker_run_command(e_conf(), e_worker(), "2001", ["2001"])
    assert command == E1
    assert len(command.encode()) == 1156
    assert sha(command) == "b2fb67eeb2524a28e4d050148df4ae43e84bd9059de6b617aa159f33aec36242"


def test_e1_variant_seccomp_and_memory():
    conf = e_conf(**{"storm.oci.seccomp.profile": "/etc/storm/seccomp.json",
                     "storm.cgroup.memory.enforcement.enable": True})
    command = req.docker_run_command(conf, e_worker(), "2001", ["2001"])
    assert len(command.encode()) == 1217
    assert sha(command).startswith("ef0e3d4f") and sha(command).endswith("5526")
    assert command.endswith(
        "--cap-drop=ALL --security-opt no-new-privileges --security-opt seccomp=/etc/storm/"
        f"seccomp.json --cpus=1.0 --memory=896m {IMAGE} bash {W}/storm-worker-script.sh")


@pytest.mark.parametrize("tag, content, size", [
    ("docker-wait", f"wait {WID}", 41),
    ("docker-ps", f"ps --filter=name={WID} --quiet=true", 66),
    ("docker-stop", f"stop {WID}", 41),
    ("docker-rm", f"rm {WID}", 39),
    ("docker-force-rm", f"rm --force {WID}", 47),
])
def test_e2_docker_command_files(tag, content, size):
    worker = e_worker()
    assert req.docker_command(worker, tag) == content
    assert len(content.encode()) == size
    call = req.docker_cmd_call(e_conf(), worker, tag)
    assert call.argv == ["alice", "run-docker-cmd", W, f"{W}/{tag}.sh"] and call.cwd == W


def test_e2_inspect_never_written_by_storm():
    text = req.docker_inspect_status(WID)
    assert text == "inspect --format='{{.State.Status}}' " + WID and len(text) == 73


@pytest.mark.parametrize("output, alive", [
    ("", False), ("\n", False), ("7f3a2b1c9d0e\n", True), ("junk\n7f3a2b1c9d0e\n", True),
    ("7f3a2b1c9d0e\nworker-launcher: something\n", False), ("0123456789ab\n", False)])
def test_docker_ps_reading(output, alive):
    """DockerManager.areAllProcessesDead: the last line of the merged output is a prefix
    of the cid file's id (so anything the launcher prints after docker's line breaks it)."""
    assert req.docker_alive(output, "7f3a2b1c9d0e" + "5" * 52) is alive


# --- E3: the profile command file -------------------------------------------------------------
def test_e3_profile_command():
    line = req.profile_command("42", "jstack", A)
    assert line == f" 42 jstack {A}" and len(line.encode()) == 67
    assert req.profile_command("42", "start", A) == " 42 start"
    assert req.profile_command("42", "kill", A) == " 42 kill"
    for action in ("jmap", "dump", "stop"):
        assert req.profile_command("42", action, A) == f" 42 {action} {A}"
    assert req.profile_file(e_conf(), e_worker()) == f"{A}/profile.sh"


# --- E4: writeScript ---------------------------------------------------------------------------
def test_e4_worker_script():
    conf, worker = e_conf(), e_worker()
    data = req.write_script(["/usr/bin/java", "-server", "-Dx=it's"],
                            worker.environment(conf), "0027")
    assert data == (f"#!/bin/bash\n'export' 'LD_LIBRARY_PATH={LD}';\n\numask 0027\n"
                    f"exec '/usr/bin/java' '-server' '-Dx=it'\"'\"'s';").encode()
    assert len(data) == 280
    plain = req.write_script(["x"], None)  # worker/profiler: no umask line, env may be null
    assert plain == b"#!/bin/bash\n\nexec 'x';"
    assert req.shell_cmd(["a", None, "b c"]) == "'a' 'b c'"


# --- E5: oci-config.json -----------------------------------------------------------------------
def e5(conf=None, worker=None, **kwargs):
    kwargs.setdefault("image_env", PATH_ENV)
    return req.oci_config_json(conf or e_conf(), worker or e_worker(), LAYERS, **kwargs)


def test_e5_oci_config():
    data = e5()
    assert len(data) == 3006
    assert sha(data) == "f3083f19248bbe55b428a3a12177d9e669d22a69881f6f51ec2322aa400348e5"
    assert data.startswith(b'{"version":"0.1","username":"alice","containerId":"6700-'
                           + WID.encode())
    assert data.endswith(b'"linux":{"cgroupsPath":"/storm/6700-' + WID.encode()
                         + b'","resources":{"cpu":{"quota":100000,"period":100000}}}}}')


def test_e5_variants():
    memory = e5(conf=e_conf(**{"storm.cgroup.memory.enforcement.enable": True}))
    assert len(memory) == 3035
    assert (b'"resources":{"memory":{"limit":939524096},'
            b'"cpu":{"quota":100000,"period":100000}}') in memory
    numa = e5(worker=e_worker(numa_cores=[0, 1, 2, 3], numa_id="0"))
    assert b'"cpu":{"quota":100000,"period":100000,"cpus":"0,1,2,3","mems":"0"}' in numa
    assert b'"resources":{}' in e5(worker=req.Worker(WID, TOPO, 6700, "alice", cpu=None))
    assert req.jackson((("env", []), ("resources", ()))) == '{"env":[],"resources":{}}'
    keep0 = e5(conf=e_conf(**{"storm.oci.layer.mounts.to.keep": 0}))
    assert b"reapLayerKeepCount" not in keep0
    assert len(keep0) == 3006 - len('"reapLayerKeepCount":100,')
    seccomp = e5(seccomp='{\n  "defaultAction": "SCMP_ACT_ERRNO"\n}\n')
    assert seccomp.endswith(b'"resources":{"cpu":{"quota":100000,"period":100000}},"seccomp":{\n'
                            b'  "defaultAction": "SCMP_ACT_ERRNO"\n}\n}}}')


def test_e5_mount_order():
    mounts = req.oci_mounts(e_conf(), e_worker())
    assert [(dst, writable) for dst, _, writable in mounts] == [
        ("/etc/resolv.conf", False), ("/etc/hostname", False), ("/etc/hosts", False),
        ("/var/run/nscd", False), ("/opt/storm", False), ("/sys/fs/cgroup", False),
        ("/var/storm/supervisor", False), (W, True), (A, True),
        (f"/var/storm/workers-users/{WID}", True),
        (f"/var/storm/supervisor/stormdist/{TOPO}/shared_by_topology", True), ("/tmp", True)]
    assert mounts[-1][1] == f"{W}/tmp"
    conf = e_conf(**{"storm.oci.readonly.bindmounts": ["/ro"],
                     "storm.oci.readwrite.bindmounts": ["/rw"]})
    assert req.oci_mounts(conf, e_worker())[:3] == [
        ("/ro", "/ro", False), ("/rw", "/rw", True),
        ("/etc/resolv.conf", "/etc/resolv.conf", False)]


# --- E7: one worker's launcher calls, in order ----------------------------------------------
SETUP_ARTIFACTS = ["alice", "artifacts-dir", A]
RMRS = [["alice", "rmr", f"{W}/heartbeats"], ["alice", "rmr", f"{W}/pids"],
        ["alice", "rmr", f"{W}/tmp"], ["alice", "rmr", W],
        ["storm", "rmr", f"/var/storm/workers-users/{WID}"]]


def test_e7_oci_lifetime():
    ops = req.oci_lifetime(e_conf(), e_worker(), "storm", 31337)
    assert [op.argv for op in ops] == [
        SETUP_ARTIFACTS,
        ["alice", "run-oci-container", W, f"{W}/oci-config.json", f"{W}/artifacts"],
        ["alice", "profile-oci-container", "31337", f"{A}/profile.sh"],
        ["alice", "signal", "31337", "15"],
        ["alice", "signal", "31337", "9"],
        ["alice", "reap-oci-container", f"6700-{WID}", "100"],
    ] + RMRS
    assert [op.cwd for op in ops] == [None, W, A] + [None] * 8  # None: the supervisor's cwd
    assert ops[1].env == [("LD_LIBRARY_PATH", LD)] and ops[2].env == []
    assert req.oci_pid_file(e_conf(), WID) == f"{W}/artifacts/container-{WID}.pid"


def test_e7_docker_lifetime():
    ops = req.docker_lifetime(e_conf(), e_worker(), "storm", force_kill=True)

    def cmd(tag):
        return ["alice", "run-docker-cmd", W, f"{W}/{tag}.sh"]

    assert [op.argv for op in ops] == [
        SETUP_ARTIFACTS,
        ["alice", "launch-docker-container", W, f"{W}/docker-run.sh"],
        cmd("docker-wait"),
        ["alice", "profile-docker-container", WID, f"{A}/profile.sh"],
        cmd("docker-ps"), cmd("docker-stop"), cmd("docker-rm"), cmd("docker-ps"),
        cmd("docker-force-rm"), cmd("docker-ps"), cmd("docker-ps"),
    ] + RMRS
    assert [op.cwd for op in ops] == [None, W, W, A] + [W] * 7 + [None] * 5
    assert all(not op.env for op in ops)


# --- Container.setup and the localizer --------------------------------------------------------
def test_container_setup_order():
    ops = req.container_setup(e_conf(), e_worker())
    assert [(op.kind, op.path or " ".join(op.argv)) for op in ops] == [
        ("mkdirs", f"{W}/pids"), ("mkdirs", f"{W}/tmp"), ("mkdirs", f"{W}/heartbeats"),
        ("mkdirs", A), ("launcher", f"alice artifacts-dir {A}"),
        ("write", f"{A}/worker.yaml"), ("mkdirs", "/var/storm/workers-users"),
        ("write", f"/var/storm/workers-users/{WID}"),
        ("symlink", f"{W}/artifacts"), ("symlink", f"{W}/resources")]
    assert ops[7].data == "alice"  # no newline
    assert ops[8].data == A and ops[9].data == f"/var/storm/supervisor/stormdist/{TOPO}/resources"
    again = req.container_setup(e_conf(), e_worker(), artifacts_exist=True)
    assert not any(op.kind == "launcher" for op in again)
    no_links = req.container_setup(e_conf(**{"storm.disable.symlinks": True}), e_worker())
    assert not any(op.kind == "symlink" for op in no_links)


def test_localize_topology_order():
    blobs = {"stormjar.jar": b"j", "stormcode.ser": b"c", "stormconf.ser": b"f"}
    ops = req.localize_topology(e_conf(), e_worker(), blobs)
    root = f"/var/storm/supervisor/stormdist/{TOPO}"
    calls = [" ".join(op.argv[1:]) for op in ops if op.kind == "launcher"]
    assert calls == [f"code-dir {root}"] + [f"code-dir {root}",
                                            f"artifacts-dir {root}/shared_by_topology"] * 3
    assert [op.path for op in ops if op.kind == "write"][-1] == f"{root}/stormconf.ser.version"


def test_paths():
    conf = req.StormConf({"storm.local.dir": "local", "storm.workers.artifacts.dir": "/art",
                          "storm.oci.cgroup.parent": "storm",
                          "storm.oci.resources.local.dir": "/res/"}, "/home/storm")
    assert conf.local_dir() == "/home/storm/local"
    assert conf.log_dir() == "/home/storm/logs"
    assert conf.artifacts_dir("t", 1) == "/art/t/1"
    assert conf.cgroup_parent() == "/storm"
    assert conf.memory_cgroup_root() == "/sys/fs/cgroup/memory//storm"
    assert conf.layer_path("ab") == "/res/layers/ab.sqsh"
    assert conf.stormdist_root("a b+c") == "/home/storm/local/supervisor/stormdist/a+b%2Bc"
    default = req.StormConf({}, "/s")
    assert default.local_dir() == "/s/storm-local"
    assert default.artifacts_root() == "/s/logs/workers-artifacts"
    assert default.oci_resources_dir() == "/s/storm-local/supervisor/oci-resources"


# --- Java semantics, pinned to JDK 17 output ---------------------------------------------------
def test_java_string_hash():
    assert req.java_string_hash("hello") == 99162322
    assert req.java_string_hash("Hello World") == -862545276
    assert req.java_string_hash("Aa") == req.java_string_hash("BB") == 2112


HASHMAP_CASES = [  # keys put in this order -> HashMap.keySet() order (JDK 17)
    (["WL_NOTE", "JAVA_OPTS", "LD_LIBRARY_PATH"], "WL_NOTE,LD_LIBRARY_PATH,JAVA_OPTS"),
    (list("ABCDEFGHIJKLM"), "A,B,C,D,E,F,G,H,I,J,K,L,M"),
    (["HOME", "PATH", "LANG", "TZ", "USER", "SHELL", "TERM", "PWD", "LOGNAME", "MAIL", "EDITOR",
      "PAGER", "JAVA_HOME", "STORM_CONF_DIR", "Aa", "BB", "x1", "x2", "x3", "x4", "x5", "x6",
      "x7", "x8", "x9", "y0"],
     "PATH,Aa,BB,x8,x9,TZ,JAVA_HOME,TERM,LANG,MAIL,y0,STORM_CONF_DIR,LOGNAME,PWD,SHELL,PAGER,"
     "USER,EDITOR,x1,x2,x3,x4,x5,HOME,x6,x7"),
]
TOP_ENV_ORDERS = [  # new HashMap(); putAll(LinkedHashMap of the keys); put(LD_LIBRARY_PATH)
    "WL_NOTE,JAVA_OPTS,LD_LIBRARY_PATH",
    "A,B,C,D,E,F,G,H,I,J,K,L,M,LD_LIBRARY_PATH",
    "PATH,Aa,BB,x8,x9,TZ,JAVA_HOME,TERM,LANG,MAIL,LD_LIBRARY_PATH,y0,STORM_CONF_DIR,LOGNAME,PWD,"
    "SHELL,PAGER,USER,EDITOR,x1,x2,x3,x4,x5,HOME,x6,x7",
]


@pytest.mark.parametrize("case", range(3))
def test_java_hashmap_order(case):
    keys, incremental = HASHMAP_CASES[case]
    assert ",".join(req.JavaHashMap([(k, "v") for k in keys]).keys()) == incremental
    top = req.JavaHashMap()
    top.put_all([(k, "v") for k in keys])
    top.put("LD_LIBRARY_PATH", "x")
    assert ",".join(top.keys()) == TOP_ENV_ORDERS[case]


def test_java_double():
    values = [1.0, 1.5, 2.6, 0.5, 0.01, 0.001, 0.0001, 1e7, 12345678.9, 9999999.0, 0.3, 1.1,
              33.33, 0.07]
    printed = [req.java_double(v) for v in values]
    assert printed == ["1.0", "1.5", "2.6", "0.5", "0.01", "0.001", "1.0E-4", "1.0E7",
                       "1.23456789E7", "9999999.0", "0.3", "1.1", "33.33", "0.07"]
    cpus = "".join(req.java_double(cpu / 100.0) + " " for cpu in range(1, 2001, 7))
    # sha256 of Storm's doubles on JDK 17: the list above, then cpu / 100.0 for every 7th cpu
    assert sha("\n".join(printed) + "\n" + cpus) == \
        "f011acc8e1a9e961fe5d9a0c5162ae659511351eb4c3ec5e266046c14066f8b6"


def test_jackson_string():
    assert (req.jackson_string('a"b\\c/d\té\u0001\u001f\n')
            == '"a\\"b\\\\c/d\\té\\u0001\\u001F\\n"')


# --- scenario S: what Storm's own classes wrote for the replay's shape (JDK 17) -----------------
S_WID = "0f6a4c1e-9b2d-4e8f-a1c3-5d7e9f0b2c4a"
S_SECCOMP = ('{\n\t"defaultAction": "SCMP_ACT_ERRNO",\n  "syscalls": [ {"names": ["read"], '
             '"action": "SCMP_ACT_ALLOW"} ]\n}\n')


def s_conf():
    return req.StormConf({"storm.local.dir": "/srv/storm/local",
                          "storm.oci.cgroup.parent": "wltest-storm",
                          "storm.oci.nscd.dir": "/srv/storm/nscd",
                          "storm.oci.seccomp.profile": "/srv/storm/etc/seccomp.json",
                          "storm.oci.readonly.bindmounts": ["/srv/ro"],
                          "storm.oci.readwrite.bindmounts": ["/srv/rw"],
                          "storm.cgroup.memory.enforcement.enable": True,
                          "storm.oci.layer.mounts.to.keep": 0}, "/srv/storm/home")


def s_worker():
    env = [("WL_NOTE", "it's \"quoted\"\t/\u00e9\u0001 $HOME `x` \\n"), ("JAVA_OPTS", "-Xmx1g"),
           ("LD_LIBRARY_PATH", "/opt/native")]
    return req.Worker(S_WID, "wordcount-7-1700000123", 6711, "wlalice", cpu=149.2,
                      mem_on_heap=768, topology_env=env, image="wl-tests/storm-replay:1",
                      numa_cores=[0, 1], numa_id="0")


def test_s_worker_script():
    conf, worker = s_conf(), s_worker()
    command = ["/bin/sh", "-c", "trap 'echo TERM' TERM\necho \"it's\"\n", "storm-worker",
               conf.artifacts_dir(worker.topology_id, worker.port)]
    data = req.write_script(command, worker.environment(conf), "0027")
    assert sha(data) == "73547d369dd02f08c8c8c6638254829a5d599abf42df22421d27a7d8d8b82ba7"


def test_s_oci_config():
    conf = s_conf()
    layers = [conf.layer_path("a" * 64), conf.layer_path("b" * 64)]
    data = req.oci_config_json(conf, s_worker(), layers, image_env=["PATH=/bin", "LANG=C"],
                               image_entrypoint=["/init", "--"], seccomp=S_SECCOMP)
    assert len(data) == 3554
    assert sha(data) == "ce7212722da883e18c9a0d5a80264206a3a380cddb9a29449be75b03b419281b"


def test_s_docker_run():
    command = req.docker_run_command(s_conf(), s_worker(), "2001", ["2001", "2100"])
    assert len(command) == 1436
    assert sha(command) == "5bb9ecfcc6e50138ed0b783189046269301ecea3b7f2613cea7b79c576c0e653"


def test_s_yaml_files():
    worker = req.Worker(S_WID, "t", 1, "wlalice")
    assert req.worker_yaml(worker) == (f"worker-id: {S_WID}\nlogs.users: []\nlogs.groups: []\n"
                                       "topology.submitter.user: wlalice\n")
    config = "/srv/storm/hdfs/config/" + "c" * 64
    assert req.runc_yaml("wl-tests/storm-replay:1", "c" * 64, config) == (
        f"imageName: wl-tests/storm-replay:1\nmanifest: {'c' * 64}\nconfigPath: {config}\n")
