"""vaultd: a Raft-replicated vault key-value server."""

__version__ = "0.1.0"
