"""Reference stores on an object store: a real S3-compatible server (moto's, started here on
localhost) holds a store that qgzoo builds, checks and trains from like a local one."""

import contextlib
import json
import os
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

import qgzoo
from qgzoo.app import cli
from qgzoo.data import store
from qgzoo.data.reference import ReferenceSpec

pytest.importorskip("s3fs")
pytest.importorskip("moto.server")

#: Small enough to build twice in seconds; a few samples of a short spin-up.
TINY = ReferenceSpec(hires_nx=32, lores_nx=16, n_runs=3, n_test_runs=1, spinup_steps=240,
                     n_samples=24, n_hires_snapshots=2, coarseners=[{"kind": "operator1"}])
EXPERIMENT = {"reference": TINY.model_dump(mode="json"),
              "network": {"kind": "cnn", "channels": [4], "kernel_sizes": [3, 3]},
              "loss": {"kind": "state_mse"},
              "training": {"steps": 3, "batch_size": 2, "rollout_steps": 2}}
BUCKET = "qgzoo-test"


def _free_port() -> int:
    with contextlib.closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def s3():
    """moto's S3 server in its own process, a bucket on it, and the AWS_* variables that point
    botocore (hence s3fs) at it; the server's URL."""
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p",
                               str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    saved = dict(os.environ)
    os.environ.update(AWS_ACCESS_KEY_ID="qgzoo", AWS_SECRET_ACCESS_KEY="qgzoo",
                      AWS_DEFAULT_REGION="us-east-1", AWS_ENDPOINT_URL=url,
                      NO_PROXY="127.0.0.1,localhost")  # the server is local, whatever proxy
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("moto's S3 server did not start") from None
                time.sleep(0.1)
        import s3fs
        s3fs.S3FileSystem().mkdir(BUCKET)
        yield url
    finally:
        server.terminate()
        server.wait(10)
        os.environ.clear()
        os.environ.update(saved)


@pytest.fixture(scope="module")
def built(s3, tmp_path_factory):
    """The tiny store built locally in this process, and at an s3:// URL by two Dask workers,
    each writing the chunks of its runs (0 and 1, and 2) there."""
    local = store.build_store(TINY, tmp_path_factory.mktemp("local") / "ref.zarr",
                              progress=False)
    remote = store.build_store(TINY, f"s3://{BUCKET}/built/ref.zarr", progress=False, workers=2)
    return local, remote


def _objects(url_prefix: str) -> dict[str, bytes]:
    import s3fs
    fs = s3fs.S3FileSystem()
    fs.invalidate_cache()
    return {name.removeprefix(url_prefix): fs.cat_file(name) for name in fs.find(url_prefix)}


def test_a_store_built_on_s3_by_workers_holds_the_local_store_object_for_object(built):
    local, remote = built
    on_disk = {f.relative_to(local).as_posix(): f.read_bytes()
               for f in local.rglob("*") if f.is_file()}
    on_s3 = _objects(f"{BUCKET}/built/ref.zarr/")
    # Every chunk of the fields is the same bytes. The high-resolution kinetic energy of run 2,
    # averaged in a batch of one run instead of three, differs in its last bits, and with it
    # the checksums and the checks recorded in the root's attributes.
    assert set(on_s3) == set(on_disk)
    differ = {k for k in on_disk if on_s3[k] != on_disk[k]}
    assert differ <= {"zarr.json", "checksums.json"} | {k for k in on_disk if k.startswith(
        "hires/ke/c/")}
    a, b = store.open_reference(local), store.open_reference(remote)
    for name in a.fields:
        np.testing.assert_array_equal(a.fields[name][:], b.fields[name][:], err_msg=name)
    ke = [store.open_group(s, "r")["hires/ke"][:] for s in (local, remote)]
    np.testing.assert_allclose(ke[1], ke[0], rtol=1e-13, atol=0)
    attributes = [json.loads(objects["zarr.json"])["attributes"] for objects in (on_disk, on_s3)]
    checks = [a.pop("checks") for a in attributes]
    assert attributes[0] == attributes[1]
    np.testing.assert_allclose(checks[1]["ke_trend"], checks[0]["ke_trend"], rtol=1e-9)
    assert store.verify_store(remote) == store.verify_store(local) == \
        len(json.loads(on_disk["checksums.json"])["files"])


def test_data_info_reads_a_store_at_a_url(built, capsys):
    assert cli.main(["data", "info", f"s3://{BUCKET}/built/ref.zarr", "--verify"]) == 0
    out = capsys.readouterr().out
    assert "status   complete" in out and "each matching its SHA-256" in out


def test_training_streams_windows_from_s3_with_the_loss_of_a_local_store(built, monkeypatch,
                                                                            tmp_path):
    local, _ = built
    here = qgzoo.train(EXPERIMENT, data=store.open_reference(local), progress=False)
    # $QGZOO_STORES on the bucket: the store of the experiment's reference is built there on
    # first use, then read back from it window by window.
    monkeypatch.setenv("QGZOO_STORES", f"s3://{BUCKET}/stores")
    from_s3 = qgzoo.train(EXPERIMENT, tmp_path / "run", progress=False)
    assert str(store.store_path(TINY)).startswith(f"s3://{BUCKET}/stores/reference-")
    assert any(name.endswith(".zarr/checksums.json")
               for name in _objects(f"{BUCKET}/stores/"))
    assert [h["loss"] for h in from_s3.history] == [h["loss"] for h in here.history]
    assert all(np.isfinite(h["loss"]) for h in here.history)


def test_a_damaged_object_is_named(built, monkeypatch):
    import s3fs
    fs = s3fs.S3FileSystem()
    prefix = f"{BUCKET}/damaged/ref.zarr"
    fs.copy(f"{BUCKET}/built/ref.zarr", prefix, recursive=True)
    chunk = f"{prefix}/operator1/q/c/1/0/0/0/0"
    original = fs.cat_file(chunk)
    fs.pipe_file(chunk, original[:-1] + bytes([original[-1] ^ 1]))  # same size, one bit
    with pytest.raises(store.StoreError, match=r"operator1/q/c/1/0/0/0/0 does not match its "
                                               r"SHA-256"):
        store.verify_store(f"s3://{prefix}")
    data = store.open_reference(f"s3://{prefix}")  # sizes match: opened
    with pytest.raises(store.StoreError, match=r"damaged: operator1/q/c/1/0/0/0/0 cannot be "
                                               r"decoded \(its CRC-32C"):
        data.fields["q"][1, :4]
    fs.rm_file(chunk)
    with pytest.raises(store.StoreError, match=r"operator1/q/c/1/0/0/0/0 is missing"):
        store.open_reference(f"s3://{prefix}")


def test_a_benchmark_on_s3_is_saved_read_and_compared_on(built):
    from qgzoo.evaluation.benchmark import Benchmark, load_benchmark
    local, _ = built
    bench = Benchmark.from_store("tiny", TINY, {"kind": "operator1"},
                                 f"s3://{BUCKET}/built/ref.zarr", progress=False)
    here = Benchmark.from_store("tiny", TINY, {"kind": "operator1"}, local, progress=False)
    np.testing.assert_array_equal(bench.initial_q, here.initial_q)
    url = f"s3://{BUCKET}/benchmarks/tiny.npz"
    bench.save(url)
    again = Benchmark.load(url)
    np.testing.assert_array_equal(again.initial_q, bench.initial_q)
    np.testing.assert_array_equal(again.offline_forcing, bench.offline_forcing.astype(np.float32))
    # compare --benchmark URL reads it so.
    np.testing.assert_array_equal(load_benchmark(url, progress=False).hires_ke, bench.hires_ke)
