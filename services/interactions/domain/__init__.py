"""The interactions domain: standard library only, no transport or storage types."""
