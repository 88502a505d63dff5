"""The coarsened fields a reference holds, their units, and their statistics.

Every field is real, per layer, shaped ``(nz, ny, nx)`` for one sample. The
per-layer root-mean-square of each over the training data (``FieldStats``)
scales networks and normalises losses.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp

#: The fields of a reference, by name.
FIELDS = ("q", "u", "v", "q_forcing_total", "q_subgrid_forcing")
UNITS = {"q": "s^-1", "u": "m s^-1", "v": "m s^-1", "q_forcing_total": "s^-2",
         "q_subgrid_forcing": "s^-2"}
LONG_NAMES = {"q": "potential vorticity", "u": "zonal velocity (eddy part)",
              "v": "meridional velocity", "q_forcing_total": "total subgrid forcing of q",
              "q_subgrid_forcing": "advective subgrid forcing of q"}


class FieldStats(eqx.Module):
    """Per-layer root-mean-square of the training data, in the fields' units (float64)."""

    std: dict[str, jax.Array]

    @classmethod
    def placeholder(cls, nz: int = 2) -> "FieldStats":
        """Stats of the right shapes (ones), for building a module before loading weights."""
        return cls({name: jnp.ones(nz, jnp.float64) for name in FIELDS})
