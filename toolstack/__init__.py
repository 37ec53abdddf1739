"""The toolstack: VMs as records in a git state repository, operations as branch-then-merge transactions,
reconcile against a hypervisor driver, history, the CLI and the HTTP API."""

__version__ = "0.1.0"  # the one place it is written: pyproject.toml reads it from here
