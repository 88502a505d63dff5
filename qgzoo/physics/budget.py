"""pyqg's two-layer spectral energy budget, in JAX, for one snapshot.

Every spectrum lives on the model's rfft grid, shape ``(nl, nk)`` (``(nz, nl, nk)``
for the per-layer ones), in pyqg's units and normalisation: a squared modulus of
unnormalised ``rfftn`` coefficients divided by ``M**2`` (``M = nx * ny``), with
no factor for the half of the plane that the rfft leaves out. So a field's mean
square is ``spectral_total`` of its spectrum (which doubles the interior
columns), and the total kinetic energy per unit mass is
``0.5 * sum_i H_i / H * spectral_total(KEspec[i])``.

The energy equation these terms close: with E = KE + APE per unit mass,
``dE/dt = spectral_total(KEflux + APEflux + APEgenspec + KEfrictionspec
+ paramspec_KEflux + paramspec_APEflux)`` for the unfiltered tendency plus the
forcing (pyqg's exponential filter is its own term, ``Dissspec``, not here).

Inputs are real potential vorticity fields ``q`` of shape ``(nz, ny, nx)`` in
1/s and, optionally, a parameterization's q forcing ``dq/dt`` of the same shape
in 1/s^2. All functions are pure and trace under ``jax.jit``/``jax.vmap``;
``isotropic_spectrum`` needs the model's geometry (``nx``, ``L``...) concrete,
i.e. close over the model rather than pass it as a traced argument.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from pyqg_jax.qg_model import QGModel
from pyqg_jax.state import FullPseudoSpectralState

from qgzoo.physics.qg import state_from_q

BUDGET_TERMS = ("KEflux", "APEflux", "APEgenspec", "KEfrictionspec",
                "paramspec_KEflux", "paramspec_APEflux")


def _rfft(field):
    return jnp.fft.rfftn(field, axes=(-2, -1))


def _irfft(model, fh):
    return jnp.fft.irfftn(fh, axes=(-2, -1), s=(model.ny, model.nx))


def _full(model: QGModel, q: jax.Array) -> FullPseudoSpectralState:
    return model.get_full_state(state_from_q(model, q))


def _wv2(model):
    # k^2 + l^2 directly, as pyqg does (pyqg-jax's wv2 squares a square root).
    return model.k ** 2 + model.l ** 2


def _layer_weights(model):
    return (model.Hi / model.H)[:, None, None]


def _divergence_h(model, field, u, v):
    """Spectral div(u f, v f): pyqg's advection operator, in the rfft space of 1/s^2 * M."""
    return model.ik * _rfft(u * field) + model.il * _rfft(v * field)


def _stretching(model, ph):
    """S ph: the stretching part of q = (lap + S) psi, per layer."""
    thickness = ph[0] - ph[1]
    return jnp.stack([-model.F1 * thickness, model.F2 * thickness])


def _invert(model, qh):
    """The streamfunction of a PV field: ph = (lap + S)^-1 qh, zero at k = l = 0."""
    wv2 = _wv2(model)
    det = wv2 * (wv2 + model.F1 + model.F2)
    inv_det = jnp.where(det == 0, 0.0, 1.0 / jnp.where(det == 0, 1.0, det))
    return inv_det * jnp.stack([-(wv2 + model.F2) * qh[0] - model.F1 * qh[1],
                                -model.F2 * qh[0] - (wv2 + model.F1) * qh[1]])


def _energy_rate(model, ph, tendency_h):
    """-sum_i H_i/H Re(conj(ph_i) X_i) / M^2: the energy change spectrum of a PV tendency X."""
    weighted = _layer_weights(model) * jnp.real(jnp.conj(ph) * tendency_h)
    return -jnp.sum(weighted, axis=0) / model.M ** 2


def _ke_spec(model, full):
    return _wv2(model) * jnp.abs(full.ph) ** 2 / model.M ** 2


def _ens_spec(model, full):
    return jnp.abs(full.qh) ** 2 / model.M ** 2


def _ke_flux(model, full):
    vorticity = _irfft(model, -_wv2(model) * full.ph)
    jacobian_h = _divergence_h(model, vorticity, full.u, full.v)
    return -_energy_rate(model, full.ph, jacobian_h)


def _ape_flux(model, full):
    # Thickness advected by the depth-mean flow; equals the stretching part of
    # the eddy advection wavenumber by wavenumber (pyqg's Jptpc).
    thickness = _irfft(model, full.ph[0] - full.ph[1])
    weights = model.Hi / model.H
    u_mean = weights[0] * full.u[0] + weights[1] * full.u[1]
    v_mean = weights[0] * full.v[0] + weights[1] * full.v[1]
    minus_jacobian_h = -_divergence_h(model, thickness, u_mean, v_mean)
    product = jnp.real((full.ph[0] - full.ph[1]) * jnp.conj(minus_jacobian_h))
    return model.rd ** -2 * model.del1 * model.del2 * product / model.M ** 2


def _ape_gen_spec(model, full):
    # pyqg's QGModel has no meridional background flow, so only Ubg * k remains.
    advection = model.Ubg[:, None, None] * model.k
    weighted = _layer_weights(model) * advection * jnp.real(
        1j * jnp.conj(full.ph) * _stretching(model, full.ph))
    return jnp.sum(weighted, axis=0) / model.M ** 2


def _ke_friction_spec(model, full):
    bottom = model.Hi[-1] / model.H
    return -model.rek * bottom * _wv2(model) * jnp.abs(full.ph[-1]) ** 2 / model.M ** 2


def _param_ke_flux(model, full, forcing_h):
    return -_wv2(model) * _energy_rate(model, full.ph, _invert(model, forcing_h))


