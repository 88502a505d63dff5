"""Physics on pyqg-jax's two-layer model: presets and fields (``qg``), and pyqg's
energy-budget diagnostics (``budget``)."""
