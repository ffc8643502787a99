"""The OCI/squashfs runtime with runc: mount-layers, runc-run (run-oci-container),
reap-layers (reap-oci-container)."""
