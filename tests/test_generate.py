"""Reference stores: resumable builds, spec checks, pyqg-layout stores, streaming."""

import json
import os
import signal
import subprocess
import sys
import time
import warnings

import numpy as np
import pytest
import xarray as xr
import zarr

import qgzoo
from qgzoo.app import cli
from qgzoo.data import store
from qgzoo.data.store import StoreError, build_store, open_reference
from qgzoo.core.fields import FIELDS
from qgzoo.data.reference import ReferenceData
from qgzoo.core.schema import validate_component
from qgzoo.data.reference import SMALL_REFERENCE

# 32 -> 16, 3 runs, 2500 spin-up steps (3 chunks), 30 samples (2 sample chunks).
TINY = dict(hires_nx=32, lores_nx=16, n_runs=3, n_test_runs=1, spinup_steps=2500,
            n_samples=30, n_hires_snapshots=5,
            coarseners=[{"kind": "operator1"}, {"kind": "operator2"}])


@pytest.fixture(scope="module")
def tiny_store(tmp_path_factory):
    path = tmp_path_factory.mktemp("stores") / "tiny.zarr"
    build_store(qgzoo.ReferenceSpec(**TINY), path, progress=False)
    return path


def arrays(path):
    root = zarr.open_group(path, mode="r")
    names = [f"{group}/{field}" for group in ("operator1", "operator2") for field in FIELDS]
    return {name: root[name][:] for name in names + ["hires/q", "hires/ke", "hires/cfl"]}


def test_store_has_pyqg_layout_and_units(tiny_store):
    ds = xr.open_zarr(tiny_store, group="operator1", consolidated=False)
    assert set(FIELDS) <= set(ds.data_vars)
    assert ds["q"].dims == ("run", "time", "lev", "y", "x")
    assert ds["q"].shape == (3, 30, 2, 16, 16)
    assert ds["q"].attrs["units"] == "s^-1" and ds["q_forcing_total"].attrs["units"] == "s^-2"
    # Samples are taken after each interval following the spin-up: t = (2500 + i) dt.
    np.testing.assert_allclose(ds["time"].values, (2500 + np.arange(1, 31)) * 3600.0)
    np.testing.assert_allclose(ds["x"].values, (np.arange(16) + 0.5) * 1e6 / 16)
    root = zarr.open_group(tiny_store, mode="r")
    assert root.attrs["complete"] is True
    assert qgzoo.ReferenceSpec.model_validate(root.attrs["qgzoo_spec"]) == qgzoo.ReferenceSpec(**TINY)
    assert root.attrs["qgzoo_version"]
    assert root["hires/q"].shape == (3, 5, 2, 32, 32)


def test_hires_snapshots_coarsen_to_the_stored_last_samples(tiny_store):
    root = zarr.open_group(tiny_store, mode="r")
    spec = qgzoo.ReferenceSpec(**TINY)
    coarsener = spec.coarseners[0].build(spec.hires_model(), spec.lores_model())
    q_hires = root["hires/q"][1, -1]
    np.testing.assert_allclose(np.asarray(coarsener.coarsen(q_hires)),
                               root["operator1/q"][1, -1], rtol=0, atol=1e-20)


def test_sanity_checks_are_recorded(tiny_store):
    root = zarr.open_group(tiny_store, mode="r")
    checks = root.attrs["checks"]
    ke = root["hires/ke"][:].sum(axis=-1)
    # Independent estimate of the KE trend: least-squares line over the kept period.
    for run, trend in enumerate(checks["ke_trend"]):
        t = root["hires/time"][:]
        slope = np.polyfit(t, ke[run], 1)[0]
        np.testing.assert_allclose(trend, abs(slope) * (t[-1] - t[0]) / ke[run].mean(), rtol=1e-8)
    assert 0 < checks["max_cfl"] < 1 and checks["finite"] is True


def test_unspun_reference_warns_about_its_kinetic_energy_trend(tmp_path):
    spec = qgzoo.ReferenceSpec(**{**TINY, "spinup_steps": 0, "n_samples": 200,
                                  "sample_interval": 20, "coarseners": [{"kind": "operator1"}]})
    with pytest.warns(UserWarning, match="kinetic energy still drifts"):
        build_store(spec, tmp_path / "young.zarr", progress=False)


