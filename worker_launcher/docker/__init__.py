"""The Docker runtime: docker-run (launch-docker-container, run-docker-cmd)."""

from ..core.config import DOCKER_RUNC_ROOTS  # noqa: F401  (the profiler's, re-exported)
