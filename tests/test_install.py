"""A non-editable install carries the zoo: ``pip install .`` into a fresh virtual
environment (its dependencies borrowed from this one), then the zoo is listed and an
entry loads from a folder outside the checkout."""

import json
import os
import pathlib
import subprocess
import sys

import jax
import numpy as np
import pytest

from qgzoo import zoo
from qgzoo.core import files

# A command that must succeed, its output on failure (as the plugin guide's test runs it).
from test_docs import run

ROOT = pathlib.Path(__file__).resolve().parents[1]
ENTRY = "cnn-offline"

# Run in the fresh environment: where the zoo is, and the forcing of ENTRY at a fixed field.
PROBE = """
import json, sys
import jax, numpy as np
import qgzoo
from qgzoo.core import files
closure = qgzoo.zoo.load(sys.argv[1])
model = qgzoo.zoo.experiment(sys.argv[1]).reference.lores_model()
q = np.load(sys.argv[2])
forcing = closure.q_forcing_at(model, jax.numpy.asarray(q))
print(json.dumps({"package": qgzoo.__file__, "registry": str(files.registry_dir()),
                  "names": qgzoo.zoo.names(), "forcing": np.asarray(forcing).tolist()}))
"""


@pytest.mark.slow
def test_a_wheel_install_lists_and_loads_the_zoo_from_anywhere(tmp_path, monkeypatch):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    # qgzoo's dependencies (jax, zarr, ...) come from this environment, through a path
    # entry placed after the fresh environment's own site-packages; qgzoo itself is
    # installed into the fresh one from a wheel. This environment's .pth files are not
    # read there, so its editable qgzoo and plugins stay out of reach.
    site = run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
               tmp_path, dict(os.environ)).strip()
    ours = subprocess.run([sys.executable, "-c",
                           "import sysconfig; print(sysconfig.get_path('purelib'))"],
                          capture_output=True, text=True, check=True).stdout.strip()
    pathlib.Path(site, "zz_dependencies.pth").write_text(ours + "\n")
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    env = {k: v for k, v in os.environ.items()
           if k not in (files.ENV_REGISTRY, files.ENV_PLUGINS, "PYTHONPATH")}
    env["QGZOO_CACHE"] = str(tmp_path / "cache")
    run([python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps",
         str(ROOT)], outside, env, timeout=900)

    listing = run([venv / "bin" / "qgzoo", "zoo", "list"], outside, env)
    lines = {line.split()[0]: line for line in listing.splitlines()}
    assert set(lines) == set(zoo.names()), listing
    assert "offline, on q_forcing_total" in lines[ENTRY]
    # Physical closures need qgzoo-physical, which this environment lacks: named, not a crash.
    assert "unavailable" in lines["smagorinsky"] and "smagorinsky" in lines["smagorinsky"]

    model = zoo.experiment(ENTRY).reference.lores_model()
    q = np.asarray(jax.random.normal(jax.random.key(0), (2, model.ny, model.nx))) * 4e-6
    np.save(tmp_path / "q.npy", q)
    probe = json.loads(run([python, "-c", PROBE, ENTRY, tmp_path / "q.npy"], outside, env))
    site = pathlib.Path(probe["package"]).resolve().parent
    assert site.parent.parts[-1] == "site-packages", probe["package"]
    assert pathlib.Path(probe["registry"]).resolve() == site / "registry"
    assert probe["names"] == zoo.names()
    # The checkout's own copy of the entry, loaded here, gives the same forcing.
    monkeypatch.setenv(files.ENV_REGISTRY, str(ROOT / "registry"))
    expected = zoo.load(ENTRY).q_forcing_at(model, jax.numpy.asarray(q))
    np.testing.assert_allclose(probe["forcing"], np.asarray(expected), rtol=1e-6)