def test_store_errors_are_clear(tiny_store, tmp_path):
    with pytest.raises(StoreError, match="different spec"):
        build_store(qgzoo.ReferenceSpec(**{**TINY, "seed": 1}), tiny_store, progress=False)
    with pytest.raises(StoreError, match="no reference store"):
        open_reference(tmp_path / "missing.zarr")
    one = tmp_path / "one.zarr"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # too short to be spun up; not the point here
        build_store(qgzoo.ReferenceSpec(**{**TINY, "spinup_steps": 0, "n_samples": 6,
                                           "coarseners": [{"kind": "operator1"}]}), one, progress=False)
    with pytest.raises(StoreError, match="no data for coarsener 'operator2'"):
        open_reference(one, validate_component("coarsener", {"kind": "operator2"}))
    partial = tmp_path / "partial.zarr"
    build_store(qgzoo.ReferenceSpec(**TINY), partial, progress=False, stop_after_chunks=2)
    with pytest.raises(StoreError, match="incomplete"):
        open_reference(partial)


def test_killed_build_resumes_to_the_same_store(tiny_store, tmp_path):
    path = tmp_path / "killed.zarr"
    script = (f"import qgzoo; from qgzoo.data.store import build_store; "
              f"build_store(qgzoo.ReferenceSpec(**{TINY!r}), {str(path)!r}, progress=False)")
    process = subprocess.Popen([sys.executable, "-c", script])
    resume = path.with_name(path.name + ".resume.eqx")
    deadline = time.time() + 300
    # Kill -9 once at least one chunk is complete and before the build ends.
    while not resume.exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert resume.exists(), "the build finished before it could be killed"
    with pytest.raises(StoreError, match="incomplete"):
        open_reference(path)
    build_store(qgzoo.ReferenceSpec(**TINY), path, progress=False)
    finished, reference = arrays(path), arrays(tiny_store)
    for name, values in reference.items():
        assert np.array_equal(finished[name], values), name
    assert not resume.exists()


def test_a_store_of_other_coarseners_starts_from_the_kept_spin_up(tiny_store, monkeypatch):
    spec = qgzoo.ReferenceSpec(**{**TINY, "coarseners": [{"kind": "operator2"}],
                                  "n_samples": 20, "n_hires_snapshots": 2})
    assert store.spinup_key(spec) == store.spinup_key(qgzoo.ReferenceSpec(**TINY))
    advanced = []
    original = store._Builder._advance
    monkeypatch.setattr(store._Builder, "_advance",
                        lambda self, state, n: advanced.append(n) or original(self, state, n))
    path = tiny_store.with_name("other.zarr")
    build_store(spec, path, progress=False)
    assert advanced and max(advanced) == spec.sample_interval  # sampling only, no spin-up
    first = zarr.open_group(tiny_store, mode="r")["operator2/q"][:, :20]
    np.testing.assert_array_equal(zarr.open_group(path, mode="r")["operator2/q"][:], first)


def test_runs_are_split_into_near_equal_groups():
    assert store.run_groups(3, 2) == [range(0, 2), range(2, 3)]
    assert store.run_groups(8, 3) == [range(0, 3), range(3, 5), range(5, 8)]
    assert store.run_groups(2, 5) == [range(0, 1), range(1, 2)]


def test_training_streams_from_the_store_as_from_memory(tiny_store):
    stored = open_reference(tiny_store)
    in_memory = ReferenceData({k: np.asarray(v[:]) for k, v in stored.fields.items()},
                              stored.n_test_runs)
    experiment = qgzoo.Experiment(
        reference=TINY, network={"kind": "cnn", "channels": [4], "kernel_sizes": [3, 3]},
        loss={"kind": "state_mse"}, training={"steps": 3, "batch_size": 2, "rollout_steps": 2})
    a = qgzoo.train(experiment, data=stored, progress=False)
    b = qgzoo.train(experiment, data=in_memory, progress=False)
    assert [h["loss"] for h in a.history] == [h["loss"] for h in b.history]


