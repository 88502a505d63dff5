"""Figures of a comparison (matplotlib, written as PNG files).

``draw_all`` draws every figure of a ``qgzoo.evaluation.comparison.Comparison`` into a folder
and returns ``{title: file name}`` for the report. Each figure is also a
function of its own taking the comparison (and a benchmark name where it is
about one reference) and returning a matplotlib Figure.
"""

from __future__ import annotations

import pathlib

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from qgzoo.evaluation.climate import METRICS  # noqa: E402
from qgzoo.evaluation.results import BASELINE  # noqa: E402

HIRES = dict(color="black", lw=2.2, label="high resolution")
LORES = dict(color="0.5", lw=1.5, ls="--")
SPECTRA = (("KEspec1", "KE spectrum, upper layer", "m$^3$ s$^{-2}$", "log"),
           ("KEspec2", "KE spectrum, lower layer", "m$^3$ s$^{-2}$", "log"),
           ("Ensspec1", "enstrophy spectrum, upper layer", "m s$^{-2}$", "log"),
           ("Ensspec2", "enstrophy spectrum, lower layer", "m s$^{-2}$", "log"),
           ("KEflux", "KE flux (with parameterization)", "m$^3$ s$^{-3}$", "linear"),
           ("APEflux", "APE flux (with parameterization)", "m$^3$ s$^{-3}$", "linear"))


def _benchmark(comparison, name):
    return next(b for b in comparison.benchmarks if b.name == (name or comparison.benchmarks[0].name))


def _runs(comparison, bench):
    """(label, result, line style) of the baseline then every entry."""
    colors = plt.get_cmap("tab10")
    out = [(BASELINE, comparison.baseline[bench.name], LORES)]
    for i, entry in enumerate(comparison.entries):
        out.append((entry.name, comparison.results[entry.name, bench.name],
                    dict(color=colors(i % 10), lw=1.3)))
    return out


def spectra(comparison, benchmark: str | None = None):
    """Run- and time-averaged isotropic spectra of every entry against the references."""
    bench = _benchmark(comparison, benchmark)
    fig, axes = plt.subplots(2, 3, figsize=(15, 8.5), constrained_layout=True)
    kmax = bench.kmax
    for ax, (name, title, unit, scale) in zip(axes.T.ravel(), SPECTRA):
        hires = bench.hires
        keep = hires.kr <= 1.1 * kmax  # the exponential filter empties the rest at low res
        ax.plot(hires.kr[keep], hires.spectra[name][keep], **HIRES)
        for label, result, style in _runs(comparison, bench):
            if result.climate is not None:
                ax.plot(hires.kr[keep], result.climate.spectra[name][:keep.sum()], label=label,
                        **style)
        ax.axvline(kmax, color="0.7", lw=0.8, ls=":")
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())  # they overlap
        ax.set_yscale(scale)
        ax.set(title=title, xlabel="isotropic wavenumber (rad/m)", ylabel=unit)
    axes[0, 0].legend(fontsize=8)
    fig.suptitle(f"{bench.name}: spectra averaged over the last snapshots "
                 f"(dotted: resolved kmax, the scored range ends there)")
    return fig


def snapshots(comparison, benchmark: str | None = None):
    """Upper-layer q at the end of the first held-out run: high resolution and every entry."""
    bench = _benchmark(comparison, benchmark)
    panels = [("high resolution", bench.hires_snapshot[0]),
              ("high resolution, coarsened", bench.final_coarse_q[0])]
    panels += [(label, result.snapshot[0]) for label, result, _ in _runs(comparison, bench)]
    columns = min(5, len(panels))
    rows = -(-len(panels) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 3.3 * rows),
                             squeeze=False, constrained_layout=True)
    limit = float(np.nanmax(np.abs(bench.hires_snapshot[0])))
    for ax in axes.ravel():
        ax.axis("off")
    for ax, (label, q) in zip(axes.ravel(), panels):
        image = ax.imshow(q, cmap="RdBu_r", vmin=-limit, vmax=limit, origin="lower")
        title = label if np.all(np.isfinite(q)) else f"{label} (blew up)"
        ax.set_title(title, fontsize=9)
    fig.colorbar(image, ax=axes, shrink=0.6, label="upper-layer q (1/s)")
    fig.suptitle(f"{bench.name}: q at the end of high-resolution run {bench.test_runs[0]}")
    return fig


def similarity_heatmap(comparison):
    """Similarity scores, entry by metric, one panel per benchmark (1 = high res, 0 = none)."""
    benches = comparison.benchmarks
    names = [e.name for e in comparison.entries]
    fig, axes = plt.subplots(len(benches), 1, squeeze=False, constrained_layout=True,
                             figsize=(13, 0.45 * len(names) * len(benches) + 2.2 * len(benches)))
    for ax, bench in zip(axes[:, 0], benches):
        scores = np.array([[comparison.scores(name, bench.name)[m] for m in METRICS]
                           for name in names])
        image = ax.imshow(np.clip(scores, -1, 1), cmap="RdBu", vmin=-1, vmax=1, aspect="auto")
        for (i, j), value in np.ndenumerate(scores):
            text = "nan" if not np.isfinite(value) else f"{value:.2f}"
            ax.text(j, i, text, ha="center", va="center", fontsize=7,
                    color="white" if np.isfinite(value) and abs(value) > 0.6 else "black")
        ax.set_xticks(range(len(METRICS)), METRICS, rotation=60, ha="right")
        ax.set_yticks(range(len(names)), names)
        ax.set_title(f"{bench.name}: similarity to high resolution (colours clipped to [-1, 1])")
    fig.colorbar(image, ax=axes[:, 0], shrink=0.8)
    return fig


