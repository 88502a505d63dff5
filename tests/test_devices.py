"""One device, two devices and two processes (jax.distributed on localhost) give the same
store, the same training and the same scores; a process killed mid-job stops the other
with a clear error, and the job resumes."""

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time

import equinox as eqx
import jax
import numpy as np
import pytest
import zarr

from qgzoo.core import devices
from qgzoo.data import store
from qgzoo.data.reference import ReferenceSpec
from qgzoo.evaluation.benchmark import Benchmark
from qgzoo.training.trained import load

#: A reference small enough to build in seconds, long enough to be killed while it runs
#: (6 spin-up chunks of 1000 steps).
REFERENCE = {"config": "eddy", "hires_nx": 32, "lores_nx": 16, "n_runs": 4, "n_test_runs": 1,
             "spinup_steps": 6000, "n_samples": 12, "sample_interval": 2,
             "n_hires_snapshots": 2, "coarseners": [{"kind": "operator1"}]}
#: An online training through the solver: 3 updates of 2 windows of 2 steps.
EXPERIMENT = {"reference": REFERENCE, "coarsener": {"kind": "operator1"},
              "network": {"kind": "cnn", "channels": [4], "kernel_sizes": [3, 3]},
              "loss": {"kind": "state_mse"}, "stepper": {"kind": "ab3", "dt": 3600.0},
              "training": {"steps": 3, "batch_size": 2, "rollout_steps": 2}}
HEARTBEAT = 10  # seconds


def _free_port() -> int:
    with contextlib.closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(args, folder, *, processes=1, devices_per_process=1):
    """The ``qgzoo`` command as a job of ``processes`` processes on localhost, started."""
    env = dict(os.environ, QGZOO_CACHE=str(folder / "cache"),
               QGZOO_DEVICES=str(devices_per_process))
    env.pop("QGZOO_STORES", None)
    port = _free_port()
    jobs = []
    for index in range(processes):
        layout = [] if processes == 1 else [
            "--processes", str(processes), "--process-id", str(index),
            "--coordinator", f"localhost:{port}", "--heartbeat", str(HEARTBEAT)]
        jobs.append(subprocess.Popen([sys.executable, "-m", "qgzoo.app.cli", *layout, *args],
                                     cwd=folder, env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True))
    return jobs


def run(args, folder, **layout):
    """Run the job to its end; every process must succeed. The main process's stdout."""
    jobs = start(args, folder, **layout)
    outputs = [job.communicate(timeout=600) for job in jobs]
    for job, (_, err) in zip(jobs, outputs):
        assert job.returncode == 0, err[-3000:]
    return outputs[0][0]


def arrays(path) -> dict:
    root = zarr.open_group(str(path), mode="r")
    return {f"{g}/{name}": np.asarray(root[g][name][:]) for g in ("operator1", "hires")
            for name in root[g].array_keys()}


def assert_same_arrays(actual: dict, desired: dict):
    """Equal arrays, each to 1e-12 of its largest magnitude: a forcing is the difference
    of two nearly equal tendencies, so its smallest values carry the rounding of the
    terms (an FFT split over devices sums in another order), not their own."""
    assert actual.keys() == desired.keys()
    for name, values in desired.items():
        np.testing.assert_allclose(actual[name], values, rtol=1e-12,
                                   atol=1e-12 * np.abs(values).max(), err_msg=name)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("devices")
    (folder / "reference.json").write_text(json.dumps(REFERENCE))
    (folder / "experiment.json").write_text(json.dumps(EXPERIMENT))
    return folder


@pytest.fixture(scope="module")
def one_process_store(folder):
    """The store built by one process on one device, where training looks for it."""
    path = folder / "cache" / f"reference-{store.store_key(ReferenceSpec(**REFERENCE))}.zarr"
    run(["data", "build", "reference.json", "--out", str(path)], folder)
    return path


@pytest.mark.slow
def test_a_store_built_on_two_devices_equals_one_built_on_one(folder, one_process_store):
    run(["data", "build", "reference.json", "--out", "devices.zarr"], folder,
        devices_per_process=2)
    one, two = arrays(one_process_store), arrays(folder / "devices.zarr")
    assert "operator1/q_forcing_total" in one
    assert_same_arrays(two, one)


@pytest.mark.slow
def test_a_killed_process_stops_the_other_and_the_job_resumes_to_the_same_store(
        folder, one_process_store):
    jobs = start(["data", "build", "reference.json", "--out", "two.zarr"], folder, processes=2)
    # Process 1 builds runs 2 and 3; kill it once it has saved its first chunk.
    resume = folder / "two.zarr.runs-2-4.resume.eqx"
    deadline = time.monotonic() + 300
    while not resume.exists() and jobs[1].poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert jobs[1].poll() is None, "process 1 ended before it could be killed"
    jobs[1].send_signal(signal.SIGKILL)
    killed = time.monotonic()
    _, err = jobs[0].communicate(timeout=HEARTBEAT + 120)
    jobs[1].communicate()
    assert jobs[0].returncode != 0
    assert time.monotonic() - killed < HEARTBEAT + 60
    # qgzoo's own line when the other is missed at a barrier, else the runtime's.
    assert "another process stopped" in err or "another task died" in err, err[-3000:]
    assert not zarr.open_group(str(folder / "two.zarr"), mode="r").attrs["complete"]

    run(["data", "build", "reference.json", "--out", "two.zarr"], folder, processes=2)
    assert_same_arrays(arrays(folder / "two.zarr"), arrays(one_process_store))


