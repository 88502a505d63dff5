"""Coarsening operators and the subgrid forcing, against numpy written from SCIENCE.md.

Conventions checked here (SCIENCE.md, "Coarsening operators" and "Subgrid forcing"):
spectral operators keep rows l[:n/2], l[-n/2:] and columns k[:n/2+1] of the
unnormalised FFT, multiply by G and divide by r^2; the forcing S satisfies
d(qbar)/dt = RHS_lowres(qbar) + S.

Truncating the FFT makes low-resolution point i the value of the band-limited
field at high-resolution point r*i (a fixed shift of (r-1)/2 high-resolution
cells from the low-resolution cell centre; the periodic model is
translation-invariant, so the shift is harmless), hence the ``[::r, ::r]``
comparisons below.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from pyqg_jax.steppers import AB3Stepper, SteppedModel

import qgzoo
from qgzoo.physics import qg
from test_precision import numpy_invert, numpy_wavenumbers

PHYSICS = qg.PRESETS["eddy"]
L = PHYSICS["L"]
N, n = 64, 16
R = N // n


@pytest.fixture(scope="module")
def models():
    return qg.make_model(PHYSICS, N), qg.make_model(PHYSICS, n)


def grid(size):
    x = (np.arange(size) + 0.5) * L / size
    return np.meshgrid(x, x)


def numpy_filtr(size):
    """pyqg's exponential filter: 1 below 0.65 pi in grid-scaled wavenumber."""
    k, l = numpy_wavenumbers(size, L)
    dx = L / size
    scaled = np.sqrt((k * dx) ** 2 + (l * dx) ** 2)
    cut = 0.65 * np.pi
    return np.where(scaled <= cut, 1.0, np.exp(-PHYSICS["filterfac"] * (scaled - cut) ** 4))


def numpy_gaussian(size):
    """Operator2's filter exp(-kappa^2 (2 dx)^2 / 24) on the low-resolution grid."""
    k, l = numpy_wavenumbers(size, L)
    return np.exp(-(k**2 + l**2) * (2 * L / size) ** 2 / 24)


FILTERS = {"operator1": numpy_filtr, "operator2": numpy_gaussian}
OPERATORS = {"operator1": qgzoo.Operator1, "operator2": qgzoo.Operator2}


