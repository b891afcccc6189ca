"""Regenerate the committed protobuf/gRPC modules under vaultd/v1 from proto/vaultd/v1 (`make proto`).

The modules are committed so installing vaultd needs no code generation; tests/test_proto_generated.py
regenerates into a temporary directory and compares, so a proto edit without `make proto` fails the suite.
Generation runs with `-Iproto`, which makes the modules import each other as `vaultd.v1.<name>_pb2`.
"""

from __future__ import annotations

import argparse
import sys
from importlib import resources
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "proto"
PACKAGE = "vaultd/v1"


def proto_files() -> list[Path]:
    """The public API protos, relative to PROTO_ROOT, in a stable order."""
    return sorted(p.relative_to(PROTO_ROOT) for p in (PROTO_ROOT / PACKAGE).glob("*.proto"))


def generate(out_dir: Path) -> list[Path]:
    """Write the *_pb2.py, *_pb2.pyi and *_pb2_grpc.py modules for every proto under out_dir."""
    from grpc_tools import protoc

    well_known = resources.files("grpc_tools") / "_proto"
    out_dir.mkdir(parents=True, exist_ok=True)
    files = [str(p) for p in proto_files()]
    args = ["grpc_tools.protoc", f"-I{PROTO_ROOT}", f"-I{well_known}", f"--python_out={out_dir}",
            f"--pyi_out={out_dir}", f"--grpc_python_out={out_dir}", *files]
    if protoc.main(args) != 0:
        raise RuntimeError("protoc failed: " + " ".join(args))
    init = out_dir / PACKAGE / "__init__.py"
    init.write_text('"""Generated protobuf/gRPC modules for the vaultd.v1 API (`make proto`; do not edit)."""\n')
    return sorted(p for p in (out_dir / PACKAGE).iterdir() if p.is_file())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=ROOT, help="root to write vaultd/v1/ under")
    args = parser.parse_args(argv)
    for path in generate(args.out):
        print(path.relative_to(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
