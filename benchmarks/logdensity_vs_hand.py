"""Cost of ppl's LogDensity value_and_grad against the same density written by hand.

Bayesian logistic regression, N=1000, D=25. Both are evaluated for 4 chains
(vmapped) inside a fused `fori_loop`, the way a sampler calls them.

    python benchmarks/logdensity_vs_hand.py
"""

import jax
import jax.numpy as jnp
from common import NUM_CHAINS, data, hand_log_density, seconds_per_eval

from ppl import examples


def main():
    x, y = data()
    ld = examples.logistic_regression(x, y=y).log_density()
    hand = hand_log_density(x, y)
    theta = jnp.zeros((NUM_CHAINS, ld.size)) + 0.01
    assert jnp.allclose(jax.vmap(ld)(theta), jax.vmap(hand)(theta), rtol=1e-5)
    t_ppl = seconds_per_eval(jax.vmap(jax.value_and_grad(ld)), theta)
    t_hand = seconds_per_eval(jax.vmap(jax.value_and_grad(hand)), theta)
    print(f"value_and_grad, {NUM_CHAINS} chains, N=1000, D=25, on {jax.devices()[0].platform}")
    print(f"  hand-written JAX : {t_hand * 1e6:8.2f} us")
    print(f"  ppl LogDensity   : {t_ppl * 1e6:8.2f} us")
    print(f"  ratio ppl / hand : {t_ppl / t_hand:8.3f}")


if __name__ == "__main__":
    main()
