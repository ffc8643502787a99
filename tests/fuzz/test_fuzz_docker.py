"""Docker command files and profiler argument files under hypothesis: every input is a
request or a LauncherError with a defined code and one line; an accepted `run` never gives
the container more than the user's rights."""

from hypothesis import given, strategies as st

from support.fuzz import FUZZ
from worker_launcher.core.tokens import split_line
from worker_launcher.docker import command_line as cl
from worker_launcher.docker import seccomp
from worker_launcher.core.errors import ExitCode, LauncherError
from worker_launcher.core.tokens import PROFILE_ARG_CHARS, split_arguments
from worker_launcher.docker import profile

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
    assert request.name == WID  # only ever the worker of the call's directory
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
        assert destination == source or (source, destination) == (f"{WORKDIR}/tmp", "/tmp")
    assert request.tokens[-2:] == ["bash", f"{WORKDIR}/storm-worker-script.sh"]
    assert request.cidfile == f"{WORKDIR}/container.cid" and request.workdir == WORKDIR


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
@given(st.binary(max_size=300) | st.sampled_from([b" 42 jstack /a/b", b" 42 start", b"   ", b" \n",
                                                   b" 1 $(id)", b"a\tb", b"\xff", b"a\x00b"]))
def test_profiler_arguments_or_one_line(data):
    """Storm's profile command file: arguments without blanks, control characters or shell
    metacharacters, or a refusal with exit 31."""
    try:
        arguments = split_arguments(data, "profile.sh")
    except LauncherError as err:
        _one_line(err, {ExitCode.CANNOT_READ_FILE})
        return
    assert arguments and all(set(a) <= PROFILE_ARG_CHARS for a in arguments)


JSONISH = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=70),
                       lambda inner: st.lists(inner, max_size=3)
                       | st.dictionaries(st.sampled_from(["Id", "Name", "State", "Config", "User",
                                                          "Running", "Pid", "Paused", "Status"]),
                                         inner, max_size=5), max_leaves=12)


@FUZZ
@given(JSONISH)
def test_docker_inspect_facts_or_refusal(document):
    """Whatever docker inspect printed: the user's running worker, or exit 9."""
    try:
        container_id, pid = profile.container_facts(document, WID, 2001, 2001, "wlalice")
    except LauncherError as err:
        _one_line(err, {ExitCode.INVALID_CONTAINER_PID})
        return
    assert len(container_id) == 64 and pid > 1


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-2, 2 ** 64) | st.sampled_from(
        sorted(seccomp.ACTIONS) + sorted(seccomp.OPS) + ["read", "SCMP_ARCH_X86_64", "x"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.sampled_from(sorted(seccomp.PROFILE_KEYS) + sorted(seccomp.SYSCALL_KEYS)
                        + sorted(seccomp.ARG_KEYS) + ["DefaultAction", "Action", "x"]),
        inner, max_size=4), max_leaves=12)


@FUZZ
@given(JSON_VALUES)
def test_seccomp_check_never_raises_and_never_passes_an_allowing_default(document):
    from worker_launcher.core.fastjson import dumps

    problem = seccomp.profile_problem(dumps(document))
    assert problem is None or (isinstance(problem, str) and "\n" not in problem)
    if problem is None:
        assert isinstance(document, dict)
        assert document["defaultAction"] not in seccomp.REFUSED_DEFAULTS
        assert all(key in seccomp.PROFILE_KEYS for key in document)
