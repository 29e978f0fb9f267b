"""cdmetrics: delivery metrics and branch-policy analytics. This package holds the CLI and settings."""

__version__ = "0.1.0"