def _param_ape_flux(model, full, forcing_h):
    return _energy_rate(model, full.ph, _stretching(model, _invert(model, forcing_h)))


def forcing_energy_transfer(model: QGModel, q: jax.Array, q_forcing: jax.Array) -> jax.Array:
    """pyqg's ``paramspec_KEflux + paramspec_APEflux``: (nl, nk), the energy a forcing
    ``dq/dt`` (1/s^2) puts in at q, in m^2/s^3."""
    full, forcing_h = _full(model, q), _rfft(q_forcing)
    return _param_ke_flux(model, full, forcing_h) + _param_ape_flux(model, full, forcing_h)


def budget_spectra(model: QGModel, q: jax.Array,
                   q_forcing: jax.Array | None = None) -> dict[str, jax.Array]:
    """All the spectra above for one state, keyed by pyqg's diagnostic names.

    ``KEspec`` and ``Ensspec`` are (nz, nl, nk); the budget terms (``BUDGET_TERMS``)
    are (nl, nk) in m^2/s^3. Without ``q_forcing`` (1/s^2) the two ``paramspec``
    terms are zeros, as in pyqg without a parameterization, so the dict always
    has the same keys and shapes.
    """
    full = _full(model, q)
    forcing_h = jnp.zeros_like(full.qh) if q_forcing is None else _rfft(q_forcing)
    return {
        "KEspec": _ke_spec(model, full),
        "Ensspec": _ens_spec(model, full),
        "KEflux": _ke_flux(model, full),
        "APEflux": _ape_flux(model, full),
        "APEgenspec": _ape_gen_spec(model, full),
        "KEfrictionspec": _ke_friction_spec(model, full),
        "paramspec_KEflux": _param_ke_flux(model, full, forcing_h),
        "paramspec_APEflux": _param_ape_flux(model, full, forcing_h),
    }


def spectral_total(spec2d: jax.Array) -> jax.Array:
    """The sum of an rfft-grid spectrum over the full plane (pyqg's ``spec_sum``), same units.

    Interior columns count twice (their conjugates are not stored), ``k = 0``
    and the Nyquist column once; sums over the last two axes.
    """
    weights = jnp.full(spec2d.shape[-1], 2.0).at[0].set(1.0).at[-1].set(1.0)
    return jnp.sum(spec2d * weights, axis=(-2, -1))


def _isotropic_bins(model, truncate):
    """Bin membership (nbins, nl, nk) and bin centres, with pyqg's float arithmetic.

    Points exactly on a bin edge (k^2 + l^2 = 2 i^2 on a square grid) fall on
    one side or the other by rounding; evaluating pyqg's very expressions in
    numpy reproduces its choice, which an integer or XLA-fused version does not.
    """
    nx, ny = model.nx, model.ny
    try:
        length, width = float(model.L), float(model.W)
    except (TypeError, jax.errors.ConcretizationTypeError) as error:
        raise TypeError("isotropic_spectrum needs a concrete model geometry: "
                        "close over the model instead of passing it traced") from error
    dk, dl = 2.0 * np.pi / length, 2.0 * np.pi / width
    kk = dk * np.arange(0.0, nx // 2 + 1)
    ll = dl * np.append(np.arange(0.0, ny / 2), np.arange(-ny / 2, 0.0))
    k, l = np.meshgrid(kk, ll)
    wv = np.sqrt(k ** 2 + l ** 2)
    ll_max, kk_max = np.abs(ll).max(), np.abs(kk).max()
    kmax = min(ll_max, kk_max) if truncate else np.sqrt(ll_max ** 2 + kk_max ** 2)
    dkr = np.sqrt(dk ** 2 + dl ** 2)
    edges = np.arange(0, kmax, dkr)
    upper = np.append(edges[1:], edges[-1] + dkr)
    inside = (wv >= edges[:, None, None]) & (wv < upper[:, None, None])
    inside[-1] |= wv == upper[-1]  # pyqg closes the last bin
    return inside, edges + dkr / 2, dkr, dk * dl


def isotropic_spectrum(model: QGModel, spec2d: jax.Array, *, averaging: bool = True,
                       truncate: bool = True) -> tuple[np.ndarray, jax.Array]:
    """Isotropic spectrum of an rfft-grid spectrum, as pyqg's ``diagnostic_tools.calc_ispec``.

    Returns ``(kr, ispec)``: bin-centre wavenumbers kr (rad/m) and the spectrum
    (units of ``spec2d`` times m), over any leading axes of ``spec2d``. Bins are
    annuli of width sqrt(dk^2 + dl^2). With ``averaging`` (pyqg's default) a bin
    holds the mean over its points times its annulus area, so
    ``sum(ispec) * dkr`` approximates ``spectral_total(spec2d)``; without it, the
    bin's sum over dkr, and with ``truncate=False`` too that identity is exact.
    ``truncate`` stops at the largest circle inside the grid. pyqg-jax's own
    ``calc_ispec`` bins by ``floor(kappa / dkr)``, which puts some edge points
    in the other bin than pyqg does, hence this one.
    """
    inside, kr, dkr, cell_area = _isotropic_bins(model, truncate)
    edge_halved = jnp.ones(spec2d.shape[-1]).at[0].set(0.5).at[-1].set(0.5)
    spec2d = spec2d * edge_halved
    binned = jnp.einsum("...lk,blk->...b", spec2d, jnp.asarray(inside, spec2d.dtype))
    if averaging:
        counts = inside.sum(axis=(-2, -1))
        # pyqg gives NaN for an empty bin (the mean of nothing); so does this.
        ispec = binned / counts * kr * np.pi / cell_area
    else:
        ispec = binned / dkr
    return kr, 2 * ispec
