"""The climate of an ensemble of runs: what the online metrics of Ross et al. compare.

A ``Climate`` summarises snapshots of q pooled over runs and times in two parts:

- ``quantiles``: the quantile function of each of the 10 distributional
  quantities (q, u, v, KE = u^2 + v^2, enstrophy = zeta^2, per layer; full
  velocities) at the midpoints ``(i + 1/2) / n`` of n equal probability bins;
- ``spectra``: the 8 isotropic spectra (run- and time-averaged): KEspec and
  Ensspec per layer, KEflux and APEflux each plus its parameterization part,
  APEgenspec and KEfrictionspec (pyqg's definitions, ``qgzoo.physics.budget``).

``distances`` turns two climates into the 18 named distances: the 1-D
Wasserstein distance, integrated with the midpoint rule from the quantiles
(``quantile_wasserstein``), and the spectral RMSE at isotropic wavenumbers up to
the low-resolution model's resolved ``kmax``. A climate is a few hundred
kilobytes whatever the grid, so the reference side of a comparison can be
stored and shipped without its high-resolution fields.
"""

from __future__ import annotations

import dataclasses
import pathlib

import jax
import jax.numpy as jnp
import numpy as np

from qgzoo.evaluation import metrics
from qgzoo.physics import budget

#: Probability bins of the stored quantile functions.
N_QUANTILES = 4000
#: The spectral quantities, in the order of Ross et al.
SPECTRAL_QUANTITIES = ("KEspec1", "KEspec2", "Ensspec1", "Ensspec2", "KEflux", "APEflux",
                       "APEgenspec", "KEfrictionspec")
#: The distributional quantities, layer by layer (upper layer first).
DISTRIBUTION_QUANTITIES = tuple(f"{name}{layer}" for layer in (1, 2)
                                for name in metrics.DISTRIBUTION_QUANTITIES)
#: All 18 online metrics.
METRICS = DISTRIBUTION_QUANTITIES + SPECTRAL_QUANTITIES


@dataclasses.dataclass(frozen=True)
class Climate:
    """Pooled quantiles and averaged isotropic spectra of a set of snapshots."""

    quantiles: dict[str, np.ndarray]
    """name -> (n_quantiles,) quantile function, in the quantity's units."""
    kr: np.ndarray
    """(nkr,) isotropic wavenumbers of ``spectra``, rad/m."""
    spectra: dict[str, np.ndarray]
    """name -> (nkr,) isotropic spectrum; KEspec in m^3/s^2, Ensspec in m/s^2,
    the budget terms in m^3/s^3."""
    n_snapshots: int
    """How many finite snapshots were pooled."""

    def arrays(self, prefix: str = "") -> dict[str, np.ndarray]:
        """Flat arrays for ``np.savez`` (inverse: ``Climate.from_arrays``)."""
        out = {f"{prefix}kr": self.kr, f"{prefix}n_snapshots": np.array(self.n_snapshots)}
        out |= {f"{prefix}quantile/{k}": v for k, v in self.quantiles.items()}
        out |= {f"{prefix}spectrum/{k}": v for k, v in self.spectra.items()}
        return out

    @classmethod
    def from_arrays(cls, arrays, prefix: str = "") -> "Climate":
        def group(kind):
            start = f"{prefix}{kind}/"
            return {k[len(start):]: np.asarray(arrays[k]) for k in arrays if k.startswith(start)}
        return cls(quantiles=group("quantile"), kr=np.asarray(arrays[f"{prefix}kr"]),
                   spectra=group("spectrum"), n_snapshots=int(arrays[f"{prefix}n_snapshots"]))

    def save(self, path: str | pathlib.Path) -> None:
        np.savez(path, **self.arrays())

    @classmethod
    def load(cls, path: str | pathlib.Path) -> "Climate":
        with np.load(path) as arrays:
            return cls.from_arrays(arrays)

    @classmethod
    def from_snapshots(cls, model, q, forcing_fn=None, *, n_quantiles: int = N_QUANTILES,
                       batch: int = 16) -> "Climate | None":
        """The climate of snapshots ``q`` (..., nz, ny, nx) in 1/s of ``model``.

        Leading axes (runs, times) are pooled. Snapshots that are not finite (a
        blown-up run) are left out; with none left the result is None.
        ``forcing_fn(q)`` (nz, ny, nx) -> (nz, ny, nx) in 1/s^2 is the
        parameterization's forcing, which enters the parameterization parts of KEflux
        and APEflux; None means no parameterization (high resolution, or none).
        """
        q = np.asarray(q)
        q = q.reshape(-1, *q.shape[-3:])
        q = q[np.all(np.isfinite(q), axis=(1, 2, 3))]
        if q.shape[0] == 0:
            return None
        return cls.from_budget(model, _mean_budget(model, q, forcing_fn, batch), q,
                               n_quantiles=n_quantiles, batch=batch)

    @classmethod
    def from_budget(cls, model, mean_budget: dict, q, *, n_quantiles: int = N_QUANTILES,
                    batch: int = 16) -> "Climate":
        """The climate of time-averaged budget spectra and of snapshots ``q`` (n, nz, ny, nx).

        ``mean_budget`` holds ``budget.budget_spectra``'s keys, averaged over the
        runs and times the caller chose (Ross et al. average during their runs,
        ``qgzoo.simulate.long_run``); the distributions pool the snapshots.
        """
        mean = mean_budget
        q = np.asarray(q)
        spectra2d = {"KEflux": mean["KEflux"] + mean["paramspec_KEflux"],
                     "APEflux": mean["APEflux"] + mean["paramspec_APEflux"],
                     "APEgenspec": mean["APEgenspec"], "KEfrictionspec": mean["KEfrictionspec"]}
        for layer in range(q.shape[1]):
            spectra2d[f"KEspec{layer + 1}"] = mean["KEspec"][layer]
            spectra2d[f"Ensspec{layer + 1}"] = mean["Ensspec"][layer]
        kr = None
        spectra = {}
        for name in SPECTRAL_QUANTITIES:
            kr, spectra[name] = budget.isotropic_spectrum(model, jnp.asarray(spectra2d[name]))
            spectra[name] = np.asarray(spectra[name])
        quantiles = {}
        for start in range(0, q.shape[0], batch):
            fields = metrics.flow_fields(model, jnp.asarray(q[start:start + batch]))
            samples = metrics.distribution_samples({k: np.asarray(v) for k, v in fields.items()})
            for name, values in samples.items():
                quantiles.setdefault(name, []).append(values)
        quantiles = {name: _quantiles(np.concatenate(parts), n_quantiles)
                     for name, parts in quantiles.items()}
        return cls(quantiles=quantiles, kr=np.asarray(kr), spectra=spectra, n_snapshots=q.shape[0])


