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


SCALER = "pyqg_parameterization_benchmarks.neural_networks.ChannelwiseScaler"


def _numpy_fullycnn(folder: pathlib.Path, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(core output, forcing in 1/s^2) of the published networks at q (2, n, n), in float64
    numpy: every convolution an explicit sum of shifted copies of its padded input."""
    def conv(x, weight, bias, padding):
        k = weight.shape[-1]
        padded = np.pad(x, ((0, 0), (k // 2, k // 2), (k // 2, k // 2)),
                        mode="wrap" if padding == "circular" else "constant")
        n = x.shape[-1]
        out = np.zeros((weight.shape[0], n, n)) + bias[:, None, None]
        for di in range(k):
            for dj in range(k):
                out += np.einsum("oc,cij->oij", weight[:, :, di, dj],
                                 padded[:, di:di + n, dj:dj + n])
        return out

    cores, forcings = [], []
    for layer in (0, 1):
        part = folder / str(layer)
        state = {k: np.asarray(v, np.float64) for k, v in
                 pytorch.read_state_dict(part / "weights.pt").items()}
        scaler = vars(pytorch.read_pickle(part / "input_scale.pkl", {SCALER}))
        target = vars(pytorch.read_pickle(part / "output_scale.pkl", {SCALER}))
        x = (q - np.ravel(scaler["mu"])[:, None, None]) / np.ravel(scaler["sd"])[:, None, None]
        # nn.Sequential: conv (0, 3, ..., 18), ReLU, BatchNorm (2, 5, ..., 20); conv 21 last.
        for conv_index in range(0, 21, 3):
            x = conv(x, state[f"{conv_index}.weight"], state[f"{conv_index}.bias"], "circular")
            x = np.maximum(x, 0)
            norm = conv_index + 2
            x = ((x - state[f"{norm}.running_mean"][:, None, None])
                 / np.sqrt(state[f"{norm}.running_var"][:, None, None] + 1e-5)
                 * state[f"{norm}.weight"][:, None, None] + state[f"{norm}.bias"][:, None, None])
        y = conv(x, state["21.weight"], state["21.bias"], "zeros")[0]
        y = y - y.mean()
        cores.append(y)
        forcings.append(y * np.ravel(target["sd"])[0])
    return np.stack(cores), np.stack(forcings)


def test_the_zoo_entry_equals_a_numpy_evaluation_of_the_published_weights():
    q = np.load(TORCH)["q"]
    core, expected = _numpy_fullycnn(PUBLISHED, q)
    # The numpy evaluation is PyTorch's (float64 both) to rounding.
    torch_forcing = np.load(TORCH)["forcing"]
    np.testing.assert_allclose(expected, torch_forcing, rtol=0, atol=1e-9 * np.abs(expected).max())
    closure = zoo.load("ross2023-fcnn")
    # The network of the entry, run in float64: the same numbers to 1e-5 relative.
    as64 = lambda tree: jax.tree.map(lambda x: x.astype(jnp.float64) if eqx.is_inexact_array(x)
                                     else x, tree)
    x = (q - np.asarray(closure.input_scale.mean)[:, None, None]) / \
        np.asarray(closure.input_scale.std)[:, None, None]
    ours = np.asarray(as64(closure.core)(jnp.asarray(x, jnp.float64)))
    np.testing.assert_allclose(ours, core, rtol=0, atol=1e-5 * np.abs(core).max())
    # As the zoo runs it (network in float32), within float32's rounding of 7 layers.
    model = zoo.experiment("ross2023-fcnn").reference.lores_model()
    forcing = np.asarray(closure.q_forcing_at(model, jnp.asarray(q)))
    for layer in (0, 1):
        scale = np.abs(expected[layer]).max()
        assert np.abs(forcing[layer] - expected[layer]).max() < 1e-3 * scale
