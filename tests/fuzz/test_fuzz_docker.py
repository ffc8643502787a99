"""Docker command files and profiler argument files under hypothesis: every input is a
request or a LauncherError with a defined code and one line; an accepted `run` never gives
the container more than the user's rights."""

from hypothesis import given, strategies as st

from support.fuzz import FUZZ
from worker_launcher.core.tokens import split_line
from worker_launcher.docker import command_line as cl
from worker_launcher.core.errors import ExitCode, LauncherError
from worker_launcher.classic import profiler as nsenter

WID = "8198e1f0-f323-4b9d-8625-e4fd640cd058"
WORKDIR = f"/storm/local/workers/{WID}"
RULES = cl.Rules(2001, 2001, (2001, 2100), (WORKDIR,), "/storm")
SEED = (f"run --name={WID} --user=2001:2001 -d --net=host --read-only "
        f"-v {WORKDIR}:{WORKDIR} -v {WORKDIR}/tmp:/tmp -v /etc/storm:/etc/storm:ro "
        f"--cgroup-parent=/storm --group-add 2001 --group-add 2100 --workdir={WORKDIR} "
        f"--cidfile={WORKDIR}/container.cid --cap-drop=ALL --security-opt no-new-privileges "
        f"--security-opt seccomp=/usr/share/storm/seccomp.json --cpus=2.6 --memory=1024m "
        f"storm/rhel7:latest bash {WORKDIR}/storm-worker-script.sh").split(" ")
HOSTILE = ["--privileged", "--cap-add=ALL", "--cap-add", "SYS_ADMIN", "--device=/dev/sda",
           "--pid=host", "--ipc=host", "--userns=host", "--uts=host", "--net=container:x",
           "--user=0:0", "--user=root", "--user=2001:0", "--group-add", "0", "1900", "-v",
           "/:/host", "/proc:/p", "/var/run/docker.sock:/s", f"{WORKDIR}/../..:/x", "-e",
           "LD_PRELOAD=/x", "--entrypoint=/bin/sh", "--mount=type=bind,src=/,dst=/h",
           "--security-opt", "seccomp=unconfined", "apparmor=unconfined", "--volumes-from=x",
           "--cgroup-parent=/", "--config=/tmp", "--cidfile=/etc/passwd", "--workdir=/",
           "--name=../x", "-it", "--rm", "bash", "sh", "-c", "id", "$(id)", "--", "-",
           "--cap-drop=NONE", "--detach=yes", "--memory=", "--cpus=1e9", "ps", "rm", "--force",
           "stop", "--time=99999999", "inspect", "--format={{json .}}", "wait", "pull"]
DANGEROUS_PREFIXES = ("--privileged", "--cap-add", "--device", "--pid", "--ipc", "--userns",
                      "--uts", "--mount", "--volumes-from", "--entrypoint", "-e", "--env",
                      "--security-opt=", "--net=container")


def _mutated(draw_ops):
    tokens = list(SEED)
    for op, index, token in draw_ops:
        index %= len(tokens) + 1
        if op == "insert":
            tokens.insert(index, token)
        elif op == "replace" and index < len(tokens):
            tokens[index] = token
        elif op == "delete" and index < len(tokens):
            del tokens[index]
    return tokens


TOKENS = st.sampled_from(HOSTILE + SEED) | st.text(alphabet="-=:/.,{}'abc01 ", min_size=1,
                                                    max_size=12)
OPS = st.lists(st.tuples(st.sampled_from(["insert", "replace", "delete"]),
                         st.integers(0, 60), TOKENS), max_size=4)


def _one_line(err: LauncherError, codes) -> None:
    assert err.code in codes, err.message
    assert err.message and "\n" not in err.message


@FUZZ
@given(OPS.map(_mutated) | st.lists(TOKENS, max_size=10))
def test_validate_never_grants_more_than_the_user(tokens):
    tokens = [token for token in tokens if token and " " not in token] or ["run"]
    try:
        request = cl.validate(tokens, RULES, "cmd")
    except LauncherError as err:
        _one_line(err, {ExitCode.DOCKER_COMMAND_REJECTED, ExitCode.INVALID_DOCKER_IMAGE})
        return
    if request.subcommand != "run":
        return
    options = request.tokens[:request.tokens.index(request.image)]
    assert "--user=2001:2001" in options and "--cap-drop=ALL" in options
    assert "no-new-privileges" in options
    assert not any(token.startswith(DANGEROUS_PREFIXES) for token in options), options
    for index, token in enumerate(options):
        if token == "--group-add":
            assert int(options[index + 1]) in RULES.groups
    for source, destination, _ in request.binds:
        assert cl.normalize(source) == source and cl.normalize(destination) == destination
    assert request.tokens[-2:] == ["bash", request.tokens[-1]]
    assert request.tokens[-1].startswith(WORKDIR + "/")


@FUZZ
@given(st.binary(max_size=300) | st.sampled_from([b"", b"\n", b"run\n", b"a  b", b" a", b"a\n\n",
                                                   b"a\rb", b"\xff", b"a\x00b"]))
def test_split_line_tokens_or_one_line(data):
    try:
        tokens = split_line(data, "cmd")
    except LauncherError as err:
        _one_line(err, {ExitCode.DOCKER_COMMAND_REJECTED, ExitCode.CANNOT_READ_FILE})
        return
    assert all(tokens) and all(" " not in t and t.isascii() and t.isprintable() for t in tokens)


@FUZZ
@given(st.text(max_size=400) | st.text(max_size=40).map(lambda rest: "Name:\tx\nUid:" + rest),
       st.text(max_size=60))
def test_nsenter_pure_parsers_never_raise(text, parent):
    """/proc/<pid>/status and cgroup are the kernel's text (a task name has its newlines
    escaped), but a parser of them still must not raise."""
    assert isinstance(nsenter.container_cgroup(text, parent or None), bool)
    uids = nsenter.status_uids(text)
    assert uids == () or (len(uids) == 4 and all(u >= 0 for u in uids))
