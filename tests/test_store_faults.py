"""Reference stores never lose or silently serve damaged data: checksums, checks, locks.

Each test damages a copy of one freshly built store the way a disk, a copy or
a person does, and checks the one-line message (naming the file and the fix),
that the CLI exits with status 2, and that reading touched nothing.
"""

import hashlib
import json
import pathlib
import shutil
import subprocess
import sys
import warnings

import numpy as np
import pytest
import zarr

import qgzoo
from qgzoo.app.cli import main
from qgzoo.core.errors import UserError
from qgzoo.data import store
from qgzoo.data.store import StoreError, build_store, describe_store, open_reference, verify_store

# 32 -> 16, 3 runs (train 0 and 1, test 2), one chunk per run and field.
SPEC = dict(hires_nx=32, lores_nx=16, n_runs=3, n_test_runs=1, spinup_steps=200, n_samples=8,
            n_hires_snapshots=2, coarseners=[{"kind": "operator1"}])
# Smaller still, for the tests that build their own store.
TINY = {**SPEC, "n_runs": 2, "spinup_steps": 0, "n_samples": 2, "n_hires_snapshots": 0}


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> pathlib.Path:
    path = tmp_path_factory.mktemp("built") / "ref.zarr"
    build_store(qgzoo.ReferenceSpec(**SPEC), path, progress=False)
    return path


@pytest.fixture
def ref(built, tmp_path) -> pathlib.Path:
    """A copy of the built store, to damage."""
    return pathlib.Path(shutil.copytree(built, tmp_path / "ref.zarr"))


def contents(path: pathlib.Path) -> dict[str, bytes]:
    """Every file under ``path`` (and beside it), by relative path."""
    return {f.relative_to(path.parent).as_posix(): f.read_bytes()
            for f in path.parent.rglob("*") if f.is_file()}


def chunk(name: str, *coords: int) -> str:
    """The file of a chunk in zarr v3's default layout: ``ARRAY/c/i/j/...``."""
    return f"{name}/c/" + "/".join(map(str, coords))


def damaged(path, *problems) -> str:
    return (f"{path} is damaged: {'; '.join(problems)}; delete the store and rebuild it with "
            f"`qgzoo data build SPEC --out {path}`, SPEC being a JSON file of the spec it was "
            f"built from (qgzoo_spec in its zarr.json)")


def cli_fails(path, capsys, message, *options) -> None:
    """``qgzoo data info PATH [options]`` exits 2 with ``message`` as its error line,
    and changes no file in or beside the store."""
    before = contents(pathlib.Path(path))
    capsys.readouterr()
    assert main(["data", "info", str(path), *options]) == 2
    assert f"error: {message}" in capsys.readouterr().err.splitlines()
    assert contents(pathlib.Path(path)) == before


def flip_byte(file: pathlib.Path, at: int) -> None:
    data = bytearray(file.read_bytes())
    data[at] ^= 0xFF
    file.write_bytes(bytes(data))


def test_every_chunk_is_compressed_then_checksummed(built):
    for meta in built.glob("*/*/zarr.json"):
        codecs = [c["name"] for c in json.loads(meta.read_text())["codecs"]]
        assert codecs == ["bytes", "zstd", "crc32c"], meta


def test_the_manifest_holds_size_and_sha256_of_every_file_but_the_roots(built):
    manifest = json.loads((built / "checksums.json").read_text())
    on_disk = {f.relative_to(built).as_posix() for f in built.rglob("*") if f.is_file()}
    assert set(manifest["files"]) == on_disk - {"zarr.json", "checksums.json"}
    for name, entry in manifest["files"].items():
        data = (built / name).read_bytes()
        assert entry == {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}, name
    root = zarr.open_group(built, mode="r")
    assert root.attrs["complete"] is True and root.attrs["checksums"] == "checksums.json"


def test_a_sound_store_verifies_and_describes(built, capsys):
    before = contents(built)
    n_files = sum(1 for f in built.rglob("*") if f.is_file()) - 2  # root zarr.json, manifest
    assert verify_store(built) == n_files
    assert main(["data", "info", str(built), "--verify"]) == 0
    assert f"checksums {n_files} files, each matching its SHA-256" in capsys.readouterr().out
    assert contents(built) == before


