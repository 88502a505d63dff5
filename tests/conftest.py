"""Shared fixtures (``qgzoo.testing.fixtures``): a small spun-up eddy reference,
generated once per session."""

import os

# The suite must not depend on which plugins happen to be installed.
os.environ["QGZOO_PLUGINS"] = ""

from qgzoo.testing.fixtures import data_cache, small_data, small_reference  # noqa: E402, F401

# QGZOO_DEVICES=2 runs the suite with its ensembles and batches split over 2 devices.
from qgzoo.core import devices  # noqa: E402

devices.configure_from_environment()