def training(folder, out, **layout):
    """The losses and the trained weights of ``EXPERIMENT`` trained in ``out``."""
    run(["train", "experiment.json", "--no-progress", "--out", out], folder, **layout)
    log = [json.loads(line) for line in (folder / out / "log.jsonl").read_text().splitlines()]
    weights = jax.tree.leaves(eqx.filter(load(folder / out).parameterization, eqx.is_array))
    return [record["loss"] for record in log], weights


@pytest.fixture(scope="module")
def trained_on_one(folder, one_process_store):
    """``training`` by one process on one device, in the folder one-process."""
    return training(folder, "one-process")


@pytest.mark.slow
def test_training_on_two_processes_and_two_devices_equals_training_on_one(
        folder, trained_on_one):
    losses, weights = trained_on_one
    assert len(losses) == 3 and all(np.isfinite(losses)) and losses[-1] < losses[0]
    for out, layout in [("two-processes", dict(processes=2)),
                        ("two-devices", dict(devices_per_process=2))]:
        other_losses, other_weights = training(folder, out, **layout)
        np.testing.assert_allclose(other_losses, losses, rtol=1e-12, err_msg=out)
        for mine, theirs in zip(other_weights, weights, strict=True):
            np.testing.assert_allclose(mine, theirs, rtol=1e-10, atol=1e-12, err_msg=out)


@pytest.mark.slow
def test_a_comparison_on_two_processes_scores_as_on_one(folder, one_process_store,
                                                        trained_on_one):
    spec = ReferenceSpec.model_validate(REFERENCE)
    Benchmark.from_store("tiny", spec, {"kind": "operator1"}, str(one_process_store),
                         progress=False).save(folder / "tiny.npz")
    compare = ["compare", "--benchmark", "tiny.npz", "--no-figures", "one-process"]
    run([*compare, "--out", "compare-one"], folder)
    run([*compare, "--out", "compare-two"], folder, processes=2)
    one = (folder / "compare-one" / "scores.csv").read_text().splitlines()
    two = (folder / "compare-two" / "scores.csv").read_text().splitlines()
    assert len(one) > 1 and one == two


LONG_RUN = """
import sys, jax, numpy as np
from qgzoo.core import devices
devices.configure_from_environment()
from pyqg_jax.steppers import AB3Stepper
from qgzoo.components.networks import NoClosure
from qgzoo.physics import qg
from qgzoo.simulate.long_run import random_initial_q, run_long
model = qg.make_model(qg.PRESETS["eddy"], 16)
q0 = random_initial_q(model, jax.random.split(jax.random.key(0), int(sys.argv[2])))
run = run_long(model, NoClosure(), AB3Stepper(dt=3600.0), q0, n_steps=120, average_from=60,
               average_every=10, snapshot_every=30, checkpoint=__import__("pathlib").Path(
                   sys.argv[1] + ".checkpoint.npz"))
if devices.is_main():
    np.savez(sys.argv[1], ke=run.ke, snapshots=run.snapshots, blowup=run.blowup_step,
             **{"budget/" + k: v for k, v in run.budget.items()})
"""


@pytest.mark.slow
@pytest.mark.parametrize("n_runs", [3, 1])
def test_long_runs_on_two_processes_equal_those_on_one(tmp_path, n_runs):
    """Runs split 2 + 1 over the processes, and 1 run stepped by both."""
    results = {}
    for processes in (1, 2):
        port, out = _free_port(), tmp_path / f"long-{processes}.npz"
        jobs = [subprocess.Popen(
            [sys.executable, "-c", LONG_RUN, str(out), str(n_runs)], cwd=tmp_path,
            env=dict(os.environ, QGZOO_PROCESSES=str(processes), QGZOO_PROCESS_ID=str(index),
                     QGZOO_COORDINATOR=f"localhost:{port}"),
            stderr=subprocess.PIPE, text=True) for index in range(processes)]
        for job in jobs:
            _, err = job.communicate(timeout=600)
            assert job.returncode == 0, err[-3000:]
        with np.load(out) as saved:
            results[processes] = dict(saved)
    assert results[1]["ke"].shape[0] == n_runs and len(results[1]) > 4
    assert_same_arrays(results[2], results[1])
    assert not list(tmp_path.glob("*checkpoint*")), "finished runs leave no checkpoint"


def test_process_runs_split_an_ensemble_into_near_equal_groups(monkeypatch):
    monkeypatch.setattr(devices, "process_count", lambda: 3)
    for n_runs in (3, 8, 10):
        groups = [list(devices.process_runs(n_runs, index)) for index in range(3)]
        assert sum(groups, []) == list(range(n_runs))
        assert max(map(len, groups)) - min(map(len, groups)) <= 1
    # fewer runs than processes: every process steps them all
    assert list(devices.process_runs(2, 1)) == [0, 1]


def test_bad_layouts_are_refused_by_name(tmp_path):
    def fails(*args):
        done = subprocess.run([sys.executable, "-m", "qgzoo.app.cli", *args, "plugins"],
                              cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert done.returncode == 2
        return done.stderr
    assert "coordinator" in fails("--processes", "2")
    assert "not in [0, 2)" in fails("--processes", "2", "--process-id", "2",
                                    "--coordinator", "localhost:1")
    assert "at least 1" in fails("--devices", "0")
