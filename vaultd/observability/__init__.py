"""Metrics, health endpoints and logging shared by the layers above the (pure) store."""
