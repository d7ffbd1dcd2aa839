#!/usr/bin/env python3
"""Regenerate the Python gRPC code in src/imagesearch/v1 from protos/.

    python tools/gen_protos.py           # rewrite the checked-in stubs
    python tools/gen_protos.py --check   # exit 1 if the checked-in stubs are stale

The generated package is checked in so that services import `imagesearch.v1`
without a build step; the --check mode (run by the test suite) keeps it honest.
"""

from __future__ import annotations

import argparse
import filecmp
import sys
import tempfile
from pathlib import Path

import grpc_tools
from grpc_tools import protoc

REPO = Path(__file__).resolve().parents[1]
PROTO_ROOT = REPO / "protos"
OUT_ROOT = REPO / "src"
PACKAGE = Path("imagesearch") / "v1"
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")


def generate(out_root: Path) -> list[Path]:
    """Run protoc for every .proto under protos/imagesearch/v1; return the files written."""
    protos = sorted((PROTO_ROOT / PACKAGE).glob("*.proto"))
    well_known = Path(grpc_tools.__file__).parent / "_proto"
    (out_root / PACKAGE).mkdir(parents=True, exist_ok=True)
    args = [
        "protoc",
        f"-I{PROTO_ROOT}",
        f"-I{well_known}",
        f"--python_out={out_root}",
        f"--pyi_out={out_root}",
        f"--grpc_python_out={out_root}",
        *(str(p) for p in protos),
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    return sorted(p for p in (out_root / PACKAGE).iterdir() if p.name.endswith(GENERATED_SUFFIXES))


def stale_files() -> list[str]:
    """Names of generated files that differ from (or are missing in) the checkout."""
    with tempfile.TemporaryDirectory() as tmp:
        fresh = {p.name: p for p in generate(Path(tmp))}
        checked_in = {p.name: p for p in (OUT_ROOT / PACKAGE).iterdir() if p.name.endswith(GENERATED_SUFFIXES)}
        names = set(fresh) | set(checked_in)
        return sorted(
            n
            for n in names
            if n not in fresh or n not in checked_in or not filecmp.cmp(fresh[n], checked_in[n], shallow=False)
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only report whether the checked-in code is stale")
    args = parser.parse_args()
    if args.check:
        stale = stale_files()
        if stale:
            print("stale generated code: " + ", ".join(stale) + "\nrun: python tools/gen_protos.py", file=sys.stderr)
            return 1
        print("generated code is up to date")
        return 0
    for path in generate(OUT_ROOT):
        print(f"wrote {path.relative_to(REPO)}")
    init = OUT_ROOT / PACKAGE / "__init__.py"
    if not init.exists():
        init.write_text('"""Generated gRPC/protobuf code for the imagesearch.v1 API (see protos/)."""\n')
    return 0


if __name__ == "__main__":
    sys.exit(main())
