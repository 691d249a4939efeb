"""Particle-filter throughput: ppl's "pf" against a bootstrap filter hand-written in JAX.

Linear-Gaussian state-space model (x_t = 0.9 x_{t-1} + N(0, 1), y_t = x_t + N(0, 0.5²)),
T = 200 steps, systematic resampling at every step, one filter. The hand-written
filter is the floor: a `lax.scan` that only propagates, weights, resamples and sums
the log evidence. ppl's run is the whole `ppl.infer(...)` call, which also records
ancestors and states for smoothing, filtering means and one traced-back trajectory.
Both are timed warm (compiled code cached) as the best of 3; throughput is particles ×
time steps per second; the log evidence of both is printed next to the Kalman filter's.

    PYTHONPATH=. python benchmarks/pf_vs_hand.py [num_particles ...]
"""

import sys
import time

import jax
import jax.numpy as jnp

import ppl
from ppl import dist
from ppl.smc.resampling import resample
from tests.kalman import R, kalman, simulate  # the model's exact answers, as the tests use

T, PHI, Q = 200, 0.9, 1.0


@ppl.model
def lgssm(y):
    def step(x_prev, y_t):
        x = ppl.sample("x", dist.Normal(PHI * x_prev, Q))
        ppl.sample("y", dist.Normal(x, R), obs=y_t)
        return x, None

    ppl.scan(step, jnp.zeros(()), y)


def hand_filter(num_particles):
    @jax.jit
    def run(key, y):
        def step(carry, inputs):
            x, log_z = carry
            y_t, key = inputs
            key_move, key_resample = jax.random.split(key)
            x = PHI * x + Q * jax.random.normal(key_move, x.shape)
            log_w = jax.scipy.stats.norm.logpdf(y_t, x, R)
            log_z = log_z + jax.nn.logsumexp(log_w) - jnp.log(num_particles)
            x = x[resample(key_resample, log_w, scheme="systematic")]
            return (x, log_z), None

        keys = jax.random.split(key, y.shape[0])
        (_, log_z), _ = jax.lax.scan(step, (jnp.zeros(num_particles), 0.0), (y, keys))
        return log_z

    return run


def best_of(fn, repeats=3):
    fn()  # compile
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def main(sizes):
    y = jnp.asarray(simulate(0, T, PHI, Q), jnp.float32)
    log_z = float(kalman(y, PHI, Q)[0])
    print(f"T={T}, device {jax.devices()[0].platform}, Kalman log p(y) = {log_z:.3f}")
    print(f"{'particles':>10} {'hand (s)':>9} {'ppl (s)':>9} {'hand p·t/s':>12} {'ppl p·t/s':>12} "
          f"{'ppl/hand':>8} {'logZ hand':>10} {'logZ ppl':>10}")  # fmt: skip
    for n in sizes:
        hand = hand_filter(n)
        key = jax.random.key(1)
        t_hand, z_hand = best_of(lambda: float(hand(key, y)))  # noqa: B023
        method = ppl.smc.ParticleFilter(num_particles=n, resample_threshold=1.0)
        model = lgssm(y)

        def ours():
            post = ppl.infer(model, method=method, num_samples=1, num_chains=1, progress=False)  # noqa: B023
            return post.log_evidence

        t_ppl, z_ppl = best_of(ours)
        rate = lambda t: n * T / t  # noqa: E731, B023
        print(f"{n:>10} {t_hand:>9.4f} {t_ppl:>9.4f} {rate(t_hand):>12.3g} {rate(t_ppl):>12.3g} "
              f"{t_ppl / t_hand:>8.2f} {z_hand:>10.3f} {z_ppl:>10.3f}")  # fmt: skip


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [1000, 10_000, 100_000])
