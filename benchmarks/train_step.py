"""One online training step: qgzoo's compiled update against a hand-written loop.

Both sides do the same work: a batch of windows of T reference samples of the
eddy configuration at low resolution (Operator1-coarsened), each rolled out
from its first sample with AB3 through the CNN-parameterized pyqg-jax model,
scored by the q MSE normalised by var(q) per layer, differentiated, and one
Adam update applied.

- qgzoo: ``qgzoo.training.trainer.make_update`` on a ``Setup`` built from an
  ``Experiment``, called with partitioned params, exactly as ``qgzoo.train``
  calls it (its rollout is a checkpointed chunked scan).
- baseline: an ``eqx.Module`` CNN, a pyqg-jax param function, a plain
  ``jax.lax.scan`` rollout, ``eqx.filter_value_and_grad``, ``optax.adam`` and an
  ``eqx.filter_jit`` step, written here by hand.

The two start from the same weights (same initialisation keys), so their
first losses must agree; the script checks that before timing. Both are
compiled first, then timed in interleaved repetitions; the medians and their
ratio are printed. Nothing is asserted about the times.

    .venv/bin/python benchmarks/train_step.py            # defaults: nx 32, batch 8, T 10
    .venv/bin/python benchmarks/train_step.py --reps 40 --checkpoint-chunk 5
"""

from __future__ import annotations

import argparse
import statistics
import time

import qgzoo  # noqa: I001  (first: it switches on float64, which pyqg-jax needs)

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from pyqg_jax.parameterizations import ParameterizedModel
from pyqg_jax.steppers import AB3Stepper, SteppedModel

from qgzoo.physics import qg
from qgzoo.components.networks import trainable
from qgzoo.core.fields import FieldStats
from qgzoo.core.schema import validate_component
from qgzoo.training.trainer import Setup, make_update


# --- the hand-written baseline -------------------------------------------------------

class BaselineCNN(eqx.Module):
    """in -> hidden... -> out, 5x5 (by default) circular convolutions, ReLU between, float32."""

    convs: tuple[eqx.nn.Conv2d, ...]

    def __init__(self, sizes, kernel, *, key):
        keys = jax.random.split(key, len(sizes) - 1)
        self.convs = tuple(
            eqx.nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2, padding_mode="CIRCULAR",
                          dtype=jnp.float32, key=k)
            for c_in, c_out, k in zip(sizes[:-1], sizes[1:], keys))

    def __call__(self, x):
        for conv in self.convs[:-1]:
            x = jax.nn.relu(conv(x))
        return self.convs[-1](x)


def cnn_param_func(net, q_std, forcing_std, state, param_aux, model):
    """pyqg-jax param_func: dq/dt = RHS + S, with S = CNN(q / std(q)) * std(S)."""
    full = model.get_full_state(state)
    x = (full.q / q_std[:, None, None]).astype(jnp.float32)
    forcing = net(x).astype(full.q.dtype) * forcing_std[:, None, None]
    forcing_h = jnp.fft.rfftn(forcing, axes=(-2, -1))
    return state.update(qh=full.dqhdt + forcing_h), param_aux


def make_baseline_step(lores, dt, q_std, forcing_std, q_var, optimizer):
    """The jitted step (net, opt_state, q_batch) -> (net, opt_state, loss)."""

    def window_loss(net, q_window):
        param_func = jax.tree_util.Partial(cnn_param_func, net, q_std, forcing_std)
        model = SteppedModel(ParameterizedModel(lores, param_func=param_func),
                             AB3Stepper(dt=dt))
        start = lores.create_initial_state(jax.random.key(0)).update(q=q_window[0])
        state = model.initialize_stepper_state(model.model.initialize_param_state(start))

        def one_step(state, _):
            state = model.step_model(state)
            return state, state.state.model_state.q

        _, q_pred = jax.lax.scan(one_step, state, length=q_window.shape[0] - 1)
        per_layer = jnp.mean((q_pred - q_window[1:]) ** 2, axis=(-2, -1)) / q_var
        return jnp.mean(per_layer)

    def batch_loss(net, q_batch):
        return jnp.mean(jax.vmap(window_loss, in_axes=(None, 0))(net, q_batch))

    @eqx.filter_jit
    def step(net, opt_state, q_batch):
        loss, grads = eqx.filter_value_and_grad(batch_loss)(net, q_batch)
        updates, opt_state = optimizer.update(grads, opt_state, eqx.filter(net, eqx.is_array))
        return eqx.apply_updates(net, updates), opt_state, loss

    return step


# --- the data -------------------------------------------------------------------------

