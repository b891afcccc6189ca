"""vaultd's fault-injection suite: workloads, nemeses, the linearizability checker and the report (issue 11).

Testing tooling, not part of the shipped `vaultd` package: `python -m chaos --help` runs a profile against
real node processes; tests/chaos/ holds its tests.
"""
