"""The HTTP service: events in, metrics and gate decisions out."""
