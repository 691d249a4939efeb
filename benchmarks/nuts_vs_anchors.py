"""NUTS on Bayesian logistic regression: ppl against NumPyro and BlackJAX.

N=1000, D=25 (synthetic, fixed seed), 4 chains, 500 warmup + 1000 draws. Each
library runs in a fresh subprocess so that its first call pays compilation as a
user's script does ("cold"); the same process then makes a second call with
another seed ("warm"). ppl also runs twice more against a fresh persistent
compilation cache: the second of those is "cold, with cache". This script runs
them all in turn, on the same model and data, and prints the table and ratios.

    python benchmarks/nuts_vs_anchors.py          # needs the bench extra (blackjax)
"""

import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
from common import NUM_CHAINS, NUM_SAMPLES, NUM_WARMUP, data, hand_log_density

HERE = os.path.dirname(os.path.abspath(__file__))


def min_ess_bulk(draws):
    """Smallest bulk ESS over parameters; draws: (chains, draws, params)."""
    from ppl.infer.summary import ess_bulk

    return min(ess_bulk(draws[:, :, i]) for i in range(draws.shape[-1]))


def run_ppl(seed):
    import ppl
    from ppl import examples

    x, y = data()
    post = ppl.infer(
        examples.logistic_regression(x, y=y), method="nuts", num_warmup=NUM_WARMUP,
        num_samples=NUM_SAMPLES, num_chains=NUM_CHAINS, seed=seed, progress=False,
    )  # fmt: skip
    draws = np.concatenate([post.samples["w"], post.samples["b"][..., None]], axis=-1)
    return draws, int(post.sample_stats["num_grad_evals"].sum())


_CACHE = {}


def run_numpyro(seed):
    import jax
    import numpyro
    import numpyro.distributions as dist
    from numpyro.infer import MCMC, NUTS

    def model(x, y):
        w = numpyro.sample("w", dist.Normal(0, 1).expand([x.shape[1]]).to_event(1))
        b = numpyro.sample("b", dist.Normal(0, 5))
        with numpyro.plate("data", x.shape[0]):
            numpyro.sample("y", dist.Bernoulli(logits=x @ w + b), obs=y)

    if "mcmc" not in _CACHE:
        _CACHE["mcmc"] = MCMC(
            NUTS(model), num_warmup=NUM_WARMUP, num_samples=NUM_SAMPLES,
            num_chains=NUM_CHAINS, chain_method="vectorized", progress_bar=False,
            jit_model_args=True,
        )  # fmt: skip
    mcmc = _CACHE["mcmc"]
    x, y = data()
    mcmc.run(jax.random.PRNGKey(seed), x, y, extra_fields=("num_steps",))
    s = mcmc.get_samples(group_by_chain=True)
    draws = np.concatenate([np.asarray(s["w"]), np.asarray(s["b"])[..., None]], axis=-1)
    return draws, int(np.asarray(mcmc.get_extra_fields()["num_steps"]).sum())


def _blackjax_program():
    import blackjax
    import jax

    x, y = data()
    log_density = hand_log_density(x, y)
    warmup = blackjax.window_adaptation(blackjax.nuts, log_density)

    def one_chain(key):
        k_init, k_warm, k_draw = jax.random.split(key, 3)
        init = jax.random.uniform(k_init, (x.shape[1] + 1,), minval=-2, maxval=2)
        (state, params), _ = warmup.run(k_warm, init, num_steps=NUM_WARMUP)
        step = blackjax.nuts(log_density, **params).step

        def body(state, k):
            state, info = step(k, state)
            return state, (state.position, info.num_integration_steps)

        _, (positions, steps) = jax.lax.scan(body, state, jax.random.split(k_draw, NUM_SAMPLES))
        return positions, steps

    return jax.jit(jax.vmap(one_chain))


def run_blackjax(seed):
    import jax

    if "program" not in _CACHE:
        _CACHE["program"] = _blackjax_program()
    positions, steps = _CACHE["program"](jax.random.split(jax.random.key(seed), NUM_CHAINS))
    return np.asarray(positions), int(np.asarray(steps).sum())


RUNNERS = {"ppl": run_ppl, "numpyro": run_numpyro, "blackjax": run_blackjax}


def worker(name):
    """Inside a fresh process: a cold call, then a warm one; print JSON."""
    out = {}
    for label, seed in (("cold", 0), ("warm", 1)):
        t0 = time.perf_counter()
        draws, grad_evals = RUNNERS[name](seed)
        out[label] = time.perf_counter() - t0
    ess = min_ess_bulk(draws)
    out.update(min_ess_bulk=ess, ess_per_s=ess / out["warm"], grad_evals=grad_evals)
    print(json.dumps(out))


def spawn(name, env=None):
    cmd = [sys.executable, __file__, "--worker", name]
    res = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **(env or {})})
    if res.returncode:
        raise RuntimeError(f"{name} worker failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def floor_seconds():
    """Time of one 4-chain value_and_grad of the hand-written density in a fused loop."""
    import jax
    import jax.numpy as jnp
    from common import seconds_per_eval

    x, y = data()
    theta = jnp.zeros((NUM_CHAINS, x.shape[1] + 1)) + 0.01
    return seconds_per_eval(jax.vmap(jax.value_and_grad(hand_log_density(x, y))), theta)


def main():
    no_cache = {"PPL_COMPILATION_CACHE": "0"}
    results = {name: spawn(name, no_cache) for name in RUNNERS}
    with tempfile.TemporaryDirectory() as cache:
        spawn("ppl", {"PPL_CACHE_DIR": cache})
        results["ppl"]["cold_with_cache"] = spawn("ppl", {"PPL_CACHE_DIR": cache})["cold"]
    per_eval = floor_seconds()
    import jax

    print(
        f"NUTS, logistic regression N=1000 D=25, {NUM_CHAINS} chains, {NUM_WARMUP} warmup + "
        f"{NUM_SAMPLES} draws, {jax.devices()[0].platform}, {os.cpu_count()} cores"
    )
    print(f"one {NUM_CHAINS}-chain value_and_grad in a fused loop: {per_eval * 1e6:.1f} us")
    print(
        "| library | cold s | warm s | min ESS_bulk | ESS/s (warm) | grad evals (sampling) | floor s | warm / floor |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name, r in results.items():
        floor = r["grad_evals"] / NUM_CHAINS * per_eval
        print(
            f"| {name} | {r['cold']:.2f} | {r['warm']:.2f} | {r['min_ess_bulk']:.0f} | "
            f"{r['ess_per_s']:.0f} | {r['grad_evals']} | {floor:.2f} | {r['warm'] / floor:.1f} |"
        )
    print(
        f"ppl cold with a warm persistent compilation cache: {results['ppl']['cold_with_cache']:.2f} s"
    )
    for anchor in ("numpyro", "blackjax"):
        a, p = results[anchor], results["ppl"]
        print(
            f"ppl vs {anchor}: warm ESS/s x{p['ess_per_s'] / a['ess_per_s']:.2f}, "
            f"cold time x{p['cold'] / a['cold']:.2f}, warm time x{p['warm'] / a['warm']:.2f}"
        )


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        worker(sys.argv[2])
    else:
        main()
