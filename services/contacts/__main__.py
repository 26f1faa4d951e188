"""`python -m contacts`: serve the contacts service until SIGTERM or SIGINT."""

from __future__ import annotations

from contacts.bootstrap import build
from contacts.settings import ContactsSettings
from promesa.runtime import serve

if __name__ == "__main__":
    serve("contacts", ContactsSettings.from_env, build)
