"""qgzoo-physical: Smagorinsky, backscatter-biharmonic and Zanna-Bolton 2020 closures.

Registered as the network kinds ``smagorinsky``, ``backscatter_biharmonic`` and
``zanna_bolton``. Each spec's constants may be listed in ``trainable`` to
calibrate them online with ``qgzoo.train`` (see ``_closure`` for the log-scale
parameterisation).
"""

import qgzoo

from ._closure import AbstractPhysicalClosure, LogScaled, PhysicalClosureSpec
from .backscatter_biharmonic import BackscatterBiharmonic, BackscatterBiharmonicSpec
from .smagorinsky import Smagorinsky, SmagorinskySpec
from .zanna_bolton import ZannaBolton, ZannaBoltonSpec

SPECS = (SmagorinskySpec, BackscatterBiharmonicSpec, ZannaBoltonSpec)


@qgzoo.hookimpl
def register_components(register):
    for spec_class in SPECS:
        register(spec_class)


__all__ = [
    "AbstractPhysicalClosure", "BackscatterBiharmonic", "BackscatterBiharmonicSpec",
    "LogScaled", "PhysicalClosureSpec", "SPECS", "Smagorinsky", "SmagorinskySpec",
    "ZannaBolton", "ZannaBoltonSpec",
]
