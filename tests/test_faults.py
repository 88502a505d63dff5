"""Nothing lost, every fault named: each fault injected, the message and exit status
checked, and that nothing else was touched. Reference stores' faults are in
test_store_faults.py."""

import hashlib
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

import equinox as eqx
import jax
import numpy as np
import pytest

import qgzoo
from qgzoo.app import cli
from qgzoo.core import files, plugins
from qgzoo.data.reference import SMALL_REFERENCE
from qgzoo.evaluation import comparison as comparing, report, results
from qgzoo.evaluation.benchmark import Benchmark
from qgzoo.training import trained

TINY_CNN = {"kind": "cnn", "channels": [4], "kernel_sizes": [3, 3]}


def spec(**training) -> dict:
    """A tiny offline experiment on the small reference, as JSON."""
    training = {"steps": 2, "batch_size": 2, "rollout_steps": 0, **training}
    return json.loads(qgzoo.Experiment(reference=SMALL_REFERENCE, network=TINY_CNN,
                                       loss={"kind": "forcing_mse"},
                                       training=training).to_json())


def write_spec(path: pathlib.Path, **training) -> pathlib.Path:
    path.write_text(json.dumps(spec(**training)))
    return path


def snapshot(folder: pathlib.Path) -> dict[str, str]:
    """SHA-256 of every file under ``folder``, by relative path."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def run(capsys, *argv) -> tuple[int, str, str]:
    status = cli.main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def one_error(err: str) -> str:
    """The error message of a command's stderr: one ``error:`` message, no traceback."""
    assert "Traceback" not in err
    messages = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(messages) == 1, err
    return err[err.index("error: "):]


# --- trained folders -----------------------------------------------------------------

def test_another_experiment_cannot_overwrite_a_trained_folder(small_data, tmp_path, capsys):
    out = tmp_path / "out"
    a = write_spec(tmp_path / "a.json", steps=2)
    b = write_spec(tmp_path / "b.json", steps=3)
    assert run(capsys, "train", str(a), "--out", str(out), "--no-progress")[0] == 0
    before = snapshot(out)
    status, _, err = run(capsys, "train", str(b), "--out", str(out), "--no-progress")
    assert status == 2
    assert one_error(err).startswith(
        f"error: {out} holds the results of a different experiment (training.steps: 2 -> 3)")
    assert "--overwrite" in err
    assert snapshot(out) == before
    assert run(capsys, "train", str(b), "--out", str(out), "--no-progress", "--overwrite")[0] == 0
    assert [h["step"] for h in trained.read_log(out)] == [0, 1, 2]
    assert json.loads((out / "experiment.json").read_text())["training"]["steps"] == 3


def test_a_folder_of_other_files_is_not_trained_into(small_data, tmp_path, capsys):
    out = tmp_path / "notes"
    out.mkdir()
    (out / "thesis.tex").write_text("months of work")
    status, _, err = run(capsys, "train", str(write_spec(tmp_path / "a.json")), "--out", str(out))
    assert status == 2 and "is not empty and is not a trained folder" in one_error(err)
    assert snapshot(out) == {"thesis.tex": hashlib.sha256(b"months of work").hexdigest()}


def test_an_output_that_is_a_file_is_refused_by_train_and_compare(tmp_path, capsys):
    target = tmp_path / "file"
    target.write_text("keep me")
    experiment = str(write_spec(tmp_path / "a.json"))
    status, _, err = run(capsys, "train", experiment, "--out", str(target))
    assert status == 2 and one_error(err) == f"error: {target} is a file, not a folder; " \
                                             f"choose another output folder\n"
    status, _, err = run(capsys, "compare", "none", "--out", str(target))
    assert status == 2 and f"{target} is a file, not a folder" in one_error(err)
    assert target.read_text() == "keep me"


def test_an_output_folder_that_cannot_be_made_is_named(small_data, tmp_path, capsys):
    """A file where a parent folder should be is named (a read-only folder takes the
    operating system's refusal, one line too, but root may write anywhere)."""
    blocker = tmp_path / "blocker"
    blocker.write_text("keep me")
    status, _, err = run(capsys, "train", str(write_spec(tmp_path / "a.json")),
                         "--out", str(blocker / "run"), "--no-progress")
    assert status == 2
    assert one_error(err) == (f"error: cannot use {blocker / 'run'}: {blocker} is a file, not "
                              f"a folder\n")
    assert blocker.read_text() == "keep me"


