"""Analytics: derived tables, metrics, drift and policies over the warehouse, as SQL selects."""