def test_extra_fields_are_stored_checked_and_trained_on(tmp_path):
    """A store asked for the subgrid fluxes and momentum forcings holds them with the
    other fields; -div of the stored flux is the stored advective forcing; a network
    predicting the flux is scaled by the flux's rms and trains on q_subgrid_forcing."""
    extra = ("uq_subgrid_flux", "vq_subgrid_flux", "u_subgrid_forcing", "v_subgrid_forcing")
    spec = qgzoo.ReferenceSpec(**{**TINY, "coarseners": [{"kind": "operator1"}],
                                  "extra_fields": extra})
    assert store.store_key(spec) != store.store_key(spec.model_copy(update={"extra_fields": ()}))
    build_store(spec, tmp_path / "extra.zarr", progress=False)
    root = zarr.open_group(tmp_path / "extra.zarr", mode="r")
    assert root["operator1/uq_subgrid_flux"].attrs["units"] == "m s^-2"
    data = open_reference(tmp_path / "extra.zarr")
    assert set(data.fields) == set(FIELDS + extra)
    flux = [np.asarray(data.fields[name][:]) for name in extra[:2]]
    k = 2 * np.pi / 1e6 * np.fft.rfftfreq(16, 1 / 16)
    l = 2 * np.pi / 1e6 * np.fft.fftfreq(16, 1 / 16)[:, None]
    divergence = np.fft.irfft2(1j * k * np.fft.rfft2(flux[0]) + 1j * l * np.fft.rfft2(flux[1]),
                               s=(16, 16))
    subgrid = np.asarray(data.fields["q_subgrid_forcing"][:])
    np.testing.assert_allclose(-divergence, subgrid, rtol=0, atol=1e-9 * np.abs(subgrid).max())

    experiment = qgzoo.Experiment(
        reference=spec, network={"kind": "cnn", "channels": [4], "kernel_sizes": [3, 3]},
        loss={"kind": "forcing_mse"},
        training={"steps": 3, "batch_size": 2, "rollout_steps": 0,
                  "forcing_target": "q_subgrid_flux"})
    trained = qgzoo.train(experiment, data=data, progress=False)
    assert all(np.isfinite(h["loss"]) for h in trained.history)
    rms = [np.sqrt(np.mean(f[:2] ** 2, axis=(0, 1, 3, 4))) for f in flux]  # training runs 0, 1
    np.testing.assert_allclose(np.asarray(trained.parameterization.output_scale.std),
                               np.concatenate(rms), rtol=1e-10)
    with pytest.raises(ValueError, match="extra_fields"):
        qgzoo.Experiment(reference=TINY, training={"forcing_target": "q_subgrid_flux",
                                                   "rollout_steps": 0},
                         loss={"kind": "forcing_mse"})


def test_trains_on_a_store_written_by_hand_in_pyqg_layout(small_data, tmp_path):
    """A dataset laid out like pyqg's (written with xarray, not by qgzoo) is read and trained on."""
    runs, samples = 4, 60
    coords = {"run": np.arange(runs), "time": 3600.0 * np.arange(samples), "lev": [1, 2],
              "y": (np.arange(16) + 0.5) * 1e6 / 16, "x": (np.arange(16) + 0.5) * 1e6 / 16}
    variables = {name: (("run", "time", "lev", "y", "x"), small_data.fields[name][:runs, :samples],
                        {"units": "s^-1"}) for name in FIELDS}
    xr.Dataset(variables, coords=coords).to_zarr(tmp_path / "pyqg.zarr", mode="w",
                                                 consolidated=False)

    data = ReferenceData.from_xarray(xr.open_zarr(tmp_path / "pyqg.zarr", consolidated=False),
                                     n_test_runs=1)
    assert data.n_runs == 4 and data.n_samples == 60
    np.testing.assert_array_equal(data.split("test").windows("q", [0], [5], 3)[0],
                                  small_data.fields["q"][3, 5:8])
    experiment = qgzoo.Experiment(
        reference=SMALL_REFERENCE, network={"kind": "cnn", "channels": [4],
                                            "kernel_sizes": [3, 3]},
        loss={"kind": "forcing_mse"},
        training={"steps": 40, "batch_size": 8, "rollout_steps": 0})
    trained = qgzoo.train(experiment, data=data, progress=False)
    losses = [h["loss"] for h in trained.history]
    assert all(np.isfinite(losses)) and np.mean(losses[-10:]) < np.mean(losses[:10])


def test_data_cli_builds_and_describes(tiny_store, tmp_path, capsys):
    spec_file = tmp_path / "tiny.json"
    spec_file.write_text(json.dumps(TINY))
    out = tmp_path / "cli.zarr"
    assert cli.main(["data", "build", str(spec_file), "--out", str(out), "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "complete" in text and "train [0, 1], test [2]" in text and "max CFL" in text
    for name, values in arrays(tiny_store).items():
        assert np.array_equal(arrays(out)[name], values), name
    assert cli.main(["data", "info", str(tmp_path / "nothing.zarr")]) == 2
    assert "no reference store" in capsys.readouterr().err
    store.describe_store(out)  # a complete store describes itself without error
