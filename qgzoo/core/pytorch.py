"""PyTorch files read without torch: state dicts and pickles of numpy arrays, as numpy.

``read_state_dict`` reads a ``torch.save``d state dict in torch's zip format (a
pickle, ``*/data.pkl``, whose persistent ids name raw little-endian storages
``*/data/N``); ``read_pickle`` reads a plain pickle. Unpickling runs code, so
both build only what they know: numpy arrays, ordered dicts, tensors of
torch's storage types, and the classes a caller names as stand-ins (read as
plain records of their attributes). Anything else is refused.
"""

from __future__ import annotations

import collections
import pathlib
import pickle
import zipfile

import numpy as np

from qgzoo.core.errors import UserError

#: torch's storage classes and the little-endian numpy dtypes of their bytes.
STORAGE_DTYPES = {"DoubleStorage": "<f8", "FloatStorage": "<f4", "HalfStorage": "<f2",
                  "LongStorage": "<i8", "IntStorage": "<i4", "ShortStorage": "<i2",
                  "CharStorage": "i1", "ByteStorage": "u1", "BoolStorage": "?"}

# numpy 2 moved numpy.core to numpy._core; pickles of numpy 1 name the old module.
_NUMPY = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
          ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
          ("numpy", "ndarray"), ("numpy", "dtype")}


class Record:
    """A stand-in for a pickled object of a class not installed here: its attributes."""

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        self.__dict__.update(state if isinstance(state, dict) else {"state": state})


def _rebuild_tensor(storage, offset, size, stride, *_):
    """torch._utils._rebuild_tensor_v2: a strided view of ``storage``, copied."""
    item = storage.itemsize
    view = np.lib.stride_tricks.as_strided(storage[offset:], shape=tuple(size),
                                           strides=tuple(s * item for s in stride))
    return np.array(view)


class _Unpickler(pickle.Unpickler):
    def __init__(self, file, source: str, stand_ins: set[str], archive=None, prefix=""):
        super().__init__(file)
        self.source, self.stand_ins = source, stand_ins
        self.archive, self.prefix = archive, prefix

    def find_class(self, module, name):
        if (module, name) in _NUMPY:
            return super().find_class(module.replace("numpy.core", "numpy._core"), name)
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if f"{module}.{name}" in self.stand_ins:
            return Record
        if self.archive is not None:
            if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
                return _rebuild_tensor
            if module == "torch" and name in STORAGE_DTYPES:
                return np.dtype(STORAGE_DTYPES[name])  # what persistent_load gets
        raise UserError(f"{self.source}: refusing to load {module}.{name} from a pickle "
                        f"(only numpy arrays, tensors and named stand-ins are read)")

    def persistent_load(self, pid):
        if self.archive is None or not (isinstance(pid, tuple) and pid[0] == "storage"):
            raise UserError(f"{self.source}: unexpected persistent id {pid!r}")
        _, dtype, key, _location, numel = pid
        array = np.frombuffer(self.archive.read(f"{self.prefix}data/{key}"), dtype)
        if array.size != numel:
            raise UserError(f"{self.source}: storage {key} holds {array.size} values, "
                            f"its tensor names {numel}")
        return array


def read_pickle(path: str | pathlib.Path, stand_ins: set[str] = frozenset()):
    """The object in the pickle at ``path``; classes named (``module.Class``) in
    ``stand_ins`` come back as ``Record``s of their attributes."""
    path = pathlib.Path(path)
    with path.open("rb") as file:
        try:
            return _Unpickler(file, str(path), set(stand_ins)).load()
        except (pickle.UnpicklingError, EOFError, ValueError) as error:
            raise UserError(f"{path} is not a readable pickle ({error})") from None


def read_state_dict(path: str | pathlib.Path) -> dict[str, np.ndarray]:
    """The tensors of a PyTorch state dict saved by ``torch.save`` (zip format), by name,
    as numpy arrays of their own dtype and shape."""
    path = pathlib.Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            pickles = [name for name in archive.namelist() if name.endswith("/data.pkl")]
            if len(pickles) != 1:
                raise UserError(f"{path} is not a PyTorch file in the zip format "
                                f"(no single */data.pkl)")
            prefix = pickles[0][:-len("data.pkl")]
            if archive.namelist().count(f"{prefix}byteorder") and \
                    archive.read(f"{prefix}byteorder").strip() != b"little":
                raise UserError(f"{path}: big-endian storages are not supported")
            with archive.open(pickles[0]) as file:
                state = _Unpickler(file, str(path), set(), archive, prefix).load()
    except (zipfile.BadZipFile, KeyError, pickle.UnpicklingError, EOFError) as error:
        raise UserError(f"{path} is not a readable PyTorch file ({error})") from None
    if not isinstance(state, dict):
        raise UserError(f"{path} holds a {type(state).__name__}, not a state dict")
    return dict(state)
