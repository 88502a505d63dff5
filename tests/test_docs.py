"""docs/writing-a-plugin.md works: its files, written out, make a plugin that installs,
is listed by ``qgzoo plugins``, passes its own tests and trains in an experiment.

The page marks each file with an info string, as in ```` ```python title=path ````;
those blocks are the whole plugin. The installed distribution is removed at the end.
"""

from __future__ import annotations

import ast
import os
import pathlib
import re
import subprocess
import sys

import pytest

# The install recipe of tests/plugin_dist (offline when the venv can build, else isolated).
from test_plugins import _can_build_without_isolation

PAGE = pathlib.Path(__file__).parents[1] / "docs" / "writing-a-plugin.md"
BLOCK = re.compile(r"^```(\w+) title=(\S+)\n(.*?)^```$", re.MULTILINE | re.DOTALL)
DISTRIBUTION = "qgzoo-blockmean"
ENTRY_POINT = "blockmean"


def page_files() -> dict[str, str]:
    """The files of the page's example: relative path -> text."""
    files = {}
    for _language, path, text in BLOCK.findall(PAGE.read_text()):
        assert path not in files, f"{path} appears twice in {PAGE.name}"
        files[path] = text
    return files


def test_page_holds_a_complete_plugin():
    files = page_files()
    assert set(files) == {"pyproject.toml", "qgzoo_blockmean.py", "tests/test_blockmean.py",
                          "train_block_mean.py"}
    assert f'name = "{DISTRIBUTION}"' in files["pyproject.toml"]
    assert (f'[project.entry-points.qgzoo]\n{ENTRY_POINT} = "qgzoo_blockmean"'
            in files["pyproject.toml"])
    for path, text in files.items():
        if path.endswith(".py"):
            ast.parse(text, filename=path)
    # Every file the page shows in its folder layout is one of its blocks.
    layout = PAGE.read_text().split("## 1. The folder")[1].split("## 2.")[0]
    for path in files:
        assert pathlib.PurePath(path).name in layout


def run(command, cwd, env, timeout=600):
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)
    assert done.returncode == 0, (f"{' '.join(map(str, command))} exited {done.returncode}\n"
                                  f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done.stdout


def pip(*args):
    return subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", *args],
                          capture_output=True, text=True, timeout=300)


@pytest.fixture
def installed_page_plugin(tmp_path):
    """The page's plugin written to a folder and installed editable into this environment."""
    folder = tmp_path / DISTRIBUTION
    for path, text in page_files().items():
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        (folder / path).write_text(text)
    options = ["--no-build-isolation", "--no-index"] if _can_build_without_isolation() else []
    done = pip("install", "--quiet", "--no-deps", *options, "--editable", str(folder))
    if done.returncode:
        pytest.skip(f"cannot install the page's plugin (pip exit {done.returncode}):\n"
                    f"{done.stderr[-2000:]}")
    try:
        yield folder
    finally:
        done = pip("uninstall", "--yes", DISTRIBUTION)
        assert done.returncode == 0, done.stderr


@pytest.mark.slow
def test_page_plugin_installs_lists_passes_its_tests_and_trains(installed_page_plugin, tmp_path):
    folder = installed_page_plugin
    # A fresh interpreter per step, as after a restart; only this plugin besides the built-ins.
    env = {**os.environ, "QGZOO_PLUGINS": ENTRY_POINT, "QGZOO_CACHE": str(tmp_path / "cache")}
    qgzoo_command = pathlib.Path(sys.executable).with_name("qgzoo")

    listing = run([qgzoo_command, "plugins"], folder, env)
    rows = [line.split() for line in listing.splitlines()]
    assert ["coarsener", "block_mean", ENTRY_POINT, DISTRIBUTION, "0.1.0"] in rows, listing
    assert "PROBLEMS" not in listing, listing

    tests = run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
                folder, env)
    assert "3 passed" in tests, tests

    training = run([sys.executable, "train_block_mean.py"], folder, env)
    assert "coarsener: kind='block_mean' lores_filter=True" in training, training
    assert "final loss:" in training, training
    assert (folder / "runs" / "block_mean" / "experiment.json").exists()
