"""Offline and online metrics of Ross et al. (2023): skill, distances, similarity.

Offline skill compares a predicted subgrid forcing with the true one on held-out
samples (``r2``, ``correlation``, ``offline_scores``). Online metrics compare the
statistics of a low-resolution run with those of the high-resolution reference:
1-D Wasserstein distances of pooled samples (``distribution_distances``), RMSEs
of isotropic spectra (``spectral_distances``), and the similarity
``1 - d(param, hires) / d(lores, hires)`` that turns each distance into a score
(``similarity_scores``).

Fields are laid out ``(time, lev, y, x)``; a leading run axis (or any further
leading axes) is flattened into time. Layer 1 is the upper layer.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
from pyqg_jax.qg_model import QGModel

from qgzoo.physics import qg

Reduction = Literal["space", "time", "all"]
REDUCTIONS: tuple[Reduction, ...] = ("space", "time", "all")
#: The quantities of the distributional metrics, each taken per layer.
DISTRIBUTION_QUANTITIES = ("q", "u", "v", "KE", "enstrophy")


def _time_lev_space(array) -> jax.Array:
    """``array`` as (time, lev, y, x), leading axes beyond four flattened into time."""
    array = jnp.asarray(array)
    if array.ndim < 4:
        raise ValueError(f"expected (..., time, lev, y, x), got shape {array.shape}")
    return array.reshape(-1, *array.shape[-3:])


def _reduction_axes(over: Reduction) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(axes, outer): ``axes`` of (time, lev, y, x) over which one score is computed,
    then ``outer``, the axes of the remaining array over which the scores are averaged.
    """
    if over == "space":
        return (2, 3), (0,)
    if over == "time":
        return (0,), (1, 2)  # after reducing time, the array is (lev, y, x)
    if over == "all":
        return (0, 2, 3), ()
    raise ValueError(f"over must be one of {REDUCTIONS}, got {over!r}")


def r2(pred, truth, over: Reduction = "all") -> jax.Array:
    """Coefficient of determination R^2 = 1 - MSE / Var(truth), per layer: shape (lev,).

    ``pred`` and ``truth`` are (..., time, lev, y, x) in the same units (the
    score is dimensionless). Var is the population variance (about the mean,
    ddof 0) over the same samples as the MSE.

    - ``"space"``: for each time sample, MSE and Var over the y, x grid points;
      the R^2 of each sample is then averaged over time.
    - ``"time"``: for each grid point, MSE and Var over the time samples; the
      R^2 of each grid point is then averaged over y, x.
    - ``"all"``: one MSE and one Var over all time samples and grid points.

    1 is a perfect prediction; 0 predicts no better than the mean; negative is
    worse than the mean. A truth with zero variance over a reduction gives
    -inf or nan.
    """
    pred, truth = _time_lev_space(pred), _time_lev_space(truth)
    axes, outer = _reduction_axes(over)
    mse = jnp.mean((pred - truth) ** 2, axis=axes)
    var = jnp.var(truth, axis=axes)
    return jnp.mean(1 - mse / var, axis=outer)


def correlation(pred, truth, over: Reduction = "all") -> jax.Array:
    """Pearson correlation of ``pred`` with ``truth``, per layer: shape (lev,).

    Reductions as in ``r2``: ``"space"`` correlates the y, x grid points of
    each time sample and averages over time; ``"time"`` correlates the time
    series of each grid point and averages over y, x; ``"all"`` correlates all
    samples and grid points at once. Dimensionless, in [-1, 1]; a constant
    input over a reduction gives nan.
    """
    pred, truth = _time_lev_space(pred), _time_lev_space(truth)
    axes, outer = _reduction_axes(over)
    dp = pred - jnp.mean(pred, axis=axes, keepdims=True)
    dt = truth - jnp.mean(truth, axis=axes, keepdims=True)
    covariance = jnp.mean(dp * dt, axis=axes)
    rho = covariance / jnp.sqrt(jnp.mean(dp**2, axis=axes) * jnp.mean(dt**2, axis=axes))
    return jnp.mean(rho, axis=outer)


