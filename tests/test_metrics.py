"""Metrics against independent references: hand-made cases, loops, brute force."""

import numpy as np
import pytest

from qgzoo.physics import qg
from qgzoo.evaluation.metrics import correlation, distribution_distances, flow_fields, offline_scores, r2, sample_distances, similarity, similarity_scores, spectral_distances, spectral_rmse, wasserstein_1d


@pytest.fixture
def rng():
    return np.random.default_rng(0)


# --- offline skill -------------------------------------------------------------------

def test_perfect_prediction_scores_one_everywhere(rng):
    truth = rng.normal(size=(20, 2, 8, 8))
    for name, score in offline_scores(truth, truth).items():
        np.testing.assert_allclose(score, 1.0, atol=1e-12, err_msg=name)


def test_noisy_prediction_scores_the_expected_r2_and_correlation(rng):
    truth_var, noise_var = 4.0, 1.0
    truth = rng.normal(scale=np.sqrt(truth_var), size=(200, 2, 16, 16))
    pred = truth + rng.normal(scale=np.sqrt(noise_var), size=truth.shape)
    scores = offline_scores(pred, truth)
    for over in ("space", "time", "all"):
        np.testing.assert_allclose(scores[f"r2_{over}"], 1 - noise_var / truth_var, atol=0.02)
        np.testing.assert_allclose(scores[f"correlation_{over}"],
                                   np.sqrt(truth_var / (truth_var + noise_var)), atol=0.01)


def test_bad_prediction_scores_negative_r2_and_affine_prediction_correlates_perfectly(rng):
    truth = rng.normal(size=(30, 2, 8, 8))
    truth -= truth.mean(axis=(0, 2, 3), keepdims=True)
    # With a zero-mean truth, predicting -truth makes the MSE four times the variance.
    np.testing.assert_allclose(r2(-truth, truth, "all"), -3.0, rtol=1e-12)
    for over in ("space", "time", "all"):
        assert np.all(np.asarray(r2(-truth, truth, over)) < -2.9)
        np.testing.assert_allclose(correlation(-truth, truth, over), -1.0, rtol=1e-12)
        np.testing.assert_allclose(correlation(3.0 * truth + 7.0, truth, over), 1.0, rtol=1e-12)
        assert np.all(np.asarray(r2(3.0 * truth + 7.0, truth, over)) < 0)


def _reference_scores(pred, truth, over):
    """Per-layer scores by explicit loops over the samples of each reduction."""
    def r2_of(p, t):
        return 1 - np.mean((p - t) ** 2) / np.var(t)

    def corr_of(p, t):
        return np.corrcoef(p.ravel(), t.ravel())[0, 1]

    n_time, n_lev, ny, nx = truth.shape
    out = {"r2": [], "correlation": []}
    for lev in range(n_lev):
        p, t = pred[:, lev], truth[:, lev]
        if over == "space":
            groups = [(p[i], t[i]) for i in range(n_time)]
        elif over == "time":
            groups = [(p[:, j, i], t[:, j, i]) for j in range(ny) for i in range(nx)]
        else:
            groups = [(p, t)]
        out["r2"].append(np.mean([r2_of(a, b) for a, b in groups]))
        out["correlation"].append(np.mean([corr_of(a, b) for a, b in groups]))
    return out


def test_reductions_match_loops_and_differ_as_documented(rng):
    n_time, shape = 40, (2, 6, 6)
    truth = rng.normal(size=(n_time, *shape))
    # A spatially uniform offset varying in time leaves every spatial correlation at 1;
    # a steady spatial pattern leaves every grid point's time series correlation at 1.
    offset_in_time = rng.normal(size=(n_time, 1, 1, 1))
    steady_pattern = rng.normal(size=(1, *shape))
    cases = {"time offset": truth + offset_in_time, "steady pattern": truth + steady_pattern}
    for case, pred in cases.items():
        for over in ("space", "time", "all"):
            expected = _reference_scores(pred, truth, over)
            np.testing.assert_allclose(r2(pred, truth, over), expected["r2"], rtol=1e-10)
            np.testing.assert_allclose(correlation(pred, truth, over), expected["correlation"],
                                       rtol=1e-10)
    by_time = cases["time offset"]
    np.testing.assert_allclose(correlation(by_time, truth, "space"), 1.0, rtol=1e-12)
    assert np.all(np.asarray(correlation(by_time, truth, "time")) < 0.9)
    steady = cases["steady pattern"]
    np.testing.assert_allclose(correlation(steady, truth, "time"), 1.0, rtol=1e-12)
    assert np.all(np.asarray(correlation(steady, truth, "space")) < 0.9)


def test_a_leading_run_axis_is_flattened_into_time(rng):
    truth = rng.normal(size=(3, 10, 2, 4, 4))
    pred = truth + rng.normal(size=truth.shape)
    flat = offline_scores(pred.reshape(30, 2, 4, 4), truth.reshape(30, 2, 4, 4))
    for name, score in offline_scores(pred, truth).items():
        np.testing.assert_allclose(score, flat[name], rtol=1e-12, err_msg=name)
        assert score.shape == (2,)


