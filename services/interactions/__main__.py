"""`python -m interactions`: serve the interactions service until SIGTERM or SIGINT."""

from __future__ import annotations

from interactions.bootstrap import build
from interactions.settings import InteractionsSettings
from promesa.runtime import serve

if __name__ == "__main__":
    serve("interactions", InteractionsSettings.from_env, build)
