"""cdmetrics: delivery metrics and branch-policy analytics. This package holds the CLI."""
