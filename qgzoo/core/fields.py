"""The coarsened fields a reference holds, their units, and their statistics.

Every field is real, per layer, shaped ``(nz, ny, nx)`` for one sample. The
per-layer root-mean-square of each over the training data (``FieldStats``)
scales networks and normalises losses.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp

#: The fields every reference holds, by name.
FIELDS = ("q", "u", "v", "q_forcing_total", "q_subgrid_forcing")
#: Fields a reference holds when its spec asks for them (``ReferenceSpec.extra_fields``):
#: the subgrid fluxes of q, ``coarsen(u q) - ubar qbar`` (so q_subgrid_forcing =
#: -div of them), and the subgrid forcings of the eddy momentum,
#: ``coarsen(-div(vel u)) - (-div(velbar ubar))`` for u (vel = (u, v)), likewise for v.
EXTRA_FIELDS = ("uq_subgrid_flux", "vq_subgrid_flux", "u_subgrid_forcing", "v_subgrid_forcing")
UNITS = {"q": "s^-1", "u": "m s^-1", "v": "m s^-1", "q_forcing_total": "s^-2",
         "q_subgrid_forcing": "s^-2", "uq_subgrid_flux": "m s^-2", "vq_subgrid_flux": "m s^-2",
         "u_subgrid_forcing": "m s^-2", "v_subgrid_forcing": "m s^-2"}
LONG_NAMES = {"q": "potential vorticity", "u": "zonal velocity (eddy part)",
              "v": "meridional velocity", "q_forcing_total": "total subgrid forcing of q",
              "q_subgrid_forcing": "advective subgrid forcing of q",
              "uq_subgrid_flux": "zonal subgrid flux of q",
              "vq_subgrid_flux": "meridional subgrid flux of q",
              "u_subgrid_forcing": "subgrid forcing of the zonal eddy velocity",
              "v_subgrid_forcing": "subgrid forcing of the meridional eddy velocity"}

#: What a network may predict (``TrainingSpec.forcing_target``): the fields it is made
#: of. A q forcing is used as it is; the subgrid flux (Fx, Fy) becomes S = -div F, which
#: keeps the domain mean of q; the momentum forcing (Su, Sv) becomes its curl.
TARGETS = {"q_forcing_total": ("q_forcing_total",),
           "q_subgrid_forcing": ("q_subgrid_forcing",),
           "q_subgrid_flux": ("uq_subgrid_flux", "vq_subgrid_flux"),
           "momentum_subgrid_forcing": ("u_subgrid_forcing", "v_subgrid_forcing")}


def q_forcing_field(target: str) -> str:
    """The stored q forcing that a network predicting ``target`` is trained and scored
    against: the target itself, or q_subgrid_forcing for the flux and momentum forms."""
    return target if TARGETS[target] == (target,) else "q_subgrid_forcing"


class FieldStats(eqx.Module):
    """Per-layer root-mean-square of the training data, in the fields' units (float64)."""

    std: dict[str, jax.Array]

    @classmethod
    def placeholder(cls, nz: int = 2) -> "FieldStats":
        """Stats of the right shapes (ones), for building a module before loading weights."""
        return cls({name: jnp.ones(nz, jnp.float64) for name in FIELDS + EXTRA_FIELDS})

    def of(self, target: str) -> jax.Array:
        """The rms of the parts of ``target`` (``TARGETS``), part after part: (parts * nz,)."""
        missing = [name for name in TARGETS[target] if name not in self.std]
        if missing:
            raise ValueError(f"target {target!r} needs the fields {missing}, which the "
                             f"reference does not hold: add them to reference.extra_fields")
        return jnp.concatenate([self.std[name] for name in TARGETS[target]])
