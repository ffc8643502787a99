"""The Docker runtime: docker-run (launch-docker-container, run-docker-cmd)."""
