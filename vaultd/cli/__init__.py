"""The `vaultd` command: server side (serve, dev, config show) and a client for every RPC."""