def test_a_second_process_on_one_folder_is_told_who_holds_it(small_data, tmp_path, capsys):
    out = tmp_path / "out"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom qgzoo.core import files\n"
         "with files.locked(sys.argv[1]):\n    print('locked', flush=True)\n    time.sleep(60)",
         str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        status, _, err = run(capsys, "train", str(write_spec(tmp_path / "a.json")),
                             "--out", str(out), "--no-progress")
        assert status == 2
        assert one_error(err).startswith(
            f"error: {out} is in use by another qgzoo process (pid {holder.pid} on ")
        assert not out.exists()
    finally:
        holder.kill()
        holder.wait()
    # The lock dies with its holder, however it ends.
    assert run(capsys, "train", str(write_spec(tmp_path / "a.json")), "--out", str(out),
               "--no-progress")[0] == 0
    assert not files.lock_path(out).exists()


# --- weights, checkpoints and logs -----------------------------------------------------

@pytest.mark.filterwarnings("ignore:overflow encountered in cast")
def test_an_update_that_overflows_the_weights_is_skipped(small_data, tmp_path, capsys):
    """SGD at 1e300 makes float32 weights infinite with a finite loss: the update is skipped,
    the saved weights stay those drawn from the seed, and the command reports it."""
    experiment = spec(steps=3)
    experiment["optimizer"] = {"name": "sgd", "learning_rate": 1e300}
    path = tmp_path / "huge.json"
    path.write_text(json.dumps(experiment))
    status, out_text, err = run(capsys, "train", str(path), "--out", str(tmp_path / "out"),
                                "--no-progress")
    assert status == 0, err
    assert "final loss: n/a (update 2 was skipped)" in out_text
    assert "skipped updates: 3" in out_text
    log = trained.read_log(tmp_path / "out")
    assert [h["finite"] for h in log] == [False] * 3 and all(np.isfinite(h["seconds"]) for h in log)
    saved = qgzoo.load(tmp_path / "out").parameterization
    start = trained.skeleton(qgzoo.Experiment.model_validate(experiment).network,
                             "q_forcing_total", seed=0)
    saved_arrays = [np.asarray(x) for x in jax.tree.leaves(eqx.filter(saved, eqx.is_array))]
    assert all(np.isfinite(x).all() for x in saved_arrays)
    # Weights as drawn (the scales are fitted to the data, so compare the weights only).
    drawn = [np.asarray(x) for x in jax.tree.leaves(eqx.filter(start, qgzoo.trainable(start)))]
    kept = [np.asarray(x) for x in jax.tree.leaves(eqx.filter(saved, qgzoo.trainable(saved)))]
    assert all(np.array_equal(x, y) for x, y in zip(drawn, kept)) and drawn


@pytest.fixture(scope="module")
def interrupted_once(small_data, tmp_path_factory):
    """A training stopped after 2 of 4 updates, with a checkpoint after each."""
    experiment = qgzoo.Experiment.model_validate(spec(steps=4, checkpoint_every=1))
    out = tmp_path_factory.mktemp("interrupted") / "out"
    qgzoo.train(experiment, out, progress=False, stop_after=2)
    return experiment, out


@pytest.fixture
def interrupted(interrupted_once, tmp_path):
    """A copy of ``interrupted_once``'s folder, to damage."""
    experiment, folder = interrupted_once
    out = tmp_path / "out"
    shutil.copytree(folder, out)
    return experiment, out


