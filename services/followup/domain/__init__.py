"""The follow-up domain: promises, their lifecycle, reminders and statistics (stdlib only)."""
