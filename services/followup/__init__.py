"""The follow-up service: every promise made to a customer, tracked until it is kept."""
