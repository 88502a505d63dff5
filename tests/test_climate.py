"""Climates against independent references: exact W1, sorted samples, numpy FFTs, hand-made climates."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from qgzoo.evaluation import climate
from qgzoo.physics import budget, qg
from qgzoo.evaluation import metrics

N_SNAPSHOTS = 10


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture(scope="module")
def lores(small_reference):
    return small_reference.lores_model()


@pytest.fixture(scope="module")
def snapshots(small_data):
    """The last 10 coarsened samples of every run: (4 runs, 10, 2, 16, 16), 1/s."""
    return np.asarray(small_data.fields["q"][:, -N_SNAPSHOTS:])


@pytest.fixture(scope="module")
def data_climate(lores, snapshots):
    return climate.Climate.from_snapshots(lores, snapshots)


def inverted_cdf_quantiles(values, n):
    """Quantiles at p = (i + 1/2) / n by the definition of the inverse empirical CDF.

    Q(p) is the smallest sorted value x_(k) (k = 1..N) with k / N >= p, i.e.
    k = ceil(p N), computed in integers: no np.quantile involved.
    """
    ordered = np.sort(np.asarray(values, np.float64).ravel())
    i = np.arange(n, dtype=np.int64)
    k = -(-((2 * i + 1) * ordered.size) // (2 * n))
    return ordered[k - 1]


def pyqg_jax_fields(model, q):
    """Eddy u, v (m/s) of snapshots q (n, nz, ny, nx) from pyqg-jax's own full state."""
    def one(q1):
        full = model.get_full_state(model.create_initial_state(jax.random.key(0)).update(q=q1))
        return full.u, full.v
    u, v = jax.vmap(one)(jnp.asarray(q))
    return np.asarray(u), np.asarray(v)


# --- quantile W1 against the exact W1 of the samples --------------------------------------

def test_quantile_wasserstein_approximates_the_exact_distance_of_two_samples(rng):
    a = rng.normal(0.0, 1.0, 20_000)
    b = rng.normal(0.3, 1.5, 30_000)
    exact = metrics.wasserstein_1d(a, b)
    approx = climate.quantile_wasserstein(climate._quantiles(a, climate.N_QUANTILES),
                                          climate._quantiles(b, climate.N_QUANTILES))
    assert exact > 0.3
    assert abs(approx / exact - 1) < 1e-2


def test_quantile_wasserstein_of_a_shifted_sample_is_the_shift(rng):
    a = rng.normal(0.0, 2.0, 10_000)
    for shift in (0.25, -3.0):
        distance = climate.quantile_wasserstein(climate._quantiles(a + shift, 1000),
                                                climate._quantiles(a, 1000))
        assert abs(distance - abs(shift)) < 1e-12
        assert abs(metrics.wasserstein_1d(a + shift, a) - abs(shift)) < 1e-12


def test_quantile_wasserstein_of_two_unit_normals_is_the_difference_of_their_means(rng):
    mu = 0.5
    a, b = rng.normal(0.0, 1.0, 200_000), rng.normal(mu, 1.0, 200_000)
    distance = climate.quantile_wasserstein(climate._quantiles(a, climate.N_QUANTILES),
                                            climate._quantiles(b, climate.N_QUANTILES))
    # Sampling noise of two samples of 2e5 is a few 1e-3.
    assert abs(distance - mu) < 0.02


def test_quantile_levels_are_the_midpoints_of_the_inverse_cdf(rng):
    values = rng.normal(size=997)  # not a multiple of the number of levels
    for n in (1, 7, 1000, 4000):
        np.testing.assert_array_equal(climate._quantiles(values, n),
                                      inverted_cdf_quantiles(values, n))


def test_quantile_wasserstein_refuses_quantiles_at_different_levels():
    with pytest.raises(ValueError, match="different levels"):
        climate.quantile_wasserstein(np.zeros(10), np.zeros(11))


# --- the climate of snapshots ---------------------------------------------------------

