"""The forward time loop: chunks of steps from Python take exactly the steps asked for."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from qgzoo.simulate.loop import StepLoop


def _smooth(weight, x):
    """A 3x3 circular convolution of x (ny, nx)."""
    padded = jnp.pad(x, 1, mode="wrap")[None, None]
    return jax.lax.conv_general_dilated(padded, weight[None, None], (1, 1), "VALID")[0, 0]


@pytest.mark.parametrize("with_convolution", [False, True])
def test_steps_and_their_numbers_equal_those_of_a_python_loop(with_convolution):
    weight = jnp.asarray(np.random.default_rng(0).uniform(0, 0.2, (3, 3)))

    def step(weight, carry, number):
        x, numbers = carry
        x = _smooth(weight, x) if with_convolution else 0.9 * x + weight[0, 0]
        return x + 1e-3 * number, numbers + number

    x0 = jnp.asarray(np.random.default_rng(1).normal(size=(8, 8)))
    loop = StepLoop(step, weight, (x0, jnp.int32(0)), chunk=4)
    assert loop.unrolled == with_convolution
    x, numbers = loop((x0, jnp.int32(0)), 5, 11)  # two chunks and three single steps
    x_ref = np.asarray(x0)
    w = np.asarray(weight)
    for number in range(6, 17):
        if with_convolution:
            x_ref = sum(w[a, b] * np.roll(x_ref, (1 - a, 1 - b), (0, 1))
                        for a in range(3) for b in range(3))
        else:
            x_ref = 0.9 * x_ref + w[0, 0]
        x_ref = x_ref + 1e-3 * number
    assert int(numbers) == sum(range(6, 17))
    np.testing.assert_allclose(np.asarray(x), x_ref, rtol=1e-12)
    assert loop((x0, jnp.int32(0)), 0, 0)[0] is x0


def test_a_negative_count_is_refused():
    loop = StepLoop(lambda a, c, n: c + a, jnp.float32(1), jnp.float32(0))
    with pytest.raises(ValueError, match="non-negative"):
        loop(jnp.float32(0), 0, -1)
