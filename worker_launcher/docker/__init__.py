"""The Docker runtime: Storm's docker command files, validated and run (`docker-run`)."""