def test_climate_quantiles_are_those_of_the_pooled_fields(lores, snapshots, data_climate):
    assert data_climate.n_snapshots == snapshots.shape[0] * snapshots.shape[1]
    assert set(data_climate.quantiles) == set(climate.DISTRIBUTION_QUANTITIES)
    flat = snapshots.reshape(-1, *snapshots.shape[-3:])
    u, v = pyqg_jax_fields(lores, flat)
    u = u + np.asarray(lores.Ubg)[None, :, None, None]  # full velocity: background included
    # Relative vorticity dv/dx - du/dy by numpy spectral derivatives of the velocities.
    k = 2 * np.pi * np.fft.fftfreq(lores.nx, float(lores.dx))
    l = 2 * np.pi * np.fft.fftfreq(lores.ny, float(lores.dy))
    zeta = np.real(np.fft.ifft2(1j * k[None, :] * np.fft.fft2(v)
                                - 1j * l[:, None] * np.fft.fft2(u)))
    for layer in (0, 1):
        expected = {"q": flat[:, layer], "u": u[:, layer], "v": v[:, layer],
                    "KE": u[:, layer] ** 2 + v[:, layer] ** 2, "enstrophy": zeta[:, layer] ** 2}
        for name, values in expected.items():
            key = f"{name}{layer + 1}"
            reference = inverted_cdf_quantiles(values, climate.N_QUANTILES)
            scale = np.max(np.abs(reference))
            np.testing.assert_allclose(data_climate.quantiles[key], reference,
                                       rtol=0, atol=1e-10 * scale, err_msg=key)
    # q itself is not recomputed: its quantiles are the very samples.
    np.testing.assert_array_equal(data_climate.quantiles["q1"],
                                  inverted_cdf_quantiles(flat[:, 0], climate.N_QUANTILES))


def test_climate_spectra_are_snapshot_means_of_numpy_fft_spectra(lores, snapshots, data_climate):
    flat = snapshots.reshape(-1, *snapshots.shape[-3:])
    u, v = pyqg_jax_fields(lores, flat)
    m2 = float(lores.nx * lores.ny) ** 2

    def power(field):  # pyqg's normalisation: |rfft|^2 / M^2, averaged over snapshots
        return np.mean(np.abs(np.fft.rfft2(field)) ** 2, axis=0) / m2

    ke2d, ens2d = power(u) + power(v), power(flat)
    assert set(data_climate.spectra) == set(climate.SPECTRAL_QUANTITIES)
    for layer in (0, 1):
        for name, spec2d in (("KEspec", ke2d), ("Ensspec", ens2d)):
            kr, expected = budget.isotropic_spectrum(lores, jnp.asarray(spec2d[layer]))
            np.testing.assert_allclose(data_climate.kr, kr, rtol=1e-15)
            np.testing.assert_allclose(data_climate.spectra[f"{name}{layer + 1}"], expected,
                                       rtol=1e-10, err_msg=f"{name}{layer + 1}")
    # The isotropic KE spectrum integrates to the mean eddy u^2 + v^2, approximately
    # (pyqg's annulus averaging; see test_diagnostics for the exact version).
    dkr = data_climate.kr[1] - data_climate.kr[0]
    for layer in (0, 1):
        integral = np.sum(data_climate.spectra[f"KEspec{layer + 1}"]) * dkr
        speed2 = np.mean(u[:, layer] ** 2 + v[:, layer] ** 2)
        np.testing.assert_allclose(integral, speed2, rtol=0.1)


