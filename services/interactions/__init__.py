"""The interactions service: the timeline of every touch with a customer, and its events."""
