"""Reference data: an ensemble of spun-up high-resolution runs, coarsened.

Runs advance together (vmapped, jitted scans); each sample is coarsened on the
fly, so the high-resolution fields are never stored. Generated data are cached
on disk (``QGZOO_CACHE``, default ``~/.cache/qgzoo``) keyed by the content of
the reference and coarsener specs.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import tempfile
from typing import Literal

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from pydantic import Field, model_validator
from pyqg_jax.steppers import AB3Stepper, SteppedModel
from tqdm.auto import tqdm

from qgzoo import qg
from qgzoo.spec import CoarsenerSpec, FrozenSpec

FIELDS = ("q", "u", "v", "q_forcing_total", "q_subgrid_forcing")
#: Bump when generation changes what a spec produces, so stale caches are not reused.
DATA_VERSION = 1
PHYSICS_NAMES = ("beta", "rd", "delta", "H1", "U1", "U2", "rek", "L", "filterfac")


class ReferenceSpec(FrozenSpec):
    """A QG configuration and an ensemble of high-resolution runs sampled after spin-up."""

    config: Literal["eddy", "jet"] = Field("eddy", description="physics preset (SCIENCE.md)")
    physics: dict[str, float] = Field(
        default_factory=dict,
        description="overrides of the preset's parameters, SI units (beta 1/(m s), rd m, ...)")
    hires_nx: int = Field(128, ge=16, le=1024, description="high-resolution grid points per side")
    lores_nx: int = Field(32, ge=8, description="low-resolution grid points per side")
    dt: float = Field(3600.0, gt=0, description="high-resolution AB3 time step, seconds")
    precision: Literal["single", "double"] = "double"
    n_runs: int = Field(8, ge=2, description="ensemble size (train + test runs)")
    n_test_runs: int = Field(2, ge=1, description="runs held out for testing")
    spinup_steps: int = Field(17520, ge=0, description="steps discarded before sampling")
    n_samples: int = Field(400, ge=2, description="samples kept per run")
    sample_interval: int = Field(1, ge=1, description="high-resolution steps between samples")
    seed: int = 0

    @model_validator(mode="after")
    def _check(self):
        unknown = set(self.physics) - set(PHYSICS_NAMES)
        if unknown:
            raise ValueError(f"physics: unknown parameters {sorted(unknown)}; "
                             f"allowed: {list(PHYSICS_NAMES)}")
        for name in ("hires_nx", "lores_nx"):
            if getattr(self, name) % 2:
                raise ValueError(f"{name} must be even, got {getattr(self, name)}")
        if self.lores_nx >= self.hires_nx:
            raise ValueError(f"lores_nx ({self.lores_nx}) must be smaller than "
                             f"hires_nx ({self.hires_nx})")
        if self.hires_nx % self.lores_nx:
            raise ValueError(f"lores_nx ({self.lores_nx}) must divide hires_nx ({self.hires_nx})")
        if self.n_test_runs >= self.n_runs:
            raise ValueError(f"n_test_runs ({self.n_test_runs}) must leave training runs "
                             f"out of n_runs ({self.n_runs})")
        return self

    @property
    def physical_parameters(self) -> dict[str, float]:
        return {**qg.PRESETS[self.config], **self.physics}

    def hires_model(self):
        return qg.make_model(self.physical_parameters, self.hires_nx, self.precision)

    def lores_model(self):
        return qg.make_model(self.physical_parameters, self.lores_nx, self.precision)

    @property
    def sample_seconds(self) -> float:
        """Time between samples, in seconds."""
        return self.sample_interval * self.dt


class FieldStats(eqx.Module):
    """Per-layer standard deviations of the training data, in the fields' units."""

    std: dict[str, jax.Array]

    @classmethod
    def placeholder(cls, nz: int = 2) -> "FieldStats":
        """Stats of the right shapes (ones), for building a module before loading weights."""
        return cls({name: jnp.ones(nz) for name in FIELDS})


class ReferenceData(eqx.Module):
    """Coarsened samples, each field shaped (run, time, nz, n, n); first runs are training."""

    fields: dict[str, np.ndarray]
    n_test_runs: int = eqx.field(static=True)

    @property
    def n_runs(self) -> int:
        return self.fields["q"].shape[0]

    def split(self, name: Literal["train", "test"]) -> "ReferenceData":
        n_train = self.n_runs - self.n_test_runs
        part = slice(0, n_train) if name == "train" else slice(n_train, None)
        return ReferenceData({k: v[part] for k, v in self.fields.items()}, self.n_test_runs)

    def stats(self) -> FieldStats:
        """Per-layer std over runs, time and space (means are held at zero)."""
        return FieldStats({k: jnp.asarray(np.sqrt(np.mean(v**2, axis=(0, 1, 3, 4))))
                           for k, v in self.fields.items()})


