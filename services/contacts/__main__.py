"""`python -m contacts`: serve the contacts service until SIGTERM or SIGINT."""

from __future__ import annotations

import sys

import uvloop

from contacts.bootstrap import build
from contacts.settings import ContactsSettings
from promesa.logging import configure_logging
from promesa.settings import ConfigError


async def main() -> None:
    try:
        settings = ContactsSettings.from_env()
    except ConfigError as exc:
        print(f"contacts: configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    configure_logging(settings.common.log_level, "contacts")
    runtime = await build(settings)
    await runtime.serve_until_signalled()


if __name__ == "__main__":
    uvloop.run(main())