# --- Wasserstein distance ------------------------------------------------------------

def _wasserstein_from_cdfs(a, b, n_points=400_001):
    """W1 = integral of |Fa(x) - Fb(x)| dx, by the trapezoid rule on a fine grid."""
    a, b = np.sort(a), np.sort(b)
    x = np.linspace(min(a[0], b[0]), max(a[-1], b[-1]), n_points)
    cdf_a = np.searchsorted(a, x, side="right") / a.size
    cdf_b = np.searchsorted(b, x, side="right") / b.size
    gap = np.abs(cdf_a - cdf_b)
    return float(np.sum((gap[1:] + gap[:-1]) / 2 * np.diff(x)))


def test_wasserstein_of_equal_samples_is_zero(rng):
    a = rng.normal(size=500)
    assert wasserstein_1d(a, rng.permutation(a)) == 0.0


def test_wasserstein_of_a_shifted_sample_is_the_shift(rng):
    a = rng.normal(size=300)
    np.testing.assert_allclose(wasserstein_1d(a, a - 3.2), 3.2, rtol=1e-12)


def test_wasserstein_of_point_masses():
    assert wasserstein_1d(np.zeros(5), np.full(7, 2.0)) == pytest.approx(2.0, rel=1e-14)
    # 30% of the mass of a sits at 0, the rest (and all of b) at 1: it moves a distance 1.
    a = np.array([0.0] * 3 + [1.0] * 7)
    assert wasserstein_1d(a, np.ones(3)) == pytest.approx(0.3, rel=1e-14)


def test_wasserstein_of_different_sizes_matches_integrated_cdfs(rng):
    for n, m in [(137, 250), (1, 9), (64, 48)]:
        a = rng.normal(size=n)
        b = rng.exponential(size=m) - 0.3
        expected = _wasserstein_from_cdfs(a, b)
        np.testing.assert_allclose(wasserstein_1d(a, b), expected, rtol=1e-4)
        assert wasserstein_1d(a, b) == pytest.approx(wasserstein_1d(b, a), rel=1e-12)


def test_wasserstein_of_equal_sizes_is_the_mean_sorted_gap(rng):
    a, b = rng.normal(size=(2, 400))
    expected = np.mean(np.abs(np.sort(a) - np.sort(b)))
    np.testing.assert_allclose(wasserstein_1d(a, b), expected, rtol=1e-12)


def test_distribution_distances_pool_runs_samples_and_grid_points_per_layer(rng):
    shape = (3, 4, 2, 8, 8)  # run, time, lev, y, x
    a = {name: rng.normal(size=shape) for name in ("q", "u", "v", "zeta")}
    b = {name: 1.5 * rng.normal(size=shape) + 0.2 for name in ("q", "u", "v", "zeta")}
    distances = distribution_distances(a, b)
    assert sorted(distances) == sorted(f"{name}{layer}" for layer in (1, 2)
                                       for name in ("q", "u", "v", "KE", "enstrophy"))

    def pooled(fields, quantity, layer):
        f = {k: np.moveaxis(v, 2, 0)[layer].ravel() for k, v in fields.items()}
        return {"KE": f["u"] ** 2 + f["v"] ** 2, "enstrophy": f["zeta"] ** 2}.get(
            quantity, f.get(quantity))

    for quantity in ("q", "v", "KE", "enstrophy"):
        for layer in (0, 1):
            expected = wasserstein_1d(pooled(a, quantity, layer), pooled(b, quantity, layer))
            assert distances[f"{quantity}{layer + 1}"] == pytest.approx(expected, rel=1e-12)
    assert all(d == 0 for d in distribution_distances(a, a).values())


# --- the synthetic similarity case --------------------------------------------------

SPECTRA = ("KEspec1", "KEspec2", "Ensspec1", "Ensspec2", "KEflux", "APEflux",
           "APEgenspec", "KEfrictionspec")
QUANTITIES = [f"{name}{layer}" for layer in (1, 2) for name in ("q", "u", "v", "KE", "enstrophy")]


def _synthetic_stats(rng):
    """Stats of hires ~ N(0, 1), lores ~ N(0.5, 1.2^2), and a model twice as far as lores."""
    kr = np.linspace(1e-6, 1e-4, 40)
    stats = {"hires": {"samples": {}, "spectra": {}}, "lores": {"samples": {}, "spectra": {}},
             "far": {"samples": {}, "spectra": {}}}
    for i, name in enumerate(QUANTITIES):
        scale = 10.0 ** -i  # each quantity in its own units
        z = rng.normal(size=3000)
        stats["hires"]["samples"][name] = scale * z
        stats["lores"]["samples"][name] = scale * (0.5 + 1.2 * rng.permutation(z))
        # Its quantile function departs from hires's twice as much as lores's does.
        stats["far"]["samples"][name] = scale * (1.0 + 1.4 * z)
    for name in SPECTRA:
        hires = rng.uniform(1, 2, size=kr.size) * kr**-3
        lores = hires * rng.uniform(0.5, 1.5, size=kr.size)
        stats["hires"]["spectra"][name], stats["lores"]["spectra"][name] = hires, lores
        stats["far"]["spectra"][name] = hires + 2 * (lores - hires)
    return stats, kr


