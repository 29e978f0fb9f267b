"""A generated delivery organisation and API simulators for tests, benchmarks and the demo."""
