"""worker-launcher: the privileged helper Apache Storm's supervisor uses to run workers.

Every call is a new interpreter, so what it imports it pays for, each time: modules import
`posix` as `os` (the C module whose functions `os` re-exports; `os.py` itself costs a call
~1.2 ms: it builds `os.environ` on `_collections_abc` and imports `posixpath`), and
`_signal`, `_socket`, `_json`, `_sha256` rather than the modules that wrap them.
tests/unit/test_startup.py keeps it so."""

__version__ = "0.2.0"
