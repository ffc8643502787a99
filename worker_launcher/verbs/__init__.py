"""One module per command family. Each handler is function(launch, *args) -> exit code."""