def test_a_checkpoint_overwritten_with_other_bytes_is_refused(interrupted, capsys):
    experiment, out = interrupted
    checkpoint = out / "checkpoint.eqx"
    size = checkpoint.stat().st_size
    checkpoint.write_bytes(np.full(size // 4, 1e30, np.float32).tobytes().ljust(size, b"\0"))
    before = snapshot(out)
    with pytest.raises(qgzoo.UserError) as caught:
        qgzoo.train(experiment, out, progress=False)
    assert str(caught.value).startswith(f"{checkpoint} does not match its checksum")
    assert snapshot(out) == before


def test_weights_that_are_truncated_damaged_or_infinite_are_refused_with_their_path(
        interrupted, tmp_path):
    experiment, out = interrupted
    qgzoo.train(experiment, out, progress=False)
    weights = out / "parameterization.eqx"
    good = weights.read_bytes()
    weights.write_bytes(good[:len(good) // 2])
    with pytest.raises(qgzoo.UserError, match=f"^{weights} does not match its checksum"):
        qgzoo.load(out)
    files.checksum_path(weights).unlink()  # without a checksum: the bytes themselves
    with pytest.raises(qgzoo.UserError, match=f"^{weights} is truncated or does not hold "):
        qgzoo.load(out)
    infinite = jax.tree.map(lambda x: x * np.inf if eqx.is_inexact_array(x) else x,
                            _loaded_skeleton(experiment, good, tmp_path))
    eqx.tree_serialise_leaves(weights, infinite)
    with pytest.raises(qgzoo.UserError, match=f"^{weights} holds non-finite numbers"):
        qgzoo.load(out)


def _loaded_skeleton(experiment, weights_bytes, tmp_path):
    path = tmp_path / "copy.eqx"
    path.write_bytes(weights_bytes)
    like = trained.skeleton(experiment.network, experiment.training.forcing_target)
    return eqx.tree_deserialise_leaves(path, like)


def test_a_truncated_checkpoint_without_its_checksum_is_refused_with_its_path(interrupted):
    experiment, out = interrupted
    checkpoint = out / "checkpoint.eqx"
    files.checksum_path(checkpoint).unlink()
    checkpoint.write_bytes(checkpoint.read_bytes()[:100])
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(qgzoo.UserError, match=f"^{checkpoint} is truncated or does not hold "
                                              f"what it should here"):
        qgzoo.train(experiment, out, progress=False)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_a_comparison_into_a_folder_in_use_is_refused(tmp_path):
    out = tmp_path / "compare"
    with files.locked(out):
        with pytest.raises(qgzoo.UserError, match=f"^{out} is in use by another qgzoo process "
                                                  r"\(pid \d+ on "):
            qgzoo.compare(["none"], ["eddy-128-32"], out=out, progress=False)
    assert not out.exists()


def test_a_torn_last_log_line_is_dropped_and_training_resumes(interrupted):
    experiment, out = interrupted
    with (out / "log.jsonl").open("a") as log:
        log.write('{"step": 2, "loss": 0.1')  # killed mid-write
    result = qgzoo.train(experiment, out, progress=False)
    assert [h["step"] for h in result.history] == [0, 1, 2, 3]
    assert [json.loads(line)["step"] for line in (out / "log.jsonl").read_text().splitlines()] \
        == [0, 1, 2, 3]


def test_a_damaged_line_inside_the_log_is_named(interrupted):
    experiment, out = interrupted
    lines = (out / "log.jsonl").read_text().splitlines()
    (out / "log.jsonl").write_text("\n".join(["{oops", *lines[1:]]) + "\n")
    with pytest.raises(qgzoo.UserError, match=r"log.jsonl, line 1, is not a JSON record"):
        qgzoo.train(experiment, out, progress=False)


def test_a_write_killed_between_its_checksum_and_its_bytes_still_verifies(tmp_path,
                                                                         monkeypatch):
    """checked_write records the new checksum, keeping the old one, before it replaces
    the file: a process killed in between leaves the old bytes, which still verify."""
    path = tmp_path / "w.bin"
    files.checked_write(path, lambda tmp: tmp.write_bytes(b"old"))
    replace = os.replace

    def killed_before_the_data(src, dst):
        if pathlib.Path(dst) == path:
            raise KeyboardInterrupt  # as a kill at that moment
        replace(src, dst)

    monkeypatch.setattr(files.os, "replace", killed_before_the_data)
    with pytest.raises(KeyboardInterrupt):
        files.checked_write(path, lambda tmp: tmp.write_bytes(b"new"))
    monkeypatch.setattr(files.os, "replace", replace)
    assert path.read_bytes() == b"old" and files.verified(path) == path
    assert files.checksum_path(path).read_text().split() == [
        hashlib.sha256(b"new").hexdigest(), hashlib.sha256(b"old").hexdigest()]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.bin", "w.bin.sha256"]
    files.checked_write(path, lambda tmp: tmp.write_bytes(b"new"))
    assert files.verified(path) and path.read_bytes() == b"new"
    path.write_bytes(b"bad")
    with pytest.raises(qgzoo.UserError, match="does not match its checksum"):
        files.verified(path)


# --- the zoo ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["../elsewhere", "ABSOLUTE", "a/b", ".", ".."])
def test_zoo_names_never_reach_outside_the_zoo(tmp_path, monkeypatch, capsys, name):
    registry = tmp_path / "registry"
    registry.mkdir()
    monkeypatch.setenv(files.ENV_REGISTRY, str(registry))
    elsewhere = tmp_path / "elsewhere"  # a trained folder outside the zoo
    elsewhere.mkdir()
    (elsewhere / "experiment.json").write_text(json.dumps(spec()))
    (elsewhere / "parameterization.eqx").write_bytes(b"weights")
    (elsewhere / "log.jsonl").write_text('{"step": 0}\n')
    before = snapshot(elsewhere)
    name = str(elsewhere) if name == "ABSOLUTE" else name
    for command in (["zoo", "build", name], ["zoo", "show", name],
                    ["zoo", "build", "--no-train", name]):
        status, _, err = run(capsys, *command)
        assert status == 2 and one_error(err).startswith(f"error: no zoo entry {name!r}")
    assert snapshot(elsewhere) == before


def test_zoo_build_checks_every_name_before_touching_any_entry(tmp_path, monkeypatch, capsys):
    registry = tmp_path / "registry"
    (registry / "real").mkdir(parents=True)
    (registry / "real" / "experiment.json").write_text(json.dumps(spec()))
    monkeypatch.setenv(files.ENV_REGISTRY, str(registry))
    before = snapshot(registry)
    status, _, err = run(capsys, "zoo", "build", "real", "missing")
    assert status == 2 and "no zoo entry 'missing'; entries: real" in one_error(err)
    assert snapshot(registry) == before


def test_compare_says_why_a_name_is_not_a_network_kind(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(files.ENV_REGISTRY, str(tmp_path / "registry"))
    status, _, err = run(capsys, "compare", "smagorinsky", "--out", str(tmp_path / "out"))
    assert status == 2
    assert one_error(err).startswith(
        "error: 'smagorinsky' is neither a zoo entry (none), a folder nor a JSON file; as a "
        "network kind: unknown network kind 'smagorinsky'; installed kinds: ")
    assert not (tmp_path / "out").exists()


def test_an_entry_is_compared_without_the_plugins_of_its_training_loss(tmp_path):
    """Compare runs the network and the stepper: a loss kind not installed here (the
    plugin it was trained with) does not stop it, while a bad network is named."""
    folder = tmp_path / "entry"
    folder.mkdir()
    experiment = spec()
    experiment["network"] = {"kind": "none"}
    experiment["loss"] = {"kind": "not_installed_loss"}
    (folder / "experiment.json").write_text(json.dumps(experiment))
    entry = comparing.resolve(str(folder))
    assert isinstance(entry.parameterization, qgzoo.NoClosure)
    assert entry.stepper == experiment["stepper"]
    experiment["network"] = {"kind": "cnn", "channels": "x"}
    (folder / "experiment.json").write_text(json.dumps(experiment))
    with pytest.raises(qgzoo.UserError, match=f"^{folder / 'experiment.json'} is not a valid "
                                              f"spec:\n  network.channels: "):
        comparing.resolve(str(folder))
    experiment["netwrok"] = experiment.pop("network")  # a typo is not a default network
    (folder / "experiment.json").write_text(json.dumps(experiment))
    with pytest.raises(qgzoo.UserError) as caught:
        comparing.resolve(str(folder))
    assert "network: Field required" in str(caught.value)
    assert "netwrok: Extra inputs are not permitted" in str(caught.value)


# --- caches and benchmarks -------------------------------------------------------------

def test_a_damaged_cached_run_is_deleted_and_computed_again(tiny_bench, tmp_path, capsys):
    entry = results.Entry("none", qgzoo.NoClosure(), {"kind": "ab3", "dt": 3600.0})
    cache = tmp_path / "cache"
    first = results.cached_run(entry, tiny_bench, cache)
    path = cache / tiny_bench.key / f"{entry.key}.npz"
    good = path.read_bytes()
    path.write_bytes(good[:100])  # truncated
    again = results.cached_run(entry, tiny_bench, cache)
    assert f"the cached {path} could not be read" in capsys.readouterr().err
    np.testing.assert_array_equal(again.ke, first.ke)
    assert path.read_bytes() != good[:100] and results.Result.load(path).ke.shape == first.ke.shape
    path.write_bytes(b"garbage")
    refreshed = results.cached_run(entry, tiny_bench, cache, refresh=True)  # --no-cache
    assert capsys.readouterr().err == ""
    np.testing.assert_array_equal(results.Result.load(path).ke, refreshed.ke)


def test_a_damaged_benchmark_names_its_file(tiny_bench, tmp_path):
    path = tiny_bench.save(tmp_path / "bench.npz")
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(qgzoo.UserError, match=f"^{path} is not a readable benchmark"):
        Benchmark.load(path)


@pytest.fixture(scope="module")
def tiny_bench(tmp_path_factory):
    """A benchmark of a tiny single-precision reference (32 -> 16, 6 samples): single
    precision must be benchmarkable like double."""
    from qgzoo.core.schema import validate_component
    from qgzoo.data import store
    operator1 = validate_component("coarsener", {"kind": "operator1"})
    reference = qgzoo.ReferenceSpec(hires_nx=32, lores_nx=16, n_runs=2, n_test_runs=1,
                                    spinup_steps=50, n_samples=6, n_hires_snapshots=2,
                                    precision="single").with_coarsener(operator1)
    path = tmp_path_factory.mktemp("tiny") / "store.zarr"
    store.build_store(reference, path, progress=False)
    return Benchmark.from_store("tiny", reference, {"kind": "operator1"}, path, progress=False)


def test_a_single_precision_reference_is_benchmarked(tiny_bench):
    result = results.run_entry(results.Entry("none", qgzoo.NoClosure(),
                                             {"kind": "ab3", "dt": 3600.0}), tiny_bench)
    assert result.stable == result.blowup_step.size == 3 and result.climate is not None
    assert np.isfinite(result.ke).all()


def test_a_huge_offline_score_keeps_the_table_narrow():
    row = {"r2_upper": -1.2345e58, "r2_lower": 0.25}
    assert report._cell("r2_upper", row) == "-1.2e+58"
    assert report._cell("r2_lower", row) == "0.25"


# --- specs: checked before any data is built -------------------------------------------

def test_a_window_longer_than_the_runs_is_refused_before_any_data(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(files.ENV_CACHE, str(tmp_path / "cache"))
    experiment = spec()
    experiment["loss"] = {"kind": "state_mse"}
    experiment["training"]["rollout_steps"] = SMALL_REFERENCE["n_samples"]
    path = tmp_path / "long.json"
    path.write_text(json.dumps(experiment))
    status, _, err = run(capsys, "train", str(path), "--out", str(tmp_path / "out"))
    assert status == 2 and f"training.rollout_steps: a window of " \
                           f"{SMALL_REFERENCE['n_samples'] + 1} samples does not fit" in err
    assert not (tmp_path / "out").exists() and not (tmp_path / "cache").exists()


@pytest.mark.parametrize("physics, message", [
    ({"rd": -1.0}, "reference.physics.rd must be positive, got -1"),
    ({"beta": float("nan")}, "reference.physics.beta must be finite, got nan"),
    ({"rek": -1e-7}, "reference.physics.rek must be at least 0"),
])
def test_physics_that_cannot_work_is_refused_before_the_spin_up(tmp_path, monkeypatch, capsys,
                                                                 physics, message):
    monkeypatch.setenv(files.ENV_CACHE, str(tmp_path / "cache"))
    experiment = spec()
    experiment["reference"]["physics"] = physics
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(experiment))  # NaN is written as the JSON extension NaN
    for command in (["train", str(path), "--out", str(tmp_path / "out")],
                    ["data", "build", str(path)]):
        status, _, err = run(capsys, *command)
        assert status == 2 and message.removeprefix("reference.") in one_error(err), err
    assert not (tmp_path / "out").exists() and not (tmp_path / "cache").exists()


@pytest.mark.parametrize("field, value, message", [
    ("training.steps", "10", 'training.steps: expected an integer, got "10"'),
    ("training.steps", True, "training.steps: expected an integer, got true"),
    ("stepper.dt", "3600", 'stepper.dt: expected a number, got "3600"'),
    ("network.channels", ["32", 32], 'network.channels: item 0: expected an integer, got "32"'),
    ("reference.physics", {"rd": "15000"}, "reference.physics: 'rd': expected a number, got"),
])
def test_numbers_are_not_coerced_from_strings_or_booleans(tmp_path, capsys, field, value,
                                                          message):
    experiment = spec()
    part, name = field.split(".")
    experiment[part][name] = value
    path = tmp_path / "x.json"
    path.write_text(json.dumps(experiment))
    status, _, err = run(capsys, "train", str(path), "--out", str(tmp_path / "out"))
    assert status == 2
    assert one_error(err).startswith(f"error: {path} is not a valid spec:\n  {message}")
    assert not (tmp_path / "out").exists()


def test_a_spec_file_that_is_not_utf8_is_named(tmp_path, capsys):
    path = tmp_path / "utf16.json"
    path.write_text(json.dumps(spec()), encoding="utf-16")
    status, _, err = run(capsys, "train", str(path), "--out", str(tmp_path / "out"))
    assert status == 2 and one_error(err).startswith(f"error: {path}: the experiment is not "
                                                     f"UTF-8 text")


def test_an_argument_out_of_range_is_blamed_on_the_argument(tmp_path, capsys):
    path = write_spec(tmp_path / "x.json")
    with pytest.raises(SystemExit) as caught:
        cli.main(["train", str(path), "--steps", "-1"])
    assert caught.value.code == 2
    err = capsys.readouterr().err
    assert "argument --steps: must be at least 0, got -1" in err and str(path) not in err


# --- the command itself ----------------------------------------------------------------

def test_an_internal_error_is_one_line_with_status_1_and_a_traceback_under_debug(
        tmp_path, monkeypatch, capsys):
    def broken(*args, **kwargs):
        raise ZeroDivisionError("a bug")
    monkeypatch.setattr(cli, "train", broken)
    path = write_spec(tmp_path / "x.json")
    status, _, err = run(capsys, "train", str(path))
    assert status == 1 and one_error(err).startswith(
        "error: internal error, ZeroDivisionError: a bug (a bug in qgzoo or a plugin; rerun "
        "with --debug")
    with pytest.raises(ZeroDivisionError):
        cli.main(["--debug", "train", str(path)])


@pytest.mark.slow
def test_an_interrupted_training_exits_130_without_a_traceback_and_resumes(small_data, tmp_path):
    path = write_spec(tmp_path / "x.json", steps=100000, checkpoint_every=1)
    out = tmp_path / "out"
    # A child inherits an ignored SIGINT (pytest started in the background by a
    # non-interactive shell): give it the default disposition, as a terminal would.
    inherited = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        process = subprocess.Popen([sys.executable, "-m", "qgzoo.app.cli", "train", str(path),
                                    "--out", str(out), "--no-progress"],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    finally:
        signal.signal(signal.SIGINT, inherited)
    deadline = time.monotonic() + 300
    while not (out / "checkpoint.eqx").exists() and time.monotonic() < deadline:
        time.sleep(0.5)
    process.send_signal(signal.SIGINT)
    try:  # a guard against a hang, generous for a loaded machine: not a timing
        _, err = process.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        process.kill()
        pytest.fail(f"SIGINT did not stop the training within 300 s: {process.communicate()}")
    assert process.returncode == 130
    assert "Traceback" not in err and "interrupted" in err
    assert not files.lock_path(out).exists()
    assert len(trained.read_log(out)) >= 1
    assert files.verified(out / "checkpoint.eqx")


def test_plugin_problems_are_warned_on_every_command(monkeypatch, capsys):
    registry = plugins.load_registry(only=["doesnotexist"])
    old = plugins.use_registry(registry)
    try:
        status, _, err = run(capsys, "schema")
    finally:
        plugins.use_registry(old)
    assert status == 0
    assert ("qgzoo: warning: plugin doesnotexist: QGZOO_PLUGINS names 'doesnotexist', but no "
            "installed plugin has that entry-point name") in err