def test_a_forcing_enters_only_the_flux_spectra_and_linearly(lores, snapshots):
    """Damping S = -q / tau drains the total energy E = -1/2 sum_i H_i/H <psi_i q_i> at 2 E / tau."""
    q = snapshots[:1]
    tau = 86400.0
    plain = climate.Climate.from_snapshots(lores, q)
    damped = climate.Climate.from_snapshots(lores, q, lambda q1: -q1 / tau)
    twice = climate.Climate.from_snapshots(lores, q, lambda q1: -2 * q1 / tau)
    for name in ("KEspec1", "KEspec2", "Ensspec1", "Ensspec2", "APEgenspec", "KEfrictionspec"):
        np.testing.assert_array_equal(damped.spectra[name], plain.spectra[name])
    for name in ("KEflux", "APEflux"):
        change = damped.spectra[name] - plain.spectra[name]
        assert np.abs(change).max() > 1e-6 * np.abs(plain.spectra[name]).max()
        np.testing.assert_allclose(twice.spectra[name] - plain.spectra[name], 2 * change,
                                   rtol=1e-8, atol=1e-12 * np.abs(change).max())
    # The forcing parts of KEflux + APEflux integrate to dE/dt = -2 E / tau, with E
    # from pyqg-jax's streamfunction in real space (to the isotropic binning's accuracy).
    def energy(q1):
        full = lores.get_full_state(lores.create_initial_state(jax.random.key(0)).update(q=q1))
        weights = lores.Hi / lores.H
        return -0.5 * jnp.sum(weights * jnp.mean(full.p * full.q, axis=(-2, -1)))
    mean_energy = float(jnp.mean(jax.vmap(energy)(jnp.asarray(q.reshape(-1, *q.shape[-3:])))))
    assert mean_energy > 0
    total = sum(damped.spectra[n] - plain.spectra[n] for n in ("KEflux", "APEflux"))
    dkr = damped.kr[1] - damped.kr[0]
    np.testing.assert_allclose(np.sum(total) * dkr, -2 * mean_energy / tau, rtol=0.1)
    for name in climate.DISTRIBUTION_QUANTITIES:  # the forcing does not change the samples
        np.testing.assert_array_equal(damped.quantiles[name], plain.quantiles[name])


def _assert_same_climate(a, b, rtol=1e-13):
    assert a.n_snapshots == b.n_snapshots
    np.testing.assert_array_equal(a.kr, b.kr)
    assert a.quantiles.keys() == b.quantiles.keys() and a.spectra.keys() == b.spectra.keys()
    for name in a.quantiles:
        np.testing.assert_array_equal(a.quantiles[name], b.quantiles[name], err_msg=name)
    for name in a.spectra:
        np.testing.assert_allclose(a.spectra[name], b.spectra[name], rtol=rtol,
                                   atol=rtol * np.abs(b.spectra[name]).max(), err_msg=name)


def test_non_finite_snapshots_are_left_out(lores, snapshots):
    good = snapshots[:1]
    blown = np.full_like(good, np.nan)
    blown[0, :3] = good[0, :3] * np.inf  # a run that blew up: inf, then NaN
    _assert_same_climate(climate.Climate.from_snapshots(lores, np.concatenate([good, blown])),
                         climate.Climate.from_snapshots(lores, good))
    # One bad point is enough to drop a snapshot, and only that snapshot.
    spotted = good.copy()
    spotted[0, 4, 1, 3, 5] = np.nan
    partial = climate.Climate.from_snapshots(lores, spotted)
    assert partial.n_snapshots == N_SNAPSHOTS - 1
    _assert_same_climate(partial, climate.Climate.from_snapshots(lores, np.delete(good, 4, axis=1)))


def test_no_finite_snapshot_gives_no_climate(lores, snapshots):
    assert climate.Climate.from_snapshots(lores, np.full_like(snapshots[:2], np.nan)) is None


# --- distances and similarity -----------------------------------------------------------

def test_distance_of_a_climate_to_itself_is_zero(data_climate, lores):
    kmax = qg.resolved_kmax(lores)
    distances = climate.distances(data_climate, data_climate, kmax)
    assert list(distances) == list(climate.METRICS) and len(climate.METRICS) == 18
    assert all(value == 0.0 for value in distances.values())


def synthetic_climate(rng, nkr, offset=0.0):
    """A hand-made climate: sorted random quantiles and random spectra on kr = 1, 2, ..."""
    return climate.Climate(
        quantiles={name: np.sort(rng.normal(offset, 1.0, 50)) for name in climate.DISTRIBUTION_QUANTITIES},
        kr=np.arange(1.0, nkr + 1.0),
        spectra={name: rng.normal(offset, 1.0, nkr) for name in climate.SPECTRAL_QUANTITIES},
        n_snapshots=5)


