"""The lowest layer: spec bases, the registry of component kinds and its hooks, field
statistics, and the helpers for files, the cache and the environment."""
