"""The top layer: the ``qgzoo`` command (``cli``), the demo, and reproducing the zoo."""
