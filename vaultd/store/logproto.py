"""Regenerate vaultd/store/log_pb2.py(.pyi) from proto/vaultd/store/log.proto: `python -m vaultd.store.logproto`.

The generated module is committed so the log codec needs no build step; tests/store/test_codec.py regenerates
into a temporary directory and compares bytes, so an edit of log.proto without regenerating fails the suite.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
PROTO = Path("vaultd/store/log.proto")


def generate(out_root: Path) -> list[Path]:
    """Write log_pb2.py and log_pb2.pyi under out_root/vaultd/store/ and return their paths."""
    from grpc_tools import protoc

    out_root.mkdir(parents=True, exist_ok=True)
    args = ["grpc_tools.protoc", f"-I{ROOT / 'proto'}", f"--python_out={out_root}", f"--pyi_out={out_root}",
            str(PROTO)]
    if protoc.main(args) != 0:
        raise RuntimeError("protoc failed: " + " ".join(args))
    return [out_root / "vaultd/store/log_pb2.py", out_root / "vaultd/store/log_pb2.pyi"]


if __name__ == "__main__":
    for path in generate(ROOT):
        print(path.relative_to(ROOT))
    sys.exit(0)
