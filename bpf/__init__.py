"""BPF C sources of the eBPF backend, shipped as package data (see runctrace.backends.bcc)."""
