"""Published weights: PyTorch files read without torch, and Ross et al.'s FullyCNN in the zoo
predicting what PyTorch itself predicts with them."""

import hashlib
import os
import pathlib
import pickle
import re
import shutil
import zipfile

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from qgzoo import UserError, zoo
from qgzoo.components.networks import load_fullycnn
from qgzoo.core import pytorch

PUBLISHED = pathlib.Path(__file__).parents[1] / "registry" / "ross2023-fcnn" / "published"
#: q and the forcing PyTorch 2.13 computes for it with the published networks
#: (written by tests/data/ross2023_fcnn_torch.py).
TORCH = pathlib.Path(__file__).parent / "data" / "ross2023_fcnn_torch.npz"


def test_a_state_dict_is_read_as_numpy_with_the_published_parameter_count():
    state = pytorch.read_state_dict(PUBLISHED / "0" / "weights.pt")
    assert state["0.weight"].shape == (128, 2, 5, 5) and state["0.weight"].dtype == np.float32
    assert state["21.weight"].shape == (1, 32, 3, 3)
    assert state["2.num_batches_tracked"].dtype == np.int64
    # Trainable numbers (convolutions and BatchNorms' affine maps, not their running
    # statistics): 267 841 per network (SCIENCE.md).
    trainable = sum(v.size for k, v in state.items()
                    if not k.endswith(("running_mean", "running_var", "num_batches_tracked")))
    assert trainable == 267_841
    assert np.all(state["2.running_var"] > 0)


def test_the_zoo_entry_predicts_what_pytorch_predicts_with_the_published_weights():
    reference = np.load(TORCH)
    closure = zoo.load("ross2023-fcnn")
    model = zoo.experiment("ross2023-fcnn").reference.lores_model()
    forcing = np.asarray(closure.q_forcing_at(model, jnp.asarray(reference["q"])))
    expected = reference["forcing"]
    # The networks run in float32 (torch in float64 here): PyTorch's own float32 run of
    # the same input differs from its float64 one by 2.4e-4 of the largest value.
    for layer in (0, 1):
        error = np.abs(forcing[layer] - expected[layer]).max() / np.abs(expected[layer]).max()
        assert error < 1e-3, (layer, error)
        assert np.corrcoef(forcing[layer].ravel(), expected[layer].ravel())[0, 1] > 0.99999
        assert abs(forcing[layer].mean()) < 1e-6 * np.abs(forcing[layer]).max()  # zero mean


def test_the_shipped_weights_are_the_conversion_of_the_published_files():
    converted = load_fullycnn(PUBLISHED)
    shipped = zoo.load("ross2023-fcnn")
    leaves = jax.tree.leaves(eqx.filter(converted, eqx.is_array))
    assert len(leaves) == len(jax.tree.leaves(eqx.filter(shipped, eqx.is_array))) == 2 * 30 + 3
    for a, b in zip(leaves, jax.tree.leaves(eqx.filter(shipped, eqx.is_array))):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_the_published_files_keep_their_licence_and_the_hashes_of_their_source():
    source = (PUBLISHED / "SOURCE.md").read_text()
    assert "6395fb4b446a4c0228b4a4bd0fc4843ccc69daea" in source and "MIT" in source
    assert (PUBLISHED / "LICENSE").read_text().startswith("MIT License")
    listed = dict((name, digest) for digest, name in re.findall(r"^([0-9a-f]{64})  (\S+)$",
                                                                source, re.M))
    files = {str(p.relative_to(PUBLISHED)) for p in PUBLISHED.rglob("*") if p.is_file()}
    assert set(listed) == files - {"SOURCE.md"}
    for name, digest in listed.items():
        assert hashlib.sha256((PUBLISHED / name).read_bytes()).hexdigest() == digest, name


class _Boom:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_a_pickle_naming_anything_else_is_refused_without_running_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "evil.pkl").write_bytes(pickle.dumps(_Boom()))
    with pytest.raises(UserError, match=r"refusing to load (posix|os)\.system"):
        pytorch.read_pickle(tmp_path / "evil.pkl")
    assert not (tmp_path / "pwned").exists()
    # A scaler's class is read only when named as a stand-in.
    with pytest.raises(UserError, match="ChannelwiseScaler"):
        pytorch.read_pickle(PUBLISHED / "0" / "input_scale.pkl")


def test_damaged_or_different_published_folders_are_named(tmp_path):
    folder = tmp_path / "fcnn"
    shutil.copytree(PUBLISHED, folder)
    with zipfile.ZipFile(folder / "0" / "weights.pt") as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    members.pop(next(n for n in members if n.endswith("/data/0")))
    with zipfile.ZipFile(folder / "0" / "weights.pt", "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    with pytest.raises(UserError, match=r"weights\.pt is not a readable PyTorch file"):
        load_fullycnn(folder)

    shutil.copy(PUBLISHED / "0" / "weights.pt", folder / "0" / "weights.pt")
    shutil.copy(PUBLISHED / "0" / "targets.pkl", folder / "1" / "targets.pkl")
    with pytest.raises(UserError, match=r"1/targets\.pkl: \[\('q_forcing_total', 0\)\], "
                                        r"expected \[\('q_forcing_total', 1\)\]"):
        load_fullycnn(folder)

    (folder / "1" / "weights.pt").write_bytes(b"not a zip")
    with pytest.raises(UserError, match="not a readable PyTorch file"):
        pytorch.read_state_dict(folder / "1" / "weights.pt")
