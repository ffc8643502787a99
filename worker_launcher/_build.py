# Build-time settings. `make -C native install` replaces this file in the installed copy
# with the real paths; these defaults only serve unit tests run from the source tree.
CONF_PATH = "/etc/storm/worker-launcher.cfg"
BINARY_PATH = ""
PYTHON_PATH = ""
ENTRY_PATH = ""
