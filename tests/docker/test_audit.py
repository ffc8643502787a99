"""The audit line of the docker verbs (Storm's names and ours, docker-run) for a success, a
rejected command, a policy refusal and docker's own failure, with a real syslog socket."""



from support.env import SUPERVISOR, uid_of
from support.syslog import one_logged

USER = "wlalice"
CALLER = {"CALLER": SUPERVISOR, "UID": str(uid_of(SUPERVISOR)), "USER": USER}


def logged(receiver, marker: str, **wanted) -> dict:
    return one_logged(receiver, marker, dict(CALLER, **wanted))


def run(receiver, dstorm, verb, workdir, text):
    path = dstorm.command_file(text)
    return receiver.run(dstorm.launcher, USER, verb, workdir, path), path


def test_docker_success_and_failure(dstorm, receiver):
    wid, workdir = dstorm.worker()
    result, path = run(receiver, dstorm, "run-docker-cmd", workdir,
                       f"ps --filter=name={wid} --quiet=true")
    assert result.returncode == 0, result.stderr
    logged(receiver, str(path), command="run-docker-cmd", verb="docker-run", outcome="ok",
           exit=0)
    # docker's own failure (no such container): its status is the launcher's
    result, path = run(receiver, dstorm, "run-docker-cmd", workdir, f"rm {wid}")
    assert result.returncode == 1, result.stderr
    logged(receiver, str(path), verb="docker-run", outcome="failed", exit=1,
           child="docker rm:1")


def test_rejected_command_and_policy_refusal(dstorm, receiver):
    wid, workdir = dstorm.worker()
    tokens = dstorm.run_tokens(wid, workdir)
    privileged = tokens[:2] + ["--privileged"] + tokens[2:]
    result, path = run(receiver, dstorm, "launch-docker-container", workdir, " ".join(privileged))
    assert result.returncode == 39
    found = logged(receiver, str(path), command="launch-docker-container", verb="docker-run",
                   outcome="refused", exit=39)
    assert "--privileged" in found["ERROR"]

    other_image = [("busybox:evil" if token == dstorm.image else token) for token in tokens]
    result, path = run(receiver, dstorm, "docker-run", workdir, " ".join(other_image))
    assert result.returncode == 40
    found = logged(receiver, str(path), command="docker-run", verb="docker-run",
                   outcome="refused(policy)", exit=40)
    assert "busybox:evil" in found["ERROR"]
    assert not dstorm.exists(wid)