def offline_scores(pred, truth) -> dict[str, np.ndarray]:
    """The six offline scores, per layer: ``{"r2_space": (lev,), ..., "correlation_all": ...}``.

    Keys are ``r2_<over>`` and ``correlation_<over>`` for ``over`` in space,
    time, all (see ``r2`` and ``correlation``); values are float64 numpy arrays.
    """
    pred, truth = _time_lev_space(pred), _time_lev_space(truth)
    scores = {}
    for name, score in (("r2", r2), ("correlation", correlation)):
        for over in REDUCTIONS:
            scores[f"{name}_{over}"] = np.asarray(score(pred, truth, over), np.float64)
    return scores


# --- distributional online metrics -------------------------------------------------

def wasserstein_1d(a, b) -> float:
    """Exact Wasserstein-1 distance between the empirical distributions of samples a and b.

    W1 = integral over p in [0, 1] of |Fa^-1(p) - Fb^-1(p)|, with F^-1 the
    (step) quantile functions of the samples, which may differ in size. Every
    input is flattened into one sample; the result is in the samples' units.
    Computed exactly (no binning) on the merged breakpoints i/n and j/m, held as
    integers so that no two breakpoints are confused by rounding.
    """
    a = np.sort(np.asarray(a, np.float64).ravel())
    b = np.sort(np.asarray(b, np.float64).ravel())
    n, m = a.size, b.size
    if n == 0 or m == 0:
        raise ValueError("wasserstein_1d needs two non-empty samples")
    # Breakpoint p = i/n = i*m / (n*m) and j/m = j*n / (n*m): integers over n*m.
    breaks = np.union1d(np.arange(n + 1, dtype=np.int64) * m, np.arange(m + 1, dtype=np.int64) * n)
    start, width = breaks[:-1], np.diff(breaks)
    # On [start, start + width) the quantile functions are a[floor(p n)], b[floor(p m)].
    return float(np.sum(width * np.abs(a[start // m] - b[start // n])) / (n * m))


def flow_fields(model: QGModel, q) -> dict[str, jax.Array]:
    """q, full velocities and relative vorticity at q (..., nz, ny, nx), each of q's shape.

    Returns ``{"q": 1/s, "u": m/s, "v": m/s, "zeta": 1/s}``: u includes the
    model's background flow ``Ubg`` of each layer (v has none), zeta is the
    Laplacian of the streamfunction, computed spectrally (-kappa^2 psi_hat).
    """
    q = jnp.asarray(q)
    flat = q.reshape(-1, *q.shape[-3:])

    def one(q1):
        u, v = qg.velocities(model, q1)
        return u + model.Ubg[:, None, None], v, qg.relative_vorticity(model, q1)

    u, v, zeta = jax.vmap(one)(flat)
    return {"q": q, "u": u.reshape(q.shape), "v": v.reshape(q.shape),
            "zeta": zeta.reshape(q.shape)}


def distribution_samples(fields: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The 10 pooled 1-D samples of the distributional metrics.

    ``fields`` holds "q" (1/s), "u", "v" (m/s, full velocities, background flow
    included) and "zeta" (relative vorticity, 1/s), each (..., lev, y, x), as
    ``flow_fields`` returns them for the snapshots to compare. Per layer, every
    quantity is pooled over all leading axes (samples, runs) and grid points.
    Keys: "q1", "u1", "v1", "KE1" = u^2 + v^2 (m^2/s^2), "enstrophy1" = zeta^2
    (1/s^2), then the same with 2, ...; layer 1 is the upper layer.
    """
    q, u, v, zeta = (np.asarray(fields[name], np.float64) for name in ("q", "u", "v", "zeta"))
    quantities = {"q": q, "u": u, "v": v, "KE": u**2 + v**2, "enstrophy": zeta**2}
    samples = {}
    for layer in range(q.shape[-3]):
        for name in DISTRIBUTION_QUANTITIES:
            samples[f"{name}{layer + 1}"] = quantities[name][..., layer, :, :].ravel()
    return samples


def sample_distances(samples_a: Mapping[str, np.ndarray],
                     samples_b: Mapping[str, np.ndarray]) -> dict[str, float]:
    """``wasserstein_1d`` of each key of ``samples_a`` (all must be in ``samples_b``)."""
    return {name: wasserstein_1d(values, samples_b[name]) for name, values in samples_a.items()}


def distribution_distances(fields_a: Mapping[str, np.ndarray],
                           fields_b: Mapping[str, np.ndarray]) -> dict[str, float]:
    """Wasserstein-1 distances of the 10 quantities of ``distribution_samples``.

    Keys as in ``distribution_samples``; each distance is in its quantity's units.
    """
    return sample_distances(distribution_samples(fields_a), distribution_samples(fields_b))


# --- spectral online metrics -------------------------------------------------------

def spectral_rmse(spec_a, spec_b, kr, kmax: float) -> np.ndarray:
    """Root-mean-square difference of two isotropic spectra over kr <= ``kmax``.

    ``spec_a`` and ``spec_b`` are (..., nkr) on the isotropic wavenumbers ``kr``
    (rad/m, as from ``pyqg_jax.diagnostics.ispec_grid``); the mean is
    unweighted over the retained wavenumbers. The result has the leading shape
    and the spectra's units.
    """
    kr = np.asarray(kr, np.float64)
    keep = kr <= kmax
    if not keep.any():
        raise ValueError(f"no isotropic wavenumber at or below kmax = {kmax}")
    spec_a, spec_b = np.asarray(spec_a, np.float64), np.asarray(spec_b, np.float64)
    difference = spec_a[..., keep] - spec_b[..., keep]
    return np.sqrt(np.mean(difference**2, axis=-1))


def spectral_distances(spectra_a: Mapping[str, np.ndarray], spectra_b: Mapping[str, np.ndarray],
                       kr, kmax: float) -> dict[str, float]:
    """``spectral_rmse`` of each named 1-D spectrum of ``spectra_a`` against ``spectra_b``.

    Names are the caller's (Ross et al.: KEspec1, KEspec2, Ensspec1, Ensspec2,
    KEflux, APEflux, APEgenspec, KEfrictionspec, run- and time-averaged).
    """
    return {name: float(spectral_rmse(spectrum, spectra_b[name], kr, kmax))
            for name, spectrum in spectra_a.items()}


# --- similarity ---------------------------------------------------------------------

def similarity(d_param: Mapping[str, float], d_lores: Mapping[str, float]) -> dict[str, float]:
    """Similarity 1 - d_param / d_lores for each key of ``d_param`` (dimensionless).

    ``d_param`` holds the distances of the parameterized model to the
    high-resolution reference, ``d_lores`` those of the unparameterized
    low-resolution model. 1: matches the reference; 0: no better than no
    parameterization; negative: worse. d_lores = 0 gives nan (d_param = 0) or -inf.
    """
    scores = {}
    with np.errstate(divide="ignore", invalid="ignore"):
        for name, distance in d_param.items():
            scores[name] = float(1 - np.float64(distance) / np.float64(d_lores[name]))
    return scores


DistanceFn = Callable[[object, object], Mapping[str, float]]


def similarity_scores(param_stats, lores_stats, hires_stats,
                      distance_fns: Mapping[str, DistanceFn]) -> dict[str, float]:
    """Similarity scores of a parameterized run against the low-resolution baseline.

    Each of ``distance_fns`` maps (stats of a run, stats of the reference) to a
    dict of named distances, for example
    ``lambda a, b: distribution_distances(a["fields"], b["fields"])`` and
    ``lambda a, b: spectral_distances(a["spectra"], b["spectra"], kr, kmax)``;
    it is called on (param, hires) and (lores, hires) and the two are combined
    by ``similarity``. The stats are whatever the functions read. Returns all
    scores in one dict; a name given by two functions is an error.
    """
    scores: dict[str, float] = {}
    for group, distance in distance_fns.items():
        group_scores = similarity(distance(param_stats, hires_stats),
                                  distance(lores_stats, hires_stats))
        clash = set(group_scores) & set(scores)
        if clash:
            raise ValueError(f"distance function {group!r} repeats the names {sorted(clash)}")
        scores.update(group_scores)
    return scores
