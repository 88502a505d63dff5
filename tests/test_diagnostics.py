"""The spectral energy budget: against pyqg itself, by hand (closure), and Parseval."""

import subprocess
from pathlib import Path

import jax
import numpy as np
import pytest

from qgzoo.physics import budget
from qgzoo.physics import qg

PYQG_PYTHON = Path(__file__).resolve().parents[1] / ".venv-pyqg" / "bin" / "python"
PHYSICS = qg.PRESETS["eddy"]
NX = 32


def smooth_field(nx, seed, rms, cutoff=None):
    """A random real (2, nx, nx) field with power around wavenumber 6, none at |k| or |l| >= cutoff.

    The default cutoff, nx // 2, empties the Nyquist modes, whose derivatives
    irfft drops, so real-space and spectral energies agree to round-off.
    """
    rng = np.random.default_rng(seed)
    cutoff = nx // 2 if cutoff is None else cutoff
    k, l = np.meshgrid(np.fft.rfftfreq(nx, 1 / nx), np.fft.fftfreq(nx, 1 / nx))
    kappa = np.hypot(k, l)
    amplitude = kappa * np.exp(-(kappa / 6.0) ** 2) * (k < cutoff) * (np.abs(l) < cutoff)
    noise = rng.standard_normal((2, nx, nx // 2 + 1)) + 1j * rng.standard_normal((2, nx, nx // 2 + 1))
    field = np.fft.irfftn(amplitude * noise, axes=(-2, -1), s=(nx, nx))
    return field / field.std(axis=(-2, -1), keepdims=True) * np.asarray(rms)[:, None, None]


@pytest.fixture(scope="module")
def model():
    return qg.make_model(PHYSICS, NX)


@pytest.fixture(scope="module")
def q():
    return smooth_field(NX, 0, [1e-6, 3e-7])  # PV anomaly, 1/s


@pytest.fixture(scope="module")
def q_forcing():
    return smooth_field(NX, 1, [2e-12, 5e-13])  # a subgrid dq/dt, 1/s^2


@pytest.fixture(scope="module")
def spectra(model, q, q_forcing):
    return {name: np.asarray(value)
            for name, value in budget.budget_spectra(model, q, q_forcing).items()}


def total_energy(model, q):
    """KE + APE per unit mass (m^2/s^2), from real-space velocities and streamfunctions."""
    full = model.get_full_state(qg.state_from_q(model, q))
    weights = np.asarray(model.Hi / model.H)
    u, v, p = np.asarray(full.u), np.asarray(full.v), np.asarray(full.p)
    kinetic = 0.5 * np.sum(weights * np.mean(u ** 2 + v ** 2, axis=(-2, -1)))
    potential = 0.5 * model.del1 * model.del2 / model.rd ** 2 * np.mean((p[0] - p[1]) ** 2)
    return kinetic + potential


def budget_total(spectra):
    return sum(float(budget.spectral_total(spectra[name])) for name in budget.BUDGET_TERMS)


# pyqg, run on the same state in its own environment. The diagnostics are those
# pyqg accumulates during a step: invert, tendencies, parameterization, then
# _increment_diagnostics (which also computes the derived fields).
PYQG_SCRIPT = """
import sys, numpy as np, pyqg
from pyqg.diagnostic_tools import calc_ispec
data = np.load(sys.argv[1])
physics = {key: float(data[key]) for key in data.files if key not in ("q", "q_forcing")}
forcing = data["q_forcing"]
m = pyqg.QGModel(nx=data["q"].shape[-1], log_level=0, q_parameterization=lambda m: forcing, **physics)
m.q = data["q"]
m._invert(); m._do_advection(); m._do_friction(); m._do_q_subgrid_parameterization()
m._increment_diagnostics()
out = {name: m.get_diagnostic(name) for name in sys.argv[3].split(",")}
for name in ("KEspec", "APEflux"):
    spec = out[name][0] if name == "KEspec" else out[name]
    for averaging in (True, False):
        for truncate in (True, False):
            kr, ispec = calc_ispec(m, spec, averaging=averaging, truncate=truncate)
            out[f"ispec_{name}_{averaging}_{truncate}"] = ispec
            out[f"kr_{truncate}"] = kr
np.savez(sys.argv[2], **out)
"""


@pytest.fixture(scope="module")
def pyqg_results(q, q_forcing, tmp_path_factory):
    # Built by `make pyqg-env`; the stamp is written only once pyqg imports.
    if not PYQG_PYTHON.parents[1].joinpath(".installed").exists():
        pytest.skip(f"no reference pyqg environment at {PYQG_PYTHON.parents[1]}")
    folder = tmp_path_factory.mktemp("pyqg")
    np.savez(folder / "in.npz", q=q, q_forcing=q_forcing, **PHYSICS)
    names = ",".join(("KEspec", "Ensspec") + budget.BUDGET_TERMS)
    subprocess.run([str(PYQG_PYTHON), "-c", PYQG_SCRIPT, str(folder / "in.npz"),
                    str(folder / "out.npz"), names], check=True, timeout=120)
    with np.load(folder / "out.npz") as out:
        return dict(out)


def relative_error(ours, reference):
    return np.max(np.abs(np.asarray(ours) - reference)) / np.max(np.abs(reference))


@pytest.mark.parametrize("name", ("KEspec", "Ensspec") + budget.BUDGET_TERMS)
def test_budget_spectra_match_pyqg(spectra, pyqg_results, name):
    assert spectra[name].shape == pyqg_results[name].shape
    assert relative_error(spectra[name], pyqg_results[name]) < 1e-10


@pytest.mark.parametrize("averaging", (True, False))
@pytest.mark.parametrize("truncate", (True, False))
def test_isotropic_spectrum_matches_pyqg_calc_ispec(model, spectra, pyqg_results, averaging, truncate):
    for name, spec in (("KEspec", spectra["KEspec"][0]), ("APEflux", spectra["APEflux"])):
        kr, ispec = budget.isotropic_spectrum(model, spec, averaging=averaging, truncate=truncate)
        np.testing.assert_allclose(kr, pyqg_results[f"kr_{truncate}"], rtol=1e-14)
        assert relative_error(ispec, pyqg_results[f"ispec_{name}_{averaging}_{truncate}"]) < 1e-10


def test_budget_closes_on_one_euler_step(model, q, q_forcing, spectra):
    # E is quadratic in q, so for q1 = q + dt r the forward difference is exactly
    # dE/dt + dt E(r), up to float64 round-off in E (bounded by 1e-14 E / dt).
    # The budget leaves out only pyqg's exponential filter, as does the
    # unfiltered tendency, and is off by one thing: pyqg's APEflux advects the
    # thickness with the depth-mean flow, equal to the true stretching term only
    # up to aliasing of the grid product, so its net is not exactly zero.
    dt = 1.0  # s
    rate = np.asarray(qg.tendency(model, q)) + q_forcing
    forward = (total_energy(model, q + dt * rate) - total_energy(model, q)) / dt
    residual = forward - dt * total_energy(model, rate) - budget_total(spectra)
    roundoff = 1e-14 * total_energy(model, q) / dt
    assert abs(residual + budget.spectral_total(spectra["APEflux"])) <= roundoff
    assert abs(residual) < 1e-5 * abs(budget_total(spectra))  # 5e-6 seen


def test_friction_and_kinetic_energy_match_real_space(model, q, spectra):
    full = model.get_full_state(qg.state_from_q(model, q))
    speed2 = np.mean(np.asarray(full.u) ** 2 + np.asarray(full.v) ** 2, axis=(-2, -1))
    np.testing.assert_allclose(budget.spectral_total(spectra["KEspec"]), speed2, rtol=1e-12)
    bottom_drag = -model.rek * float(model.Hi[-1] / model.H) * speed2[-1]
    np.testing.assert_allclose(budget.spectral_total(spectra["KEfrictionspec"]), bottom_drag, rtol=1e-12)


@pytest.mark.parametrize("name", ("KEflux", "APEflux"))
def test_nonlinear_transfers_conserve_energy(model, name):
    # For a field band-limited to a third of the grid (the 2/3 rule) aliases of
    # the quadratic products miss the field's own modes, so both transfers sum
    # to zero up to round-off.
    dealiased = smooth_field(NX, 2, [1e-6, 3e-7], cutoff=NX // 3)
    spec = budget.budget_spectra(model, dealiased)[name]
    net, gross = budget.spectral_total(spec), budget.spectral_total(np.abs(spec))
    assert abs(net) < 1e-12 * gross


def test_ape_flux_net_is_aliasing_only(spectra):
    # KEflux vanishes pointwise (psi J(psi, xi) = 0 on the grid); APEflux's
    # tau J(psi_mean, tau) does only after integration by parts, which aliasing
    # spoils: here 7e-5 of its magnitude.
    for name, bound in (("KEflux", 1e-12), ("APEflux", 1e-3)):
        net = budget.spectral_total(spectra[name])
        assert abs(net) < bound * budget.spectral_total(np.abs(spectra[name]))


def test_parameterization_parts_sum_to_its_energy_input(model, q, q_forcing, spectra):
    # Their sum is -sum_i H_i/H <psi_i dq_i>: pyqg's total `paramspec`.
    full = model.get_full_state(qg.state_from_q(model, q))
    weights = np.asarray(model.Hi / model.H)
    direct = -np.sum(weights * np.mean(np.asarray(full.p) * q_forcing, axis=(-2, -1)))
    parts = spectra["paramspec_KEflux"] + spectra["paramspec_APEflux"]
    np.testing.assert_allclose(budget.spectral_total(parts), direct, rtol=1e-10)


def test_isotropic_spectrum_parseval(model, q, spectra):
    full = model.get_full_state(qg.state_from_q(model, q))
    speed2 = np.mean(np.asarray(full.u) ** 2 + np.asarray(full.v) ** 2, axis=(-2, -1))
    kr, summed = budget.isotropic_spectrum(model, spectra["KEspec"], averaging=False, truncate=False)
    np.testing.assert_allclose(np.sum(summed, axis=-1) * (kr[1] - kr[0]), speed2, rtol=1e-12)
    # pyqg's default (a bin's mean times its annulus area, truncated at the
    # inscribed circle) only estimates the integral: an annulus holds more or
    # fewer lattice points than its area says, a large error with few points per
    # bin at nx = 32 (-4% and -7% seen; truncation itself costs 2e-7 here).
    kr, averaged = budget.isotropic_spectrum(model, spectra["KEspec"])
    np.testing.assert_allclose(np.sum(averaged, axis=-1) * (kr[1] - kr[0]), speed2, rtol=0.1)


def test_budget_spectra_trace_under_jit_and_vmap(model, q, q_forcing, spectra):
    batch = np.stack([q, 2 * q])
    batched = jax.jit(jax.vmap(budget.budget_spectra, in_axes=(None, 0, None)))(model, batch, q_forcing)
    for name, value in spectra.items():
        np.testing.assert_allclose(batched[name][0], value, rtol=1e-12, atol=1e-12 * np.abs(value).max())
    np.testing.assert_allclose(batched["KEspec"][1], 4 * spectra["KEspec"], rtol=1e-12)
    without = budget.budget_spectra(model, q)
    assert not np.any(np.asarray(without["paramspec_KEflux"]))
