"""Collectors: one module per source; network code yields raw payloads, pure functions normalise them."""
