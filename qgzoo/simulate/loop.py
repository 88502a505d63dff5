"""The forward time loop: compiled chunks of unrolled steps, driven from Python.

XLA's CPU backend runs convolutions inside a compiled loop (``lax.fori_loop``,
``lax.scan``, ``lax.while_loop``) several times slower than the same
convolutions in straight-line code: 2.3x for the zoo's CNN and 12x for the
FullyCNN at 64^2 (``benchmarks/loop_steps.py``). So the long forward runs
(online runs, long runs, the cost timer) advance in chunks of ``CHUNK`` steps,
each chunk one compiled program with its steps unrolled, called from Python;
steps that do not fill a chunk run one compiled step at a time. The cost of a
Python call per chunk is microseconds against milliseconds per step. Steps
without a convolution stay one compiled loop of any length: they run as fast
there and compile in a fraction of the time.
"""

from __future__ import annotations

import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
from jax.sharding import Mesh

from qgzoo.core import devices

#: Steps unrolled into one compiled chunk.
CHUNK = 8


class StepLoop:
    """Steps ``first + 1 .. first + n`` of ``step(arrays, carry, step_number) -> carry``.

    ``arrays`` (network weights, model constants) are arguments of the compiled
    programs, not constants baked into them. The programs are compiled when the
    loop is made, for a carry shaped like ``carry``; ``compile_seconds`` is how
    long that took. ``unrolled`` says whether steps run in chunks of ``chunk``
    unrolled steps (when a step has a convolution) or in one compiled loop.
    With a ``mesh``, the carry's leaves lead with the runs axis and each device
    steps its own runs (``devices.over_runs``).
    """

    def __init__(self, step: Callable[[Any, Any, jax.Array], Any], arrays, carry, *,
                 chunk: int = CHUNK, mesh: Mesh | None = None):
        if chunk < 1:
            raise ValueError(f"chunk must be positive, got {chunk}")
        step = devices.over_runs(step, mesh, split=(1,))

        def steps(n, unroll):
            def run(arrays, carry, first, n):
                return jax.lax.fori_loop(0, n, lambda i, c: step(arrays, c, first + i + 1),
                                         carry, unroll=unroll)
            return jax.jit(run, static_argnums=3 if unroll else ()).lower(
                arrays, carry, jnp.int32(0), n).compile()

        start = time.perf_counter()
        self.unrolled = "convolution" in jax.jit(step).lower(arrays, carry, jnp.int32(1)).as_text()
        self.chunk = chunk
        self._arrays = arrays
        if self.unrolled:
            self._one = steps(1, True)
            self._chunk = steps(chunk, True) if chunk > 1 else self._one
        else:
            self._loop = steps(jnp.int32(1), False)
        self.compile_seconds = time.perf_counter() - start

    def __call__(self, carry, first: int, n: int):
        """``carry`` after steps ``first + 1`` to ``first + n`` (n >= 0)."""
        if n < 0:
            raise ValueError(f"n must be non-negative, got {n}")
        if not self.unrolled:
            return self._loop(self._arrays, carry, jnp.int32(first), jnp.int32(n)) if n else carry
        done = 0
        while n - done >= self.chunk:
            carry = self._chunk(self._arrays, carry, jnp.int32(first + done))
            done += self.chunk
        for i in range(done, n):
            carry = self._one(self._arrays, carry, jnp.int32(first + i))
        return carry
