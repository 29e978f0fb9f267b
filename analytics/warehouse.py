"""The warehouse as the layers above analytics open it: the dashboard opens its engine here, so
it imports only `analytics` (and `config`), never `warehouse` (tests/test_layers.py)."""

from warehouse.engine import WarehouseURLError, normalise_url, open_warehouse

__all__ = ["WarehouseURLError", "normalise_url", "open_warehouse"]