def test_similarity_is_one_for_hires_statistics_zero_for_lores_and_minus_one_twice_as_far(rng):
    stats, kr = _synthetic_stats(rng)
    kmax = kr[25]
    distance_fns = {
        "distribution": lambda a, b: sample_distances(a["samples"], b["samples"]),
        "spectral": lambda a, b: spectral_distances(a["spectra"], b["spectra"], kr, kmax),
    }

    def scores(param):
        return similarity_scores(param, stats["lores"], stats["hires"], distance_fns)

    hires_copy = {group: {k: v.copy() for k, v in values.items()}
                  for group, values in stats["hires"].items()}
    expected_keys = sorted(QUANTITIES + list(SPECTRA))
    for param, expected in [(hires_copy, 1.0), (stats["lores"], 0.0), (stats["far"], -1.0)]:
        result = scores(param)
        assert sorted(result) == expected_keys
        np.testing.assert_allclose(list(result.values()), expected, atol=1e-10)

    # Fresh draws from the high-resolution distribution score close to 1, not exactly.
    fresh = {"samples": {name: 10.0 ** -i * rng.normal(size=3000)
                         for i, name in enumerate(QUANTITIES)}, "spectra": hires_copy["spectra"]}
    result = scores(fresh)
    assert all(0.85 < result[name] < 1 for name in QUANTITIES), result


def test_similarity_is_elementwise_and_repeated_names_are_an_error():
    assert similarity({"a": 1.0, "b": 3.0}, {"a": 2.0, "b": 1.0}) == {"a": 0.5, "b": -2.0}
    twice = {"x": lambda a, b: {"q1": abs(a - b)}, "y": lambda a, b: {"q1": abs(a - b)}}
    with pytest.raises(ValueError, match="q1"):
        similarity_scores(1.0, 2.0, 0.0, twice)


# --- spectra -------------------------------------------------------------------------

def test_spectral_rmse_uses_only_wavenumbers_up_to_kmax():
    kr = np.arange(1.0, 11.0)
    a = np.zeros((2, 10))
    b = np.where(kr <= 6, np.array([[1.0], [2.0]]), 100.0)
    np.testing.assert_allclose(spectral_rmse(a, b, kr, kmax=6.0), [1.0, 2.0])
    b[:, :6] = [3.0, 4.0, 3.0, 4.0, 3.0, 4.0]
    np.testing.assert_allclose(spectral_rmse(a, b, kr, kmax=6.0), np.sqrt(12.5))


def test_resolved_kmax_is_the_largest_grid_wavenumber_inside_the_filter_cutoff():
    model = qg.make_model(qg.PRESETS["eddy"], 32)
    dx = model.L / 32
    index = np.fft.fftfreq(32, 1 / 32)
    kappa = 2 * np.pi / model.L * np.hypot(*np.meshgrid(index, index))
    expected = kappa[kappa * dx <= 0.65 * np.pi].max()
    assert qg.resolved_kmax(model) == pytest.approx(expected, rel=1e-12)
    filtr, wv = np.asarray(model.filtr), np.asarray(model.wv)
    assert np.all(filtr[wv <= qg.resolved_kmax(model)] == 1)
    assert np.all(filtr[wv > qg.resolved_kmax(model) * (1 + 1e-12)] < 1)


# --- velocities and vorticity from q --------------------------------------------------

def test_flow_fields_of_a_single_fourier_mode_match_the_analytic_fields():
    model = qg.make_model(qg.PRESETS["eddy"], 16)
    x, y = np.asarray(model.x), np.asarray(model.y)
    k0, l0 = 2 * np.pi * 2 / model.L, 2 * np.pi * 3 / model.W
    phase = k0 * x + l0 * y
    amplitude = np.array([4000.0, -1500.0])  # psi of each layer, m^2/s
    psi = amplitude[:, None, None] * np.cos(phase)
    kappa2, F1, F2 = k0**2 + l0**2, float(model.F1), float(model.F2)
    q = np.stack([-kappa2 * psi[0] + F1 * (psi[1] - psi[0]),
                  -kappa2 * psi[1] + F2 * (psi[0] - psi[1])])
    fields = flow_fields(model, np.stack([q, 2 * q]))  # a leading time axis
    U = np.array([model.U1, model.U2])[:, None, None]
    sine = amplitude[:, None, None] * np.sin(phase)
    expected = {"q": q, "u": l0 * sine + U, "v": -k0 * sine, "zeta": -kappa2 * psi}
    for name, field in expected.items():
        scale = np.abs(field).max()
        np.testing.assert_allclose(fields[name][0], field, atol=1e-10 * scale, err_msg=name)
    np.testing.assert_allclose(fields["zeta"][1], 2 * expected["zeta"],
                               atol=1e-10 * np.abs(expected["zeta"]).max())