def farther(hires, lores, factor):
    """A climate ``factor`` times as far from ``hires`` as ``lores`` is, on lores' wavenumbers."""
    n = lores.kr.size
    return climate.Climate(
        quantiles={k: hires.quantiles[k] + factor * (v - hires.quantiles[k])
                   for k, v in lores.quantiles.items()},
        kr=lores.kr,
        spectra={k: hires.spectra[k][:n] + factor * (v - hires.spectra[k][:n])
                 for k, v in lores.spectra.items()},
        n_snapshots=lores.n_snapshots)


def test_similarity_is_one_at_high_resolution_zero_without_parameterization(rng):
    hires = synthetic_climate(rng, nkr=12)
    lores = synthetic_climate(rng, nkr=6, offset=0.5)  # a coarser grid: a prefix of kr
    kmax = 4.5
    assert climate.similarity_scores(hires, lores, hires, kmax) == {m: 1.0 for m in climate.METRICS}
    assert climate.similarity_scores(lores, lores, hires, kmax) == {m: 0.0 for m in climate.METRICS}
    for factor, score in ((2.0, -1.0), (0.5, 0.5), (0.0, 1.0)):
        scores = climate.similarity_scores(farther(hires, lores, factor), lores, hires, kmax)
        assert list(scores) == list(climate.METRICS)
        np.testing.assert_allclose(list(scores.values()), score, rtol=0, atol=1e-12)
    nan = climate.similarity_scores(None, lores, hires, kmax)
    assert list(nan) == list(climate.METRICS) and np.isnan(list(nan.values())).all()


def test_spectral_distances_are_rmses_up_to_kmax_on_the_shared_wavenumbers(rng):
    hires = synthetic_climate(rng, nkr=12)
    lores = synthetic_climate(rng, nkr=6, offset=0.5)
    kmax = 4.5  # kr = 1..4 count
    distances = climate.distances(lores, hires, kmax)
    for name in climate.SPECTRAL_QUANTITIES:
        difference = lores.spectra[name][:4] - hires.spectra[name][:4]
        np.testing.assert_allclose(distances[name], np.sqrt(np.mean(difference ** 2)), rtol=1e-14)
    for name in climate.DISTRIBUTION_QUANTITIES:
        expected = np.mean(np.abs(lores.quantiles[name] - hires.quantiles[name]))
        np.testing.assert_allclose(distances[name], expected, rtol=1e-14)
    # Beyond kmax nothing counts.
    changed = dataclasses.replace(lores, spectra={k: v.copy() for k, v in lores.spectra.items()})
    changed.spectra["KEflux"][4:] += 100.0
    assert climate.distances(changed, hires, kmax) == distances


def test_climates_on_different_domains_are_refused(rng):
    a = synthetic_climate(rng, nkr=6)
    b = dataclasses.replace(synthetic_climate(rng, nkr=6), kr=np.arange(1.0, 7.0) * 1.5)
    with pytest.raises(ValueError, match="wavenumbers differ"):
        climate.distances(a, b, 10.0)


# --- storage -------------------------------------------------------------------------

def test_climate_round_trips_through_npz(data_climate, tmp_path):
    path = tmp_path / "climate.npz"
    data_climate.save(path)
    _assert_same_climate(climate.Climate.load(path), data_climate, rtol=0)
    # With a prefix, beside other arrays (as in a Benchmark).
    arrays = data_climate.arrays("hires/") | {"other": np.arange(3)}
    np.savez(tmp_path / "both.npz", **arrays)
    with np.load(tmp_path / "both.npz") as loaded:
        again = climate.Climate.from_arrays(loaded, "hires/")
    _assert_same_climate(again, data_climate, rtol=0)
    assert isinstance(again.n_snapshots, int)
