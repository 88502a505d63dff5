"""qgzoo-filters: more coarsening operators for qgzoo.

- ``operator3``: a periodic Gaussian filter of scale r on the high-resolution
  grid, then r x r block averaging (Ross et al. 2023's Operator3).
- ``sharp_cutoff``: spectral truncation with G = 1 below a fraction of the
  low-resolution Nyquist wavenumber and 0 above.
"""

from qgzoo import hookimpl

from .operator3 import Operator3, Operator3Spec, block_mean, kernel_response
from .sharp_cutoff import SharpCutoff, SharpCutoffSpec

__all__ = ["Operator3", "Operator3Spec", "SharpCutoff", "SharpCutoffSpec", "block_mean",
           "kernel_response", "register_components"]


@hookimpl
def register_components(register):
    register(Operator3Spec)
    register(SharpCutoffSpec)
