"""The committed vaultd/v1 modules are exactly what `make proto` produces from proto/vaultd/v1."""

from __future__ import annotations

from pathlib import Path

from vaultd import protogen


def test_regenerating_gives_identical_files(tmp_path: Path) -> None:
    generated = protogen.generate(tmp_path)
    names = sorted(p.name for p in generated)
    committed_dir = protogen.ROOT / protogen.PACKAGE
    committed = sorted(p.name for p in committed_dir.iterdir() if p.is_file() and p.suffix in (".py", ".pyi"))
    assert names == committed
    assert {"vault_pb2.py", "vault_pb2_grpc.py", "cluster_pb2.py", "cluster_pb2_grpc.py"} <= set(names)
    for path in generated:
        assert path.read_bytes() == (committed_dir / path.name).read_bytes(), f"{path.name} is stale: run make proto"


def test_generated_modules_import_as_package() -> None:
    from vaultd.v1 import cluster_pb2, vault_pb2

    assert vault_pb2.DESCRIPTOR.package == "vaultd.v1"
    assert cluster_pb2.DESCRIPTOR.services_by_name["ClusterService"].methods_by_name["SetLimits"]
    assert vault_pb2.Consistency.Value("CONSISTENCY_LOCAL") == 2