def reference_samples(experiment, n_runs: int, spinup_steps: int, n_samples: int, seed: int = 0):
    """Coarsened samples of a short high-res pyqg-jax ensemble: q and its stats.

    Returns q (run, time, nz, n, n) in 1/s and ``FieldStats`` (per-layer RMS of
    every field the networks and losses may be scaled by), as qgzoo's reference
    data would give them, without depending on how qgzoo stores its data.
    """
    spec = experiment.reference
    hires, lores = spec.hires_model(), spec.lores_model()
    coarsener = experiment.coarsener.build(hires, lores)
    model = SteppedModel(hires, AB3Stepper(dt=float(spec.dt)))

    def advance(state, n_steps):
        return jax.lax.fori_loop(0, n_steps, lambda _, s: model.step_model(s), state)

    def sample(state, _):
        state = advance(state, spec.sample_interval)
        q_hires = state.state.q
        q = coarsener.coarsen(q_hires)
        u, v = qg.velocities(lores, q)
        return state, dict(q=q, u=u, v=v, q_forcing_total=coarsener.q_forcing_total(q_hires),
                           q_subgrid_forcing=coarsener.q_subgrid_forcing(q_hires))

    @jax.jit
    def run(key):
        state = advance(model.create_initial_state(key), spinup_steps)
        return jax.lax.scan(sample, state, length=n_samples)[1]

    keys = jax.random.split(jax.random.key(seed), n_runs)
    fields = jax.vmap(run)(keys)
    if not all(bool(jnp.isfinite(v).all()) for v in fields.values()):
        raise FloatingPointError("the reference run blew up")
    stats = FieldStats({k: jnp.sqrt(jnp.mean(v**2, axis=(0, 1, 3, 4))) for k, v in fields.items()})
    return np.asarray(fields["q"]), stats


def draw_windows(q, n_windows: int, length: int, seed: int = 0) -> np.ndarray:
    """``n_windows`` random windows of ``length`` consecutive samples: (window, time, nz, n, n)."""
    rng = np.random.default_rng(seed)
    runs = rng.integers(q.shape[0], size=n_windows)
    starts = rng.integers(q.shape[1] - length + 1, size=n_windows)
    return q[runs[:, None], starts[:, None] + np.arange(length)]


# --- the benchmark --------------------------------------------------------------------

def plain_state_mse() -> dict:
    """The state_mse loss spec scoring every wavenumber (the baseline's plain normalised MSE)."""
    spec = {"kind": "state_mse"}
    if "scales" in type(validate_component("loss", spec)).model_fields:
        spec["scales"] = "all"
    return spec


def experiment_from(args) -> qgzoo.Experiment:
    return qgzoo.Experiment(
        reference=dict(config="eddy", hires_nx=args.hires_nx, lores_nx=args.lores_nx),
        coarsener={"kind": "operator1"},
        network={"kind": "cnn", "channels": list(args.channels),
                 "kernel_sizes": [args.kernel] * (len(args.channels) + 1)},
        loss=plain_state_mse(),
        stepper={"kind": "ab3", "dt": 3600.0},
        optimizer={"name": "adam", "learning_rate": 1e-3},
        training={"rollout_steps": args.rollout_steps, "batch_size": args.batch_size,
                  "steps": 1000, "checkpoint_chunk": args.checkpoint_chunk},
    )


def timed(fn, *args):
    """fn(*args) finished, its wall-clock seconds and this process's CPU seconds."""
    c0, t0 = time.process_time(), time.perf_counter()
    out = jax.block_until_ready(fn(*args))
    return out, time.perf_counter() - t0, time.process_time() - c0


