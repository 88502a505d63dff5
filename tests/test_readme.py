"""The README's quick start runs as written."""

import pathlib
import re

import jax
import pytest

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


@pytest.mark.slow
def test_quick_start_runs(small_data, tmp_path, monkeypatch):
    # small_data points QGZOO_CACHE at the session's store of the same reference.
    text = README.read_text()
    section = text[text.index("## Quick start"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    monkeypatch.chdir(tmp_path)
    namespace = {}
    exec(compile(code, "README.md", "exec"), namespace)
    assert (tmp_path / "runs/small/parameterization.eqx").exists()
    trained, model = namespace["trained"], namespace["model"]
    assert len(trained.history) == 400 and trained.experiment.training.rollout_steps == 10
    state = model.create_initial_state(jax.random.key(0))
    assert model.get_updates(state).model_state.qh.shape == (2, 16, 9)


def test_zoo_example_loads_a_shipped_entry_into_pyqg_jax():
    text = README.read_text()
    section = text[text.index("## The zoo"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    namespace = {"qgzoo": __import__("qgzoo")}
    exec(compile(code, "README.md", "exec"), namespace)
    model = namespace["model"]
    state = model.create_initial_state(jax.random.key(0))
    stepped = model.get_updates(state).model_state.qh
    assert stepped.shape == (2, 32, 17) and bool(jax.numpy.all(jax.numpy.isfinite(stepped)))
