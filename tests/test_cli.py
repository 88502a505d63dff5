"""The ``qgzoo`` command, run in-process."""

import json
import pathlib
import types

import pytest

from qgzoo.app import cli
from qgzoo.core import plugins


@pytest.fixture
def registry_with_problem():
    """The built-in registry plus one broken plugin, restored afterwards."""
    registry = plugins.load_registry([])
    registry.problems.append(plugins.Problem("broken", "cannot import broken:plugin"))
    old = plugins.use_registry(registry)
    yield registry
    plugins.use_registry(old)


def test_plugins_lists_builtin_kinds_and_their_distribution(capsys):
    assert cli.main(["plugins"]) == 0
    out = capsys.readouterr().out
    for kind in ("operator1", "cnn", "state_mse", "ab3"):
        assert kind in out
    assert "qgzoo" in out
    assert "PROBLEMS" not in out


def test_plugins_json_is_a_list_of_registrations(capsys):
    assert cli.main(["plugins", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    kinds = {(row["category"], row["kind"]): row for row in rows}
    assert kinds["stepper", "ab3"]["distribution"] == "qgzoo"
    assert {"coarsener", "network", "loss", "stepper"} <= {row["category"] for row in rows}


def test_plugins_marks_problems(capsys, registry_with_problem):
    assert cli.main(["plugins"]) == 0
    out = capsys.readouterr().out
    assert "PROBLEMS (1)" in out and "broken: cannot import broken:plugin" in out
    assert cli.main(["plugins", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {"plugin": "broken", "problem": "cannot import broken:plugin"} in rows


def test_schema_is_json_with_the_component_unions(capsys):
    assert cli.main(["schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    for category in ("coarsener", "network", "loss", "stepper"):
        assert "oneOf" in schema["$defs"][category]


def test_train_rejects_an_invalid_spec_with_field_paths(capsys, tmp_path):
    spec = tmp_path / "bad.json"
    spec.write_text(json.dumps({"network": {"kind": "nope"}, "stepper": {"kind": "ab3", "dt": -1}}))
    assert cli.main(["train", str(spec)]) == 2
    err = capsys.readouterr().err
    installed = ", ".join(sorted(plugins.registry().kinds["network"]))
    assert "network: unknown network kind 'nope'" in err
    assert f"installed kinds: {installed}" in err
    assert "stepper.dt: Input should be greater than 0" in err
    assert "Traceback" not in err


def test_train_rejects_a_file_that_is_not_json(capsys, tmp_path):
    spec = tmp_path / "broken.json"
    spec.write_text("{oops")
    assert cli.main(["train", str(spec)]) == 2
    assert "not valid JSON" in capsys.readouterr().err


def test_train_overrides_steps_and_defaults_out_to_runs_stem(capsys, tmp_path, monkeypatch):
    calls = []

    def fake_train(experiment, out, progress, overwrite):
        calls.append((experiment, out, progress))
        history = [{"step": 0, "loss": 0.5}]
        return types.SimpleNamespace(history=history, skipped=1)

    monkeypatch.setattr(cli, "train", fake_train)
    monkeypatch.chdir(tmp_path)
    pathlib.Path("small.json").write_text(json.dumps({"training": {"steps": 500}}))
    assert cli.main(["train", "small.json", "--steps", "7", "--no-progress"]) == 0
    (experiment, out, progress), = calls
    assert experiment.training.steps == 7
    assert out == pathlib.Path("runs") / "small"
    assert progress is False
    out_text = capsys.readouterr().out
    assert "runs/small" in out_text and "0.5" in out_text and "skipped updates: 1" in out_text


def test_zoo_list_and_show_read_the_registry(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("QGZOO_REGISTRY", str(tmp_path))
    spec = {"network": {"kind": "none"}, "training": {"steps": 0}}
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "experiment.json").write_text(json.dumps(spec))
    (tmp_path / "plain" / "card.md").write_text("# plain\n\nthe card\n")
    assert cli.main(["zoo", "list"]) == 0
    line, = capsys.readouterr().out.splitlines()
    assert line.split() == ["plain", "128->32", "none", "fixed", "constants"]
    assert cli.main(["zoo", "show", "plain"]) == 0
    assert "the card" in capsys.readouterr().out
    assert cli.main(["zoo", "show", "missing"]) == 2
    assert "no zoo entry 'missing'; entries: plain" in capsys.readouterr().err


def test_compare_reports_an_unknown_entry_without_a_traceback(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("QGZOO_REGISTRY", str(tmp_path))
    assert cli.main(["compare", "no-such-closure", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: 'no-such-closure' is neither a zoo entry")
    assert not (tmp_path / "out").exists()


def test_compare_reports_an_invalid_spec_file_by_field(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("QGZOO_REGISTRY", str(tmp_path))
    spec = tmp_path / "bad.json"
    spec.write_text(json.dumps({"kind": "cnn", "channels": "x"}))
    assert cli.main(["compare", str(spec), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {spec} is not a valid spec:\n  network.channels: ")


def test_compare_names_the_known_references_for_an_unknown_one(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("QGZOO_REGISTRY", str(tmp_path))
    assert cli.main(["compare", "none", "--benchmark", "nope", "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err == (
        "error: unknown reference 'nope'; presets: ['eddy-128-32', 'eddy-256-64', 'eddy-64-16', "
        "'jet-128-32', 'jet-256-64']\n")
