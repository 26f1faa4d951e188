"""Generates the Python code for every proto under protos/ into gen/, its one home. The client
SDK ships the same tree: clients/python/src/crm is a symbolic link to gen/crm, so `pip install
./clients/python` packs it (with the py.typed marker written here, which its users' type
checkers need to read the stubs of an installed package).

Run it with ``python -m devtools.protogen`` (or ``make proto``). The output is deterministic,
so a test can regenerate into a temporary directory and compare it with gen/ byte for byte.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
PROTO_ROOT = REPO_ROOT / "protos"
GEN_ROOT = REPO_ROOT / "gen"
# Top-level package of the generated code; main() replaces this directory as a whole.
PACKAGE = "crm"

_PLUGINS = ("protoc-gen-mypy", "protoc-gen-mypy_grpc")


class ProtogenError(Exception):
    """Code generation could not run or protoc rejected the protos."""


def proto_files(proto_root: Path = PROTO_ROOT) -> list[Path]:
    """Every .proto under proto_root, sorted so that the generated output is stable."""
    return sorted(proto_root.rglob("*.proto"))


def _well_known_include() -> Path:
    # grpc_tools ships google/protobuf/*.proto beside its compiler.
    spec = importlib.util.find_spec("grpc_tools")
    if spec is None or spec.origin is None:
        raise ProtogenError("grpcio-tools is not installed; run make setup")
    return Path(spec.origin).parent / "_proto"


def _plugin(name: str) -> Path:
    # Prefer the plugin installed beside this interpreter, so PATH needs no virtualenv.
    beside = Path(sys.executable).parent / name
    if beside.is_file():
        return beside
    found = shutil.which(name)
    if found is None:
        raise ProtogenError(f"{name} not found; install mypy-protobuf (make setup)")
    return Path(found)


def generate(out_dir: Path, proto_root: Path = PROTO_ROOT) -> None:
    """Compile every proto under proto_root into out_dir, with mypy stubs and __init__.py files."""
    files = proto_files(proto_root)
    if not files:
        raise ProtogenError(f"no .proto files under {proto_root}")
    out_dir.mkdir(parents=True, exist_ok=True)
    out = str(out_dir)
    args = [
        sys.executable,
        "-m",
        "grpc_tools.protoc",
        f"-I{proto_root}",
        f"-I{_well_known_include()}",
        *(f"--plugin={name}={_plugin(name)}" for name in _PLUGINS),
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        f"--mypy_out={out}",
        f"--mypy_grpc_out={out}",
        *(str(path) for path in files),
    ]
    result = subprocess.run(args, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise ProtogenError(f"protoc failed ({result.returncode}):\n{result.stderr}")
    _write_package_markers(out_dir)
    (out_dir / PACKAGE / "py.typed").touch()


def _write_package_markers(out_dir: Path) -> None:
    # Every directory that holds generated modules becomes a regular package.
    modules = [*out_dir.rglob("*.py"), *out_dir.rglob("*.pyi")]
    for directory in sorted({path.parent for path in modules}):
        while directory != out_dir and out_dir in directory.parents:
            (directory / "__init__.py").touch()
            directory = directory.parent


def main() -> None:
    """Regenerate gen/crm in place, swapping in the new tree only once it is complete."""
    GEN_ROOT.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(dir=GEN_ROOT, prefix=".protogen-") as scratch:
        staged = Path(scratch)
        generate(staged)
        target = GEN_ROOT / PACKAGE
        if target.exists():
            shutil.rmtree(target)
        (staged / PACKAGE).rename(target)
    print(f"generated {len(proto_files())} protos into {target.relative_to(REPO_ROOT)}")


if __name__ == "__main__":
    main()
