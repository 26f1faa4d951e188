"""`python -m promesa_cli.desk`: the desk with the profile `promesa` would use (flags aside)."""

from __future__ import annotations

import sys

from promesa_cli.config import ConfigError, resolve
from promesa_cli.desk import run


def main() -> int:
    try:
        run(resolve())
    except ConfigError as exc:
        print(f"promesa desk: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