def _sampler(coarsener):
    def sample(q_hires):
        q = coarsener.coarsen(q_hires)
        u, v = qg.velocities(coarsener.lores, q)
        return dict(q=q, u=u, v=v,
                    q_forcing_total=coarsener.q_forcing_total(q_hires),
                    q_subgrid_forcing=coarsener.q_subgrid_forcing(q_hires))
    return sample


def generate(spec: ReferenceSpec, coarsener: CoarsenerSpec, *, progress: bool = True,
             chunk_steps: int = 1000) -> ReferenceData:
    """Run the ensemble, spin it up and sample it, coarsened by ``coarsener``."""
    hires = spec.hires_model()
    model = SteppedModel(hires, AB3Stepper(dt=float(spec.dt)))
    sample = jax.vmap(_sampler(coarsener.build(hires, spec.lores_model())))
    keys = jax.random.split(jax.random.key(spec.seed), spec.n_runs)
    state = jax.jit(jax.vmap(model.create_initial_state))(keys)

    def advance(state, n_steps):
        step = jax.vmap(model.step_model)
        return jax.lax.fori_loop(0, n_steps, lambda _, s: step(s), state)

    advance = jax.jit(advance, static_argnums=1)

    def sample_chunk(state, n_samples):
        def body(state, _):
            state = advance(state, spec.sample_interval)
            return state, sample(state.state.q)
        return jax.lax.scan(body, state, length=n_samples)

    sample_chunk = jax.jit(sample_chunk, static_argnums=1)

    total = spec.spinup_steps + spec.n_samples * spec.sample_interval
    bar = tqdm(total=total, desc="reference", unit="step", disable=not progress)
    done = 0
    while done < spec.spinup_steps:
        n = min(chunk_steps, spec.spinup_steps - done)
        state = advance(state, n)
        state.state.qh.block_until_ready()
        done += n
        bar.update(n)
    # The first sample is the spun-up state itself.
    chunks = [jax.tree.map(lambda x: x[:, None], sample(state.state.q))]
    per_chunk = max(1, chunk_steps // spec.sample_interval)
    remaining = spec.n_samples - 1
    bar.update(spec.sample_interval)
    while remaining > 0:
        n = min(per_chunk, remaining)
        state, out = sample_chunk(state, n)
        chunks.append(jax.tree.map(lambda x: jnp.moveaxis(x, 0, 1), out))
        remaining -= n
        bar.update(n * spec.sample_interval)
    bar.close()
    fields = {k: np.concatenate([np.asarray(c[k]) for c in chunks], axis=1) for k in FIELDS}
    if not all(np.isfinite(v).all() for v in fields.values()):
        raise FloatingPointError("the reference run produced non-finite values; "
                                 "reduce dt or check the physics parameters")
    return ReferenceData(fields, spec.n_test_runs)


def cache_key(spec: ReferenceSpec, coarsener: CoarsenerSpec) -> str:
    """Content hash of the specs that determine the data."""
    text = json.dumps([DATA_VERSION, spec.model_dump(mode="json"),
                       coarsener.model_dump(mode="json")],
                      sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def cache_dir() -> pathlib.Path:
    return pathlib.Path(os.environ.get("QGZOO_CACHE", pathlib.Path.home() / ".cache" / "qgzoo"))


def load_or_generate(spec: ReferenceSpec, coarsener: CoarsenerSpec, *,
                     progress: bool = True, cache: bool = True) -> ReferenceData:
    """The reference data, from the on-disk cache if this spec was generated before."""
    path = cache_dir() / f"reference-{cache_key(spec, coarsener)}.npz"
    if cache and path.exists():
        with np.load(path) as stored:
            return ReferenceData({k: stored[k] for k in FIELDS}, spec.n_test_runs)
    data = generate(spec, coarsener, progress=progress)
    if cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".npz", delete=False) as tmp:
            np.savez(tmp, **data.fields)
        os.replace(tmp.name, path)
    return data