def summary(name, wall, cpu):
    return (f"{name} update: wall median {1e3 * statistics.median(wall):8.1f} ms "
            f"(min {1e3 * min(wall):.1f}, max {1e3 * max(wall):.1f}); "
            f"CPU median {1e3 * statistics.median(cpu):8.1f} ms; {len(wall)} reps")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lores-nx", type=int, default=32)
    parser.add_argument("--hires-nx", type=int, default=64)
    parser.add_argument("--runs", type=int, default=1, help="high-res runs sampled for the data")
    parser.add_argument("--spinup-steps", type=int, default=2 * 8760,
                        help="hourly high-res steps before sampling (2 years: developed eddies)")
    parser.add_argument("--samples", type=int, default=40, help="samples per run")
    parser.add_argument("--channels", type=int, nargs="+", default=[32, 32])
    parser.add_argument("--kernel", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--rollout-steps", type=int, default=10)
    parser.add_argument("--checkpoint-chunk", type=int, default=10,
                        help="qgzoo's training.checkpoint_chunk (samples per remat chunk)")
    parser.add_argument("--reps", type=int, default=20, help="timed repetitions of each side")
    args = parser.parse_args(argv)

    experiment = experiment_from(args)
    if experiment.steps_per_sample != 1:
        raise SystemExit("the baseline takes one model step per sample")
    t0 = time.perf_counter()
    q_all, stats = reference_samples(experiment, args.runs, args.spinup_steps, args.samples)
    print(f"reference: eddy {args.hires_nx} -> {args.lores_nx}, {experiment.coarsener.kind}, "
          f"{args.runs} run(s) x {args.samples} hourly samples after {args.spinup_steps} "
          f"spin-up steps ({time.perf_counter() - t0:.1f} s)")
    print(f"jax {jax.__version__} on {jax.devices()[0].platform}: batch {args.batch_size} "
          f"x T = {args.rollout_steps}, CNN {args.channels} {args.kernel}x{args.kernel}, AB3 "
          f"dt 3600 s, checkpoint_chunk {args.checkpoint_chunk}, "
          f"loss {experiment.loss.model_dump()}")

    # qgzoo: what train() builds and calls.
    setup = Setup.from_experiment(experiment, stats)
    optimizer = experiment.optimizer.transformation(experiment.training.steps)
    params, static = eqx.partition(setup.parameterization, trainable(setup.parameterization))
    opt_state = optimizer.init(params)
    update = make_update(setup, optimizer)
    windows = draw_windows(q_all, args.batch_size, args.rollout_steps + 1)
    q_batch = jnp.asarray(windows, setup.lores.filtr.dtype)
    # state_mse never reads the forcing; the update takes a batch of that shape all the same.
    forcing_batch = jnp.zeros_like(q_batch)
    keys = jnp.zeros((args.batch_size, 2), jnp.uint32)  # the CNN draws no noise

    # baseline: same weights (same keys as qgzoo's CNN), same scales, plain optax.adam.
    net = BaselineCNN((2, *args.channels, 2), args.kernel,
                      key=jax.random.key(experiment.training.seed))
    base_optimizer = optax.adam(1e-3)
    base_opt_state = base_optimizer.init(eqx.filter(net, eqx.is_array))
    base_step = make_baseline_step(setup.lores, 3600.0, stats.std["q"],
                                   stats.std["q_forcing_total"], stats.std["q"] ** 2,
                                   base_optimizer)

    # Compile both (the first call), and check that they compute the same loss.
    (params_q, opt_q, loss_q, finite), t_q, _ = timed(update, params, static, opt_state,
                                                      q_batch, forcing_batch, keys)
    (net_b, opt_b, loss_b), t_b, _ = timed(base_step, net, base_opt_state, q_batch)
    print(f"first call (compile + run): qgzoo {t_q:.1f} s, baseline {t_b:.1f} s")
    print(f"first loss: qgzoo {float(loss_q):.6g}, baseline {float(loss_b):.6g} "
          f"(relative difference {abs(float(loss_q) / float(loss_b) - 1):.1e})")
    if not np.isclose(float(loss_q), float(loss_b), rtol=1e-4):
        print("WARNING: the two losses differ: the sides are not doing the same work")

    wall = {"qgzoo": [], "baseline": []}
    cpu = {"qgzoo": [], "baseline": []}
    for rep in range(args.reps):
        # Alternate which side goes first, so drift and other load fall on both.
        for side in (("qgzoo", "baseline") if rep % 2 == 0 else ("baseline", "qgzoo")):
            if side == "qgzoo":
                (params_q, opt_q, loss_q, finite), t, c = timed(
                    update, params_q, static, opt_q, q_batch, forcing_batch, keys)
            else:
                (net_b, opt_b, loss_b), t, c = timed(base_step, net_b, opt_b, q_batch)
            wall[side].append(t)
            cpu[side].append(c)

    print(summary("qgzoo   ", wall["qgzoo"], cpu["qgzoo"]))
    print(summary("baseline", wall["baseline"], cpu["baseline"]))
    ratio = {name: {k: statistics.median(v[k]) for k in v} for name, v in
             (("wall", wall), ("cpu", cpu))}
    print(f"CPU-time ratio qgzoo/baseline = {ratio['cpu']['qgzoo'] / ratio['cpu']['baseline']:.2f}"
          " (this process's CPU seconds: insensitive to other load, blind to idle threads)")
    print(f"ratio qgzoo/baseline = {ratio['wall']['qgzoo'] / ratio['wall']['baseline']:.2f} "
          "(wall-clock medians; target <= 1.05)")

if __name__ == "__main__":
    main()
