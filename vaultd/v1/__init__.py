"""Generated protobuf/gRPC modules for the vaultd.v1 API (`make proto`; do not edit)."""
