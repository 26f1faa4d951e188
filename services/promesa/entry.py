"""The body of every service's `__main__`: settings from the environment, logging, serve."""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

import uvloop

from promesa.logging import configure_logging
from promesa.runtime import Runtime
from promesa.settings import CommonSettings, ConfigError


class HasCommon(Protocol):
    @property
    def common(self) -> CommonSettings: ...


S = TypeVar("S", bound=HasCommon)


def serve(name: str, load: Callable[[], S], build: Callable[[S], Awaitable[Runtime]]) -> None:
    """Exits 2 with a message naming the variable when the configuration is bad."""

    async def main() -> None:
        try:
            settings = load()
        except ConfigError as exc:
            print(f"{name}: configuration error: {exc}", file=sys.stderr)
            raise SystemExit(2) from None
        configure_logging(settings.common.log_level, name)
        runtime = await build(settings)
        await runtime.serve_until_signalled()

    uvloop.run(main())
