"""Storm's classic verbs: code-dir, artifacts-dir, blob, rmr, worker, profiler, signal, and
the workdir set-up both container runtimes share."""