def test_a_flipped_byte_fails_the_read_that_meets_it_naming_the_chunk(ref, capsys):
    bad = chunk("operator1/q", 1, 0, 0, 0, 0)  # run 1: training data
    flip_byte(ref / bad, 100)
    data = open_reference(ref)  # the cheap check sees the right size
    np.asarray(data.fields["q"][2])  # other chunks read as before
    crc = "its CRC-32C checksum does not match: its bytes changed after they were written"
    read_error = damaged(ref, f"{bad} cannot be decoded ({crc})")
    # What training reads: statistics of the training split, windows of samples.
    with pytest.raises(StoreError) as error:
        data.split("train").stats()
    assert str(error.value) == read_error and error.value.problems == [
        f"{bad} cannot be decoded ({crc})"]
    with pytest.raises(StoreError) as error:
        data.windows("q", [1], [2], 3)
    assert str(error.value) == read_error
    cli_fails(ref, capsys, damaged(ref, f"{bad} (run 1, train split) cannot be decoded ({crc})"))
    cli_fails(ref, capsys, damaged(
        ref, f"{bad} does not match its SHA-256 (its bytes changed after the build)"), "--verify")


def test_a_truncated_chunk_is_refused_on_open(ref, capsys):
    bad = chunk("hires/q", 2, 1, 0, 0, 0)
    size = (ref / bad).stat().st_size
    with open(ref / bad, "r+b") as handle:
        handle.truncate(size // 2)
    message = damaged(ref, f"{bad} has {size // 2} bytes instead of {size}")
    with pytest.raises(StoreError) as error:
        open_reference(ref)
    assert str(error.value) == message
    cli_fails(ref, capsys, message)
    cli_fails(ref, capsys, message, "--verify")


def test_a_chunk_of_another_run_copied_over_one_is_refused_on_open(ref, capsys):
    bad = chunk("operator1/u", 0, 0, 0, 0, 0)
    size = (ref / bad).stat().st_size
    # Another run's chunk of any field, of another size than the chunk it replaces.
    source = next(ref / chunk(f"operator1/{field}", run, 0, 0, 0, 0)
                  for run in (1, 2) for field in ("u", "v", "q")
                  if (ref / chunk(f"operator1/{field}", run, 0, 0, 0, 0)).stat().st_size != size)
    shutil.copyfile(source, ref / bad)
    message = damaged(ref, f"{bad} has {source.stat().st_size} bytes instead of {size}")
    with pytest.raises(StoreError) as error:
        open_reference(ref)
    assert str(error.value) == message
    cli_fails(ref, capsys, message, "--verify")


def _reencoded_with_one_ulp_more(ref, tmp_path, name, coords):
    """A valid chunk of the same size as chunk ``coords`` of ``name``, one value changed
    by one unit in the last place, encoded by zarr with the array's own codecs."""
    array = zarr.open_group(ref, mode="r")[name]
    values = array.get_block_selection(coords)
    size = (ref / chunk(name, *coords)).stat().st_size
    for flat in range(values.size):
        changed = values.copy()
        changed.flat[flat] = np.nextafter(changed.flat[flat], np.inf)
        scratch = zarr.create_array(tmp_path / "scratch.zarr", shape=values.shape,
                                    chunks=values.shape, dtype=values.dtype,
                                    compressors=array.compressors, overwrite=True)
        scratch[...] = changed
        encoded = (tmp_path / "scratch.zarr" / "c" / "/".join("0" * values.ndim)).read_bytes()
        if len(encoded) == size:
            return encoded, changed
    raise AssertionError("no one-ulp change keeps the chunk's size")


def test_a_valid_chunk_of_the_same_size_with_other_numbers_is_caught_by_verify(
        ref, tmp_path, capsys):
    bad = chunk("operator1/q", 0, 0, 0, 0, 0)
    encoded, changed = _reencoded_with_one_ulp_more(ref, tmp_path, "operator1/q", (0, 0, 0, 0, 0))
    original = np.asarray(open_reference(ref).fields["q"][0])
    (ref / bad).write_bytes(encoded)
    # Its CRC is valid and its size right: only the SHA-256 tells it from the original.
    served = np.asarray(open_reference(ref).fields["q"][0])
    assert np.array_equal(served, changed[0]) and not np.array_equal(served, original)
    assert main(["data", "info", str(ref)]) == 0
    cli_fails(ref, capsys, damaged(
        ref, f"{bad} does not match its SHA-256 (its bytes changed after the build)"), "--verify")
    with pytest.raises(StoreError) as error:
        verify_store(ref)
    assert error.value.problems == [
        f"{bad} does not match its SHA-256 (its bytes changed after the build)"]


def test_a_deleted_hires_group_is_named_once(ref, capsys):
    n_files = sum(1 for f in (ref / "hires").rglob("*") if f.is_file())
    shutil.rmtree(ref / "hires")
    message = damaged(ref, f"hires/ is missing (all {n_files} files)")
    for read in (open_reference, describe_store, verify_store):
        with pytest.raises(StoreError) as error:
            read(ref)
        assert str(error.value) == message, read
    cli_fails(ref, capsys, message)
    cli_fails(ref, capsys, message, "--verify")


def test_a_deleted_manifest_and_an_unexpected_file_are_named(ref, capsys):
    (ref / "operator1" / "q" / "stray").write_bytes(b"not a chunk")
    cli_fails(ref, capsys, damaged(
        ref, "operator1/q/stray is not among the checksums (the build did not write it)"),
        "--verify")
    (ref / "checksums.json").unlink()
    cli_fails(ref, capsys, damaged(ref, "checksums.json is missing"))
    (ref / "checksums.json").write_text("{not json")
    cli_fails(ref, capsys, damaged(ref, "checksums.json cannot be read as qgzoo checksums"))


def test_what_is_not_a_store_is_said_plainly(built, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    foreign = tmp_path / "foreign.zarr"
    zarr.open_group(foreign, mode="w").attrs["title"] = "someone else's data"
    file = tmp_path / "notes.txt"
    file.write_text("hello")
    cases = {
        empty: f"{empty} is not a reference store: it has no zarr.json (stores are folders "
               f"written by `qgzoo data build`)",
        foreign: f"{foreign} is not a qgzoo reference store (no qgzoo_spec attribute)",
        built / "operator1": f"{built / 'operator1'} is not a qgzoo reference store (no "
                             f"qgzoo_spec attribute)",
        file: f"{file} is a file, not a reference store (a folder written by "
              f"`qgzoo data build`)",
        tmp_path / "nothing": f"no reference store at {tmp_path / 'nothing'}"}
    for path, message in cases.items():
        for read in (open_reference, describe_store, verify_store):
            with pytest.raises(StoreError) as error:
                read(path)
            assert str(error.value) == message, (path, read)
        cli_fails(path, capsys, message, "--verify")


def test_store_errors_are_user_errors():
    assert issubclass(StoreError, UserError)


@pytest.fixture(scope="module")
def old_store(tmp_path_factory) -> pathlib.Path:
    """A store as qgzoo built them before checksums: zstd alone, no manifest."""
    path = tmp_path_factory.mktemp("old") / "old.zarr"
    patch = pytest.MonkeyPatch()
    patch.setattr(store, "COMPRESSORS", (zarr.codecs.ZstdCodec(level=0),))
    try:
        build_store(qgzoo.ReferenceSpec(**SPEC), path, progress=False)
    finally:
        patch.undo()
    (path / "checksums.json").unlink()
    root = zarr.open_group(path, mode="r+")
    attrs = dict(root.attrs)
    del attrs["checksums"]
    root.attrs.clear()
    root.attrs.update(attrs)
    return path


def test_a_store_without_checksums_reads_as_before(old_store, built, capsys):
    codecs = json.loads((old_store / "operator1/q/zarr.json").read_text())["codecs"]
    assert [c["name"] for c in codecs] == ["bytes", "zstd"]
    old, new = open_reference(old_store), open_reference(built)
    for name in old.fields:  # the data do not depend on the codecs
        assert np.array_equal(np.asarray(old.fields[name][:]), np.asarray(new.fields[name][:]))
    assert verify_store(old_store) is None
    assert main(["data", "info", str(old_store), "--verify"]) == 0
    assert ("checksums none: built before qgzoo recorded them (rebuild to have them)"
            in capsys.readouterr().out)


def test_damage_to_a_store_without_checksums_is_still_named(old_store, tmp_path, capsys):
    ref = pathlib.Path(shutil.copytree(old_store, tmp_path / "old.zarr"))
    bad, gone = chunk("operator1/v", 0, 0, 0, 0, 0), chunk("operator1/q", 2, 0, 0, 0, 0)
    flip_byte(ref / bad, 0)  # zstd's magic number: a decompression error, not a raw one
    (ref / gone).unlink()
    with pytest.raises(StoreError) as error:
        open_reference(ref).split("train").stats()
    assert str(error.value).startswith(f"{ref} is damaged: {bad} cannot be decoded (")
    assert "Zstd" in error.value.problems[0] and len(error.value.problems) == 1
    with pytest.raises(StoreError) as error:
        describe_store(ref)
    assert error.value.problems[0].startswith(f"{gone} (run 2, test split) is missing")
    assert error.value.problems[1].startswith(f"{bad} (run 0, train split) cannot be decoded")
    assert len(error.value.problems) == 2
    capsys.readouterr()
    assert main(["data", "info", str(ref), "--verify"]) == 2
    shutil.rmtree(ref / "hires")
    cli_fails(ref, capsys, damaged(ref, "the group hires is missing"), "--verify")


def test_a_build_stopped_after_its_checksums_resumes_to_a_verified_store(tmp_path, monkeypatch):
    path = tmp_path / "stopped.zarr"
    spec = qgzoo.ReferenceSpec(**TINY)

    def stop(root):
        raise KeyboardInterrupt  # as if killed between the manifest and completion

    with monkeypatch.context() as patch:
        patch.setattr(store, "sanity_checks", stop)
        with pytest.raises(KeyboardInterrupt):
            build_store(spec, path, progress=False)
    assert (path / "checksums.json").exists()
    with pytest.raises(StoreError, match="incomplete"):
        open_reference(path)
    partial = path / chunk("operator1/q", 0, 0, 0, 0, 0)
    partial = partial.with_name(partial.name + ".0123.partial")  # a write killed midway
    partial.write_bytes(b"half")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a spin-up of 0 steps may warn; not the point here
        build_store(spec, path, progress=False)
    assert not partial.exists()
    assert verify_store(path) == len(json.loads((path / "checksums.json").read_text())["files"])


def test_two_processes_building_one_store_end_with_one_complete_store(tmp_path, built):
    path = tmp_path / "shared.zarr"
    script = (f"import qgzoo; from qgzoo.data.store import build_store; "
              f"build_store(qgzoo.ReferenceSpec(**{SPEC!r}), {str(path)!r}, progress=False)")
    builders = [subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE,
                                 text=True) for _ in range(2)]
    errors = [builder.communicate(timeout=600)[1] for builder in builders]
    assert [builder.returncode for builder in builders] == [0, 0], errors
    assert verify_store(path) > 0
    # No lock, no leftovers; the spin-up is kept for other stores of the same runs.
    spinup = f"spinup-{store.spinup_key(qgzoo.ReferenceSpec(**SPEC))}.eqx"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shared.zarr", spinup, spinup + ".sha256"]
    # The same bytes as the store built alone (the root's metadata aside: timestamps-free,
    # but the version string may differ between a checkout and an install).
    assert json.loads((path / "checksums.json").read_text())["files"] == json.loads(
        (built / "checksums.json").read_text())["files"]


def test_non_finite_values_written_with_valid_checksums_are_named(old_store, tmp_path, capsys):
    ref = pathlib.Path(shutil.copytree(old_store, tmp_path / "old.zarr"))
    array = zarr.open_group(ref, mode="r+")["operator1/u"]
    values = array[1]
    values[3, 0, 5, 7] = np.inf
    values[4, 1, 0, 0] = np.nan
    array[1] = values  # a chunk that decodes: only its values are wrong
    cli_fails(ref, capsys, damaged(ref, f"{chunk('operator1/u', 1, 0, 0, 0, 0)} (run 1, train "
                                        f"split) holds 2 non-finite values of {values.size}"))