def _mean_budget(model, q, forcing_fn, batch: int):
    """Budget spectra of every snapshot in q (n, nz, ny, nx), averaged; in batches."""
    def one(q1):
        forcing = None if forcing_fn is None else forcing_fn(q1)
        return budget.budget_spectra(model, q1, forcing)

    @jax.jit
    def total(q_batch):
        return jax.tree.map(lambda x: jnp.sum(x, axis=0), jax.vmap(one)(q_batch))

    sums = None
    for start in range(0, q.shape[0], batch):
        part = total(jnp.asarray(q[start:start + batch]))
        sums = part if sums is None else jax.tree.map(jnp.add, sums, part)
    return {k: np.asarray(v) / q.shape[0] for k, v in sums.items()}


def _quantiles(values: np.ndarray, n: int) -> np.ndarray:
    levels = (np.arange(n) + 0.5) / n
    return np.quantile(values, levels, method="inverted_cdf")


def quantile_wasserstein(quantiles_a, quantiles_b) -> float:
    """W1 of two distributions from their quantile functions at the same midpoints.

    The midpoint rule for the integral over p of |Fa^-1(p) - Fb^-1(p)|; with the
    quantiles of ``Climate.from_snapshots`` it is within O(1/n) of the exact distance of the
    samples (``metrics.wasserstein_1d``), in the quantity's units.
    """
    quantiles_a, quantiles_b = np.asarray(quantiles_a), np.asarray(quantiles_b)
    if quantiles_a.shape != quantiles_b.shape:
        raise ValueError(f"quantile functions at different levels: {quantiles_a.shape} "
                         f"vs {quantiles_b.shape}")
    return float(np.mean(np.abs(quantiles_a - quantiles_b)))


def distances(a: Climate, b: Climate, kmax: float) -> dict[str, float]:
    """The 18 distances of ``METRICS`` between climates ``a`` and ``b``.

    Spectra are compared at the isotropic wavenumbers they share up to ``kmax``
    (rad/m; ``qg.resolved_kmax`` of the low-resolution model): the two
    grids must have the same domain, so one wavenumber list is a prefix of the
    other.
    """
    out = {name: quantile_wasserstein(a.quantiles[name], b.quantiles[name])
           for name in DISTRIBUTION_QUANTITIES}
    n = min(a.kr.size, b.kr.size)
    if not np.allclose(a.kr[:n], b.kr[:n], rtol=1e-9):
        raise ValueError("the two climates' isotropic wavenumbers differ: different domains?")
    spectra_a = {k: v[:n] for k, v in a.spectra.items()}
    spectra_b = {k: v[:n] for k, v in b.spectra.items()}
    out |= metrics.spectral_distances({k: spectra_a[k] for k in SPECTRAL_QUANTITIES},
                                      spectra_b, a.kr[:n], kmax)
    return out


def similarity_scores(param: Climate | None, lores: Climate, hires: Climate,
                      kmax: float) -> dict[str, float]:
    """The 18 similarity scores 1 - d(param, hires) / d(lores, hires); NaN without ``param``."""
    if param is None:
        return {name: float("nan") for name in METRICS}
    return metrics.similarity_scores(
        param, lores, hires, {"online": lambda x, y: distances(x, y, kmax)})
