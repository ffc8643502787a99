"""The Docker runtime: docker-run (launch-docker-container, run-docker-cmd)."""

# Where docker's runc keeps its containers: dockerd's own containerd (Debian's docker.io),
# then a system containerd (docker-ce with containerd.io). Namespace "moby". Here, not in
# profile.py, so --check-config names them without importing the profiler's modules.
DOCKER_RUNC_ROOTS = ("/run/docker/runtime-runc/moby", "/run/containerd/runc/moby")
