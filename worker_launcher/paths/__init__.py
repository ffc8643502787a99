"""Path safety: every path a caller names is resolved here, by descriptor, and used only
through that descriptor afterwards. Imports only the core."""
