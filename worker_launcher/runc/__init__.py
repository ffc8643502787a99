"""The OCI/squashfs runtime: Storm's run-oci-container and reap-oci-container with runc."""
