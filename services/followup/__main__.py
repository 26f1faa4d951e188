"""`python -m followup`: serve the follow-up service until SIGTERM or SIGINT."""

from __future__ import annotations

from followup.bootstrap import build
from followup.settings import FollowupSettings
from promesa.runtime import serve

if __name__ == "__main__":
    serve("followup", FollowupSettings.from_env, build)