def mean_similarity(comparison):
    """Mean similarity of every row of the leaderboard on each benchmark: a group's mean with
    its standard deviation over seeds as an error bar, each seed as a dot."""
    groups = comparison.groups()
    benches = comparison.benchmarks
    fig, axes = plt.subplots(1, len(benches), figsize=(5.5 * len(benches), 0.4 * len(groups) + 1.8),
                             squeeze=False, sharey=True, constrained_layout=True)
    for ax, bench in zip(axes[0], benches):
        for i, members in enumerate(groups.values()):
            means = np.array([np.mean(list(comparison.scores(e.name, bench.name).values()))
                              for e in members])
            spread = np.std(means, ddof=1) if means.size > 1 else 0.0
            ax.barh(i, np.mean(means), xerr=spread, color="C0", alpha=0.6, capsize=4)
            ax.plot(means, np.full(means.size, i), "k.", ms=4)
        ax.axvline(0, color="0.3", lw=0.8)
        ax.set(title=f"{bench.name}", xlabel="mean similarity (0: no parameterization)")
    axes[0, 0].set_yticks(range(len(groups)), [
        f"{name} ({len(m)} seeds)" if len(m) > 1 else name for name, m in groups.items()])
    axes[0, 0].invert_yaxis()
    return fig


def kinetic_energy(comparison, benchmark: str | None = None):
    """Kinetic energy over the run: held-out high-resolution runs against every entry."""
    bench = _benchmark(comparison, benchmark)
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.2), constrained_layout=True, sharex=True)
    days = bench.hires_ke_days
    for layer, ax in enumerate(axes):
        ax.plot(days, np.mean(bench.hires_ke[:, :, layer], axis=0), **HIRES)
        for label, result, style in _runs(comparison, bench):
            ke = np.nanmean(result.ke[:, :, layer], axis=0) if result.stable else \
                np.full(result.ke.shape[1], np.nan)
            ax.plot(result.ke_steps * result.dt / 86400, ke, label=label, **style)
        ax.set(yscale="log", xlabel="days since the start (of the samples, for restarts)",
               ylabel="u$^2$ + v$^2$ (m$^2$/s$^2$)",
               title=f"{'upper' if layer == 0 else 'lower'} layer")
    axes[0].legend(fontsize=8)
    fig.suptitle(f"{bench.name}: kinetic energy, mean over the runs (stable ones) and the "
                 f"high-resolution runs {bench.test_runs}")
    return fig


def offline_transfer(comparison, benchmark: str | None = None):
    """Energy transfer spectrum of each entry's forcing at held-out states, against the truth."""
    bench = _benchmark(comparison, benchmark)
    fig, ax = plt.subplots(figsize=(7, 4.5), constrained_layout=True)
    kr, truth = bench.transfer_spectrum(bench.offline_forcing)
    ax.plot(kr, truth, **{**HIRES, "label": "true forcing"})
    for label, result, style in _runs(comparison, bench)[1:]:
        ax.plot(kr, result.transfer, label=label, **style)
    ax.axhline(0, color="0.7", lw=0.8)
    ax.set(xscale="log", xlabel="isotropic wavenumber (rad/m)", ylabel="m$^3$ s$^{-3}$",
           title=f"{bench.name}: energy transfer of the forcing at held-out states")
    ax.legend(fontsize=8)
    return fig


def loss_curves(comparison):
    """Training (and validation) loss of the entries that have a training log; None if none."""
    logged = [e for e in comparison.entries if e.history]
    if not logged:
        return None
    fig, axes = plt.subplots(1, len(logged), figsize=(4.2 * len(logged), 3.6), squeeze=False,
                             constrained_layout=True)
    for ax, entry in zip(axes[0], logged):
        steps = [h["step"] for h in entry.history]
        loss = [np.nan if h["loss"] is None else h["loss"] for h in entry.history]
        ax.plot(steps, loss, lw=0.8, label="batch loss")
        validation = [(h["step"], h["val_loss"]) for h in entry.history if h.get("val_loss")]
        if validation:
            ax.plot(*zip(*validation), "o-", label="validation")
            ax.legend(fontsize=8)
        ax.set(yscale="log", xlabel="update", title=entry.name)
    axes[0, 0].set_ylabel("loss")
    return fig


def draw_all(comparison, out: str | pathlib.Path) -> dict[str, str]:
    """Write every figure as a PNG into ``out``; ``{title: file name}`` of those drawn."""
    out = pathlib.Path(out)
    main = comparison.benchmarks[0].name
    figures = {
        "Mean similarity": ("mean_similarity.png", mean_similarity(comparison)),
        "Similarity scores": ("similarity.png", similarity_heatmap(comparison)),
        f"Spectra, {main}": ("spectra.png", spectra(comparison)),
        f"Snapshots, {main}": ("snapshots.png", snapshots(comparison)),
        f"Kinetic energy, {main}": ("kinetic_energy.png", kinetic_energy(comparison)),
        f"Offline energy transfer, {main}": ("offline_transfer.png", offline_transfer(comparison)),
        "Training loss": ("loss_curves.png", loss_curves(comparison)),
    }
    for bench in comparison.benchmarks[1:]:
        figures[f"Spectra, {bench.name}"] = (f"spectra-{bench.name}.png",
                                             spectra(comparison, bench.name))
        figures[f"Snapshots, {bench.name}"] = (f"snapshots-{bench.name}.png",
                                               snapshots(comparison, bench.name))
    written = {}
    for title, (name, fig) in figures.items():
        if fig is None:
            continue
        fig.savefig(out / name, dpi=90)
        plt.close(fig)
        written[title] = name
    return written