def truncated_spectrum(field, size, gain):
    """The low-resolution rfft2 spectrum before any projection: truncate, filter, / r^2."""
    big = field.shape[-1]
    fh = np.fft.rfft2(field)
    kept = np.concatenate([fh[..., : size // 2, : size // 2 + 1],
                           fh[..., big - size // 2:, : size // 2 + 1]], axis=-2)
    return kept * gain / (big / size) ** 2


def numpy_coarsen(field, size, gain):
    """Truncate, filter, / r^2, with the Nyquist row and column zeroed (qgzoo's choice)."""
    spectrum = truncated_spectrum(field, size, gain)
    spectrum[..., size // 2, :] = 0
    spectrum[..., :, size // 2] = 0
    return np.fft.irfft2(spectrum, s=(size, size))


def numpy_velocities(q):
    size = q.shape[-1]
    k, l = numpy_wavenumbers(size, L)
    psih = np.fft.rfft2(numpy_invert(q, rd=PHYSICS["rd"], delta=PHYSICS["delta"], L=L))
    return (np.fft.irfft2(-1j * l * psih, s=(size, size)),
            np.fft.irfft2(1j * k * psih, s=(size, size)), psih)


def numpy_advection(q):
    """-div(u q) with u = -dpsi/dy, v = dpsi/dx (eddy velocities), in 1/s^2."""
    size = q.shape[-1]
    k, l = numpy_wavenumbers(size, L)
    u, v, _ = numpy_velocities(q)
    return np.fft.irfft2(-(1j * k * np.fft.rfft2(u * q) + 1j * l * np.fft.rfft2(v * q)),
                         s=(size, size))


def numpy_tendency(q):
    """pyqg's dq/dt without the filter: advection by U + u, beta term, bottom drag."""
    size = q.shape[-1]
    k, l = numpy_wavenumbers(size, L)
    u, v, psih = numpy_velocities(q)
    u_total = u + np.array([PHYSICS["U1"], PHYSICS["U2"]])[:, None, None]
    f1 = 1 / (PHYSICS["rd"] ** 2 * (1 + PHYSICS["delta"]))
    f2 = PHYSICS["delta"] * f1
    shear = PHYSICS["U1"] - PHYSICS["U2"]
    qy = np.array([PHYSICS["beta"] + f1 * shear, PHYSICS["beta"] - f2 * shear])[:, None, None]
    dqh = -(1j * k * np.fft.rfft2(u_total * q) + 1j * l * np.fft.rfft2(v * q)
            + 1j * k * qy * psih)
    dqh[1] += PHYSICS["rek"] * (k**2 + l**2) * psih[1]
    return np.fft.irfft2(dqh, s=(size, size))


@pytest.fixture(scope="module")
def hires_q(small_data, models):
    """A turbulent 64-point state: a spun-up 16-point sample, interpolated spectrally
    and run 500 hourly steps at 64 so that the small scales fill in."""
    hires, _ = models
    q_lo = small_data.fields["q"][0, -1]
    spectrum = np.zeros((2, N, N // 2 + 1), complex)
    lo = np.fft.rfft2(q_lo)
    spectrum[:, : n // 2, : n // 2 + 1] = lo[:, : n // 2]
    spectrum[:, N - n // 2:, : n // 2 + 1] = lo[:, n // 2:]
    q0 = np.fft.irfft2(spectrum * R**2, s=(N, N))
    model = SteppedModel(hires, AB3Stepper(dt=3600.0))
    state = model.initialize_stepper_state(qg.state_from_q(hires, jnp.asarray(q0)))
    state = jax.jit(lambda s: jax.lax.fori_loop(0, 500, lambda _, s: model.step_model(s), s))(state)
    q = np.asarray(state.state.q)
    # Guard the premise: variance has reached the scales the coarsening removes.
    power = np.abs(np.fft.rfft2(q)) ** 2
    k, l = numpy_wavenumbers(N, L)
    unresolved = (np.abs(k) >= n // 2 * 2 * np.pi / L) | (np.abs(l) >= n // 2 * 2 * np.pi / L)
    assert np.isfinite(q).all()
    assert power[:, unresolved].sum() > 1e-3 * power.sum()
    return q


def cos_modes(size):
    """Layer 0: A cos(k0 (3x + 2y) + 0.3); layer 1: B sin(k0 (-2x + 6y)), plus a mode
    at x-wavenumber 20 (above the 16-point Nyquist 8) in both layers."""
    X, Y = grid(size)
    k0 = 2 * np.pi / L
    low = np.stack([2e-6 * np.cos(k0 * (3 * X + 2 * Y) + 0.3),
                    5e-7 * np.sin(k0 * (-2 * X + 6 * Y))])
    high = 1e-6 * np.cos(k0 * (20 * X + Y))
    return low, low + high


@pytest.mark.parametrize("name", ["operator1", "operator2"])
def test_single_modes_scale_by_the_filter(models, name):
    low, field = cos_modes(N)
    out = np.asarray(OPERATORS[name](*models).coarsen(jnp.asarray(field)))
    k0 = 2 * np.pi / L
    dx_lo = L / n
    if name == "operator1":
        # Grid-scaled wavenumbers sqrt(13) 2pi/16 = 1.42 and sqrt(40) 2pi/16 = 2.48
        # versus the cutoff 0.65 pi = 2.04: the first is kept whole, the second is
        # past the cutoff: exp(-23.6 (2.484 - 2.042)^4) = 0.41.
        cut = 0.65 * np.pi
        gains = [1.0, np.exp(-23.6 * (np.sqrt(40) * 2 * np.pi / n - cut) ** 4)]
    else:
        gains = [np.exp(-k0**2 * 13 * (2 * dx_lo) ** 2 / 24),
                 np.exp(-k0**2 * 40 * (2 * dx_lo) ** 2 / 24)]
    assert gains[1] < 0.5 and (name == "operator1" or gains[0] < 0.75)
    expected = np.stack([gains[0] * low[0], gains[1] * low[1]])[:, ::R, ::R]
    # The x-wavenumber-20 mode is removed, not aliased onto wavenumber 4.
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-12 * np.abs(low).max())
    # Amplitude read off the low-resolution FFT normalised by n^2: A/2 per +-mode.
    amplitude = 2 * np.abs(np.fft.rfft2(out[0]))[2, 3] / n**2
    np.testing.assert_allclose(amplitude, 2e-6 * gains[0], rtol=1e-12)


@pytest.mark.parametrize("name", ["operator1", "operator2"])
def test_low_band_is_kept_times_the_filter(models, name):
    rng = np.random.default_rng(3)
    field = rng.standard_normal((2, N, N)) * 1e-6
    field -= field.mean(axis=(-2, -1), keepdims=True)
    out = np.asarray(OPERATORS[name](*models).coarsen(jnp.asarray(field)))
    hi = np.fft.rfft2(field) / N**2
    lo = np.fft.rfft2(out) / n**2
    # Every resolved mode but the Nyquist row and column: |l| < n/2, k < n/2.
    rows = np.r_[0: n // 2, n // 2 + 1: n]
    hi_rows = np.r_[0: n // 2, N - n // 2 + 1: N]
    gain = FILTERS[name](n)[rows, : n // 2]
    np.testing.assert_allclose(lo[:, rows, : n // 2], gain * hi[:, hi_rows, : n // 2],
                               rtol=0, atol=1e-12 * np.abs(hi).max())
    if name == "operator1":
        # Most of the resolved band passes untouched (G = 1 exactly).
        assert (gain == 1.0).sum() > 40


@pytest.mark.parametrize("name", ["operator1", "operator2"])
def test_nyquist_row_and_column_are_zeroed(models, name):
    rng = np.random.default_rng(4)
    field = rng.standard_normal((2, N, N)) * 1e-6
    out = np.asarray(OPERATORS[name](*models).coarsen(jnp.asarray(field)))
    assert out.dtype == np.float64 and out.shape == (2, n, n)
    raw = truncated_spectrum(field, n, FILTERS[name](n))
    expected = raw.copy()
    expected[:, n // 2, :] = 0
    expected[:, :, n // 2] = 0
    spectrum = np.fft.rfft2(out)
    scale = np.abs(raw).max()
    np.testing.assert_allclose(spectrum, expected, rtol=0, atol=1e-12 * scale)
    # Real-consistent: the output spectrum survives irfft2 -> rfft2 unchanged ...
    np.testing.assert_allclose(np.fft.rfft2(np.fft.irfft2(spectrum, s=(n, n))), spectrum,
                               rtol=0, atol=1e-12 * scale)
    back = np.fft.rfft2(np.fft.irfft2(raw, s=(n, n)))
    if name == "operator2":
        # ... which the raw truncation is not: G = 0.19 at Nyquist keeps it visible.
        assert np.abs(back - raw).max() / scale > 1e-3
    else:
        # Operator1's filter already kills the Nyquist row and column (G ~ 1e-15).
        assert np.abs(back - raw).max() / scale < 1e-12


@pytest.mark.parametrize("name", ["operator1", "operator2"])
def test_spectral_forcings_agree_once_nyquist_is_gone(models, name):
    """Linear terms commute with spectral filtering: total and advective forcing agree."""
    rng = np.random.default_rng(5)
    field = np.fft.irfft2(np.fft.rfft2(rng.standard_normal((2, N, N)))
                          / (1 + np.arange(N // 2 + 1)) ** 2, s=(N, N)) * 1e-5
    coarsener = OPERATORS[name](*models)
    total = np.asarray(coarsener.q_forcing_total(jnp.asarray(field)))
    subgrid = np.asarray(coarsener.q_subgrid_forcing(jnp.asarray(field)))
    np.testing.assert_allclose(total, subgrid, rtol=0, atol=1e-9 * np.abs(subgrid).max())


@pytest.mark.parametrize("name", ["operator1", "operator2"])
def test_forcings_match_numpy(models, hires_q, name):
    op = OPERATORS[name](*models)
    gain = FILTERS[name](n)
    qbar = numpy_coarsen(hires_q, n, gain)
    np.testing.assert_allclose(np.asarray(op.coarsen(jnp.asarray(hires_q))), qbar,
                               rtol=0, atol=1e-13 * np.abs(qbar).max())

    subgrid = numpy_coarsen(numpy_advection(hires_q), n, gain) - numpy_advection(qbar)
    total = numpy_coarsen(numpy_tendency(hires_q), n, gain) - numpy_tendency(qbar)
    for got, want in [(jax.jit(op.q_subgrid_forcing)(jnp.asarray(hires_q)), subgrid),
                      (jax.jit(op.q_forcing_total)(jnp.asarray(hires_q)), total)]:
        scale = np.abs(want).max(axis=(-2, -1), keepdims=True)
        assert (scale > 0).all()
        np.testing.assert_array_less(np.abs(np.asarray(got) - want) / scale, 1e-10)


def _corr(a, b):
    return np.corrcoef(a.ravel(), b.ravel())[0, 1]


def test_subgrid_forcing_correlates_positively_with_total_forcing(small_data):
    sub, total = small_data.fields["q_subgrid_forcing"], small_data.fields["q_forcing_total"]
    assert _corr(sub, total) > 0
    for layer in range(2):
        assert _corr(sub[:, :, layer], total[:, :, layer]) > 0


@pytest.mark.parametrize("target", ["q_subgrid_forcing", "q_forcing_total"])
def test_adding_the_forcing_moves_a_lowres_step_toward_the_coarsened_hires_step(
        models, hires_q, target):
    """One hour: the high-resolution truth in 10 Euler substeps, coarsened, versus one
    low-resolution Euler step with +S, without S and with -S (no exponential filter)."""
    op = qgzoo.Operator1(*models)
    dt, substeps = 3600.0, 10
    q = hires_q
    for _ in range(substeps):
        q = q + dt / substeps * numpy_tendency(q)
    truth = numpy_coarsen(q, n, numpy_filtr(n))

    qbar = np.asarray(op.coarsen(jnp.asarray(hires_q)))
    plain = qbar + dt * np.asarray(qg.tendency(models[1], jnp.asarray(qbar)))
    forcing = np.asarray(getattr(op, target)(jnp.asarray(hires_q)))
    errors = {sign: np.sqrt(np.mean((plain + sign * dt * forcing - truth) ** 2, axis=(-2, -1)))
              for sign in (-1, 0, 1)}
    # Per layer: +S is much closer than nothing (measured: 1e-4 and 1e-3 times the
    # error without it), and nothing is closer than -S.
    assert (errors[1] < 0.1 * errors[0]).all(), errors
    assert (errors[0] < errors[-1]).all(), errors


def numpy_div(fx, fy):
    size = fx.shape[-1]
    k, l = numpy_wavenumbers(size, L)
    return np.fft.irfft2(1j * k * np.fft.rfft2(fx) + 1j * l * np.fft.rfft2(fy), s=(size, size))


def numpy_curl(fu, fv):
    size = fu.shape[-1]
    k, l = numpy_wavenumbers(size, L)
    return np.fft.irfft2(1j * k * np.fft.rfft2(fv) - 1j * l * np.fft.rfft2(fu), s=(size, size))


def numpy_advect(q, field):
    """-div(vel f) of ``field`` f by the eddy velocities of q."""
    u, v, _ = numpy_velocities(q)
    return -numpy_div(u * field, v * field)


@pytest.mark.parametrize("name", ["operator1", "operator2"])
def test_subgrid_flux_and_momentum_forcing_match_numpy(models, hires_q, name):
    hires, lores = models
    op = OPERATORS[name](*models)
    gain = FILTERS[name](n)
    qbar = numpy_coarsen(hires_q, n, gain)
    u, v, _ = numpy_velocities(hires_q)
    ubar, vbar, _ = numpy_velocities(qbar)
    flux = [numpy_coarsen(u * hires_q, n, gain) - ubar * qbar,
            numpy_coarsen(v * hires_q, n, gain) - vbar * qbar]
    momentum = [numpy_coarsen(numpy_advect(hires_q, fine), n, gain) - numpy_advect(qbar, coarse)
                for fine, coarse in [(u, ubar), (v, vbar)]]
    q = jnp.asarray(hires_q)
    for got, want in [(jax.jit(op.q_subgrid_flux)(q), flux),
                      (jax.jit(op.momentum_subgrid_forcing)(q), momentum)]:
        for got_part, want_part in zip(got, want):
            scale = np.abs(want_part).max(axis=(-2, -1), keepdims=True)
            np.testing.assert_array_less(np.abs(np.asarray(got_part) - want_part) / scale, 1e-10)

    # The flux form: S = -div F is the advective subgrid forcing, and keeps the mean of q.
    from_flux = np.asarray(qg.q_forcing_of(lores, "q_subgrid_flux", jnp.concatenate(flux)))
    subgrid = np.asarray(op.q_subgrid_forcing(q))
    np.testing.assert_allclose(from_flux, -numpy_div(*flux), rtol=0,
                               atol=1e-12 * np.abs(subgrid).max())
    np.testing.assert_allclose(from_flux, subgrid, rtol=0, atol=1e-10 * np.abs(subgrid).max())
    assert np.abs(from_flux.mean(axis=(-2, -1))).max() < 1e-14 * np.abs(subgrid).max()

    # The momentum form: S is the curl of (Su, Sv), the part of the forcing that acts on
    # the relative vorticity (q's stretching part has no momentum form).
    from_momentum = np.asarray(qg.q_forcing_of(lores, "momentum_subgrid_forcing",
                                               jnp.concatenate(momentum)))
    np.testing.assert_allclose(from_momentum, numpy_curl(*momentum), rtol=0,
                               atol=1e-12 * np.abs(from_momentum).max())
