"""gRPC API (vaultd.v1): servicers, the failure -> status table, health and reflection.

Entry point: `vaultd.api.server.build_server`.
"""
