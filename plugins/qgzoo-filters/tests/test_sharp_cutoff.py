"""sharp_cutoff: spectral truncation, G = 1 for kappa < cutoff * pi / dx_lo, 0 above."""

import jax.numpy as jnp
import numpy as np
import pytest
from pydantic import ValidationError

from qgzoo.physics import qg
from qgzoo import validate_component
from qgzoo_filters import SharpCutoffSpec

PHYSICS = qg.PRESETS["eddy"]
L = PHYSICS["L"]
N, n = 64, 16
R = N // n


@pytest.fixture(scope="module")
def models():
    return qg.make_model(PHYSICS, N), qg.make_model(PHYSICS, n)


def modes_field(modes):
    """Sum of a cos(k0 (k x + l y) + phase) on the high-res grid, and each term."""
    x = (np.arange(N) + 0.5) * L / N
    X, Y = np.meshgrid(x, x)
    k0 = 2 * np.pi / L
    terms = [a * np.cos(k0 * (k * X + l * Y) + p) for k, l, p, a in modes]
    return sum(terms), terms


# (k, l) in units of 2 pi / L, phase, amplitude; the 16-point Nyquist wavenumber is 8.
MODES = [(2, 1, 0.2, 1e-6),    # kappa 2.24
         (4, -3, 1.0, 2e-6),   # kappa 5.00
         (5, 3, 0.5, 1e-6),    # kappa 5.83
         (7, 0, 0.7, 1e-6),    # kappa 7.00
         (8, 0, 0.0, 1e-6),    # kappa 8.00: the Nyquist column
         (6, 5, 0.1, 1e-6),    # kappa 7.81
         (7, 5, 0.9, 1e-6),    # kappa 8.60: a corner, beyond the Nyquist circle
         (20, 1, 0.4, 1e-6)]   # kappa 20.02: above the low-res grid, must not alias


@pytest.mark.parametrize("cutoff", [0.65, 1.0])
def test_keeps_modes_below_the_cutoff_and_removes_those_above(models, cutoff):
    field, terms = modes_field(MODES)
    out = np.asarray(validate_component("coarsener", {"kind": "sharp_cutoff", "cutoff": cutoff})
                     .build(*models).coarsen(jnp.asarray(np.stack([field, -field]))))
    limit = cutoff * n / 2
    kept = [t for (k, l, _, _), t in zip(MODES, terms) if np.hypot(k, l) < limit]
    assert len(kept) == (2 if cutoff == 0.65 else 5)
    # Truncation samples the band-limited field at high-res points r * i.
    expected = sum(kept)[::R, ::R]
    np.testing.assert_allclose(out[0], expected, rtol=0, atol=1e-12 * 2e-6)
    np.testing.assert_allclose(out[1], -expected, rtol=0, atol=1e-12 * 2e-6)
    # Nothing outside the circle survives, not even at round-off.
    spectrum = np.abs(np.fft.rfft2(out[0]))
    k = np.fft.rfftfreq(n, 1 / n)[None, :]
    l = np.fft.fftfreq(n, 1 / n)[:, None]
    outside = np.hypot(k, l) >= limit
    assert spectrum[outside].max() < 1e-12 * spectrum.max()


def test_filter_is_exactly_zero_or_one(models):
    gain = np.asarray(SharpCutoffSpec(cutoff=0.5).build(*models).spectral_filter())
    assert set(np.unique(gain)) == {0.0, 1.0}
    k = np.fft.rfftfreq(n, 1 / n)[None, :]
    l = np.fft.fftfreq(n, 1 / n)[:, None]
    np.testing.assert_array_equal(gain, (np.hypot(k, l) < 4).astype(float))


@pytest.mark.parametrize("cutoff", [0.0, -0.1, 1.01])
def test_cutoff_must_be_a_fraction_of_nyquist(cutoff):
    with pytest.raises(ValidationError, match="cutoff"):
        SharpCutoffSpec(cutoff=cutoff)


def test_conforms():
    from qgzoo.testing import check_component

    check_component(SharpCutoffSpec())
