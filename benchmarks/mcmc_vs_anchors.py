"""ppl's MCMC kernels against NumPyro's NUTS and BlackJAX's NUTS, HMC, MALA and RMH.

Three models, the same for every library: (a) Bayesian logistic regression,
N=1000, D=25 (benchmarks/common.py); (b) non-centred eight schools; (c) a
100-D zero-mean Gaussian with a rotated covariance of condition number 1e2
(fixed seed). ppl runs the model as a user writes it (`ppl.infer`); NumPyro
runs the same model in NumPyro (`chain_method="vectorized"`,
`progress_bar=False`, `jit_model_args=True`: its fastest configuration, see
nuts_vs_anchors.py); BlackJAX runs a hand-written log density over the flat
unconstrained vector, `jit(vmap(one_chain))` over chains.

Settings (the same for every library):
- 4 chains: NUTS and HMC 500 warmup + 1000 draws per chain; 128 chains: 200 + 200
  (fewer draws: the point there is the throughput of many vectorized chains).
- MALA and RWMH (one or no gradient per step) run 10x as many steps, so that
  their ESS is large enough to estimate; ESS per second accounts for the cost.
- HMC: a fixed number of leapfrog steps per model (HMC_STEPS), step size and
  diagonal mass matrix from window adaptation (BlackJAX: `window_adaptation`).
- BlackJAX's MALA and RMH have no adaptation of their own: their step size
  (RMH: the isotropic proposal scale) is tuned by one run of dual averaging
  (`blackjax.adaptation.step_size.dual_averaging_adaptation`) over all warmup
  toward the acceptance rate ppl targets (MALA 0.574, RWMH 0.234), from the
  same start (RWMH 2.38/sqrt(d)). Neither takes a mass matrix, so unlike ppl's
  they are not preconditioned.
- Every chain starts uniform in [-2, 2] in unconstrained space.

Timing: each (model, library, kernel) runs in its own fresh subprocess, with
ppl's persistent compilation cache off. "cold" is the first 4-chain call,
compilation included, as in a user's script (imports and data are made before
the clock starts, the same for all); "warm" the median time of three further calls with
other seeds (WARM_SEEDS).
At 128 chains the same process then makes a first call ("first": compilation
for the new shapes, in a process that has compiled the 4-chain run) and warm
ones. For ppl, "of which sampler s" is the time inside its driver (warmup and
sampling), the rest of a call being chain initialisation, transforms and the
R-hat/ESS checks every ppl run makes by default; "warm s, no R-hat/ESS checks" times
the same ppl calls with `convergence_checks=False`, the like-for-like figure against
BlackJAX and NumPyro, whose runs compute no such checks. ESS is ppl's rank-normalised bulk ESS (Stan's estimator) for
every library, the minimum over parameters, averaged over the warm runs (one run's value
moves by about 10% from seed to seed, as much as the ratios it would decide). "grads/draw" is
gradient evaluations per draw per chain while sampling, where the library
reports them.

Run it on a quiet machine. ppl's and NumPyro's Gaussian use NumPyro's
MultivariateNormal, whose log density is a triangular solve; at 128 chains XLA's
CPU triangular solve is fast alone (faster than the hand-written precision form,
see the last table) but 10-100x slower while other processes share the cores,
which makes those rows swing from run to run.

    python benchmarks/mcmc_vs_anchors.py          # ~11 min on 2 CPU cores
    python benchmarks/mcmc_vs_anchors.py --quick  # tiny settings, to check it runs
    BENCH_CHAINS=128 BENCH_MODELS=logistic BENCH_KERNELS=nuts python ...  # a part of it
    BENCH_LIBRARIES=ppl,blackjax python ...  # without NumPyro
"""

import json
import os
import subprocess
import sys
import time
from functools import cache

import numpy as np
from common import (
    data,
    eight_schools_log_density,
    gaussian_covariance,
    gaussian_log_density,
    hand_log_density,
    min_ess_bulk,
)


def subset(variable, full):
    """Those of `full` named in the environment variable (comma-separated; all when it is
    unset): to run a part, e.g. `BENCH_CHAINS=128 BENCH_KERNELS=nuts` on a lent GPU."""
    chosen = os.environ.get(variable)
    return tuple(x for x in full if not chosen or str(x) in chosen.split(","))


MODELS = subset("BENCH_MODELS", ("logistic", "eight_schools", "gaussian"))
KERNELS = subset("BENCH_KERNELS", ("nuts", "hmc", "mala", "rwmh"))
ANCHOR_KERNELS = {"numpyro": subset("BENCH_KERNELS", ("nuts",)), "blackjax": KERNELS}
LIBRARIES = subset("BENCH_LIBRARIES", ("ppl", "numpyro", "blackjax"))
HMC_STEPS = {"logistic": 8, "eight_schools": 8, "gaussian": 16}
TARGET_ACCEPT = {"mala": 0.574, "rwmh": 0.234}
CHEAP = {"mala": 10, "rwmh": 10}  # step multiplier for kernels with <= 1 gradient per step
SETTINGS = {4: (500, 1000), 128: (200, 200)}  # chains: (warmup, draws) of NUTS and HMC
SETTINGS = {c: SETTINGS[c] for c in subset("BENCH_CHAINS", tuple(SETTINGS))}
QUICK = {4: (50, 50), 128: (20, 20)}
WARM_SEEDS = (1, 2, 3)  # warm calls per run: median time, mean ESS (one run's ESS is ±10%)


def steps(kernel, num_chains, quick=False):
    warmup, draws = (QUICK if quick else SETTINGS)[num_chains]
    return warmup * CHEAP.get(kernel, 1), draws * CHEAP.get(kernel, 1)


# -- the models ---------------------------------------------------------------------------


@cache
def problem(name):
    """(ppl bound model, NumPyro model, its arguments, hand-written flat log density)."""
    import jax.numpy as jnp
    import numpyro
    import numpyro.distributions as dist

    import ppl
    from ppl import examples

    if name == "logistic":
        x, y = data()

        def model(x, y):
            w = numpyro.sample("w", dist.Normal(0, 1).expand([x.shape[1]]).to_event(1))
            b = numpyro.sample("b", dist.Normal(0, 5))
            with numpyro.plate("data", x.shape[0]):
                numpyro.sample("y", dist.Bernoulli(logits=x @ w + b), obs=y)

        return examples.logistic_regression(x, y=y), model, (x, y), hand_log_density(x, y)
    if name == "eight_schools":
        y, sigma = jnp.asarray(examples.EIGHT_SCHOOLS_Y), jnp.asarray(examples.EIGHT_SCHOOLS_SIGMA)

        def model(sigma, y):
            mu = numpyro.sample("mu", dist.Normal(0, 5))
            tau = numpyro.sample("tau", dist.HalfCauchy(5))
            with numpyro.plate("school", len(sigma)):
                raw = numpyro.sample("theta_raw", dist.Normal(0, 1))
                numpyro.sample("y", dist.Normal(mu + tau * raw, sigma), obs=y)

        bound = examples.eight_schools(sigma, y=y)
        return bound, model, (sigma, y), eight_schools_log_density(y, sigma)
    if name == "gaussian":
        cov = gaussian_covariance()
        scale_tril = jnp.asarray(np.linalg.cholesky(cov), dtype=jnp.float32)
        precision = jnp.asarray(np.linalg.inv(cov), dtype=jnp.float32)

        def model(scale_tril):
            loc = jnp.zeros(scale_tril.shape[0])
            numpyro.sample("x", dist.MultivariateNormal(loc, scale_tril=scale_tril))

        @ppl.model
        def gaussian(scale_tril):
            loc = jnp.zeros(scale_tril.shape[0])
            ppl.sample("x", ppl.dist.MultivariateNormal(loc, scale_tril=scale_tril))

        return gaussian(scale_tril), model, (scale_tril,), gaussian_log_density(precision)
    raise ValueError(name)


def dim(name):
    return {"logistic": 26, "eight_schools": 10, "gaussian": 100}[name]


def flat(samples, names, num_chains):
    """A dict of (chains, draws, *shape) arrays as one (chains, draws, params) array."""
    return np.concatenate(
        [np.asarray(samples[n]).reshape(num_chains, -1, int(np.prod(samples[n].shape[2:])))
         for n in names], axis=-1,
    )  # fmt: skip


# -- the libraries: run(model, kernel, chains, warmup, draws, seed) ------------------------
# Each returns (draws (chains, draws, params), gradients per draw or None, ppl's driver time).


def ppl_method(model, kernel):
    import ppl

    if kernel == "nuts":
        return ppl.mcmc.NUTS()
    if kernel == "hmc":
        return ppl.mcmc.HMC(num_steps=HMC_STEPS[model], jitter=False)  # as BlackJAX: fixed L
    if kernel == "mala":
        return ppl.mcmc.MALA()
    return ppl.mcmc.RWMH()


def run_ppl(model, kernel, num_chains, num_warmup, num_samples, seed, checks=True):
    import ppl

    post = ppl.infer(
        problem(model)[0], method=ppl_method(model, kernel), num_warmup=num_warmup,
        num_samples=num_samples, num_chains=num_chains, seed=seed, progress=False,
        convergence_checks=checks,
    )  # fmt: skip
    grads = post.sample_stats.get("num_grad_evals")
    grads = float(np.mean(grads)) if kernel in ("nuts", "hmc") and grads is not None else None
    sampler = post.diagnostics["warmup_time"] + post.diagnostics["sampling_time"]
    return flat(post.samples, post.latent_sites, num_chains), grads, sampler


_COMPILED = {}


def run_numpyro(model, kernel, num_chains, num_warmup, num_samples, seed):
    import jax
    from numpyro.infer import MCMC, NUTS

    _, numpyro_model, args, _ = problem(model)
    key = (model, num_chains, num_warmup, num_samples)
    if key not in _COMPILED:
        _COMPILED[key] = MCMC(
            NUTS(numpyro_model), num_warmup=num_warmup, num_samples=num_samples,
            num_chains=num_chains, chain_method="vectorized", progress_bar=False,
            jit_model_args=True,
        )  # fmt: skip
    mcmc = _COMPILED[key]
    mcmc.run(jax.random.PRNGKey(seed), *args, extra_fields=("num_steps",))
    samples = mcmc.get_samples(group_by_chain=True)
    grads = float(np.asarray(mcmc.get_extra_fields()["num_steps"]).mean())
    return flat(samples, sorted(samples), num_chains), grads, None


def _tuned_step_size(kernel, algorithm, log_density, num_warmup, d):
    """BlackJAX MALA / RMH with one run of dual averaging on the step size over warmup."""
    import blackjax
    import jax
    import jax.numpy as jnp

    da_init, da_update, da_final = blackjax.adaptation.step_size.dual_averaging_adaptation(
        TARGET_ACCEPT[kernel]
    )

    def warmup(key, position):
        def body(carry, k):
            state, da = carry
            state, info = algorithm(log_density, jnp.exp(da.log_step_size)).step(k, state)
            return (state, da_update(da, info.acceptance_rate)), None

        start = 2.38 / d**0.5 if kernel == "rwmh" else 1.0
        carry = (algorithm(log_density, start).init(position), da_init(start))
        (state, da), _ = jax.lax.scan(body, carry, jax.random.split(key, num_warmup))
        return state, da_final(da)

    return warmup


def _blackjax_program(model, kernel, num_warmup, num_samples):
    import blackjax
    import jax

    log_density, d = problem(model)[3], dim(model)
    if kernel in ("nuts", "hmc"):
        extra = {"num_integration_steps": HMC_STEPS[model]} if kernel == "hmc" else {}
        algorithm = getattr(blackjax, kernel)
        adaptation = blackjax.window_adaptation(algorithm, log_density, **extra)

        def warmup(key, position):
            (state, params), _ = adaptation.run(key, position, num_steps=num_warmup)
            return state, params

        def make(params):  # params: step size, inverse mass matrix (and HMC's steps)
            return algorithm(log_density, **params)
    else:
        algorithm = blackjax.mala if kernel == "mala" else blackjax.normal_random_walk
        warmup = _tuned_step_size(kernel, algorithm, log_density, num_warmup, d)

        def make(step_size):
            return algorithm(log_density, step_size)

    def one_chain(key):
        k_init, k_warm, k_draw = jax.random.split(key, 3)
        state, params = warmup(k_warm, jax.random.uniform(k_init, (d,), minval=-2, maxval=2))
        step = make(params).step

        def body(state, k):
            state, info = step(k, state)
            return state, (state.position, getattr(info, "num_integration_steps", 0))

        _, (positions, grads) = jax.lax.scan(body, state, jax.random.split(k_draw, num_samples))
        return positions, grads

    return jax.jit(jax.vmap(one_chain))


def run_blackjax(model, kernel, num_chains, num_warmup, num_samples, seed):
    import jax

    key = (model, kernel, num_warmup, num_samples)
    if key not in _COMPILED:
        _COMPILED[key] = _blackjax_program(model, kernel, num_warmup, num_samples)
    positions, grads = _COMPILED[key](jax.random.split(jax.random.key(seed), num_chains))
    grads = float(np.asarray(grads).mean()) if kernel in ("nuts", "hmc") else None
    return np.asarray(positions), grads, None


RUNNERS = {"ppl": run_ppl, "numpyro": run_numpyro, "blackjax": run_blackjax}


# -- measurement ----------------------------------------------------------------------------


def timed(fn, *args, **kwargs):
    """(fn(*args, **kwargs), its wall time in seconds)."""
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0


def worker(model, library, kernel, quick):
    """Inside a fresh process: cold and warm calls at 4 chains, first and warm at 128."""
    problem(model)  # imports (jax, numpyro, ppl) and data, outside the timings
    if library == "blackjax":
        import blackjax  # noqa: F401
    out = {}
    for num_chains in SETTINGS:
        args = (model, kernel, num_chains, *steps(kernel, num_chains, quick))
        r = out[num_chains] = {}
        r["cold" if num_chains == 4 else "first"] = timed(RUNNERS[library], *args, 0)[1]
        times, ess, grads, sampler = [], [], [], []
        for seed in WARM_SEEDS:
            (draws, g, s), seconds = timed(RUNNERS[library], *args, seed)
            times.append(seconds)
            ess.append(min_ess_bulk(draws))
            grads.append(g)
            sampler.append(s)
        r["warm"], r["ess"] = float(np.median(times)), float(np.mean(ess))
        r["unchecked"] = None
        if library == "ppl":  # the same calls without the R-hat/ESS checks (BlackJAX has none)
            unchecked = [timed(run_ppl, *args, seed, checks=False)[1] for seed in WARM_SEEDS]
            r["unchecked"] = float(np.median(unchecked))
        r["grads"] = None if grads[0] is None else float(np.mean(grads))
        r["sampler"] = None if sampler[0] is None else float(np.median(sampler))
        r["ess_per_s"] = r["ess"] / r["warm"]
    print(json.dumps(out))


def spawn(model, library, kernel, quick):
    cmd = [sys.executable, __file__, "--worker", model, library, kernel] + ["--quick"] * quick
    env = {**os.environ, "PPL_COMPILATION_CACHE": "0"}
    res = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if res.returncode:
        raise RuntimeError(f"{model} {library} {kernel} failed:\n{res.stderr[-3000:]}")
    out = json.loads(res.stdout.strip().splitlines()[-1])
    return {int(k): v for k, v in out.items()}


def ppl_kernels():
    import ppl.mcmc

    names = {"nuts": "NUTS", "hmc": "HMC", "mala": "MALA", "rwmh": "RWMH"}
    return tuple(k for k in KERNELS if hasattr(ppl.mcmc, names[k]))


def fmt(value, spec=".2f"):
    return "-" if value is None or not np.isfinite(value) else format(value, spec)


def table(results, num_chains, quick):
    warmup, draws = steps("nuts", num_chains, quick)
    cold = "cold s" if num_chains == 4 else "first s"
    print(
        f"\n### {num_chains} chains: NUTS/HMC {warmup} warmup + {draws} draws, "
        f"MALA/RWMH {CHEAP['mala']}x that\n"
    )
    print(
        f"| model | kernel | library | {cold} | warm s | of which sampler s | warm s, no "
        f"R-hat/ESS checks | min ESS_bulk | ESS/s | grads/draw | ppl/this ESS/s | "
        f"ppl/this {cold.split()[0]} |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    first = "cold" if num_chains == 4 else "first"
    for (model, library, kernel), r in results.items():
        r = r[num_chains]
        ours = results.get((model, "ppl", kernel), {}).get(num_chains)
        ratio = cold_ratio = None
        if library != "ppl" and ours:
            ratio = ours["ess_per_s"] / r["ess_per_s"]
            cold_ratio = ours[first] / r[first]
        print(
            f"| {model} | {kernel} | {library} | {r[first]:.2f} | {r['warm']:.3f} | "
            f"{fmt(r['sampler'], '.3f')} | {fmt(r.get('unchecked'), '.3f')} | "
            f"{fmt(r['ess'], '.0f')} | {fmt(r['ess_per_s'], '.0f')} | {fmt(r['grads'], '.1f')} | "
            f"{fmt(ratio)} | {fmt(cold_ratio)} |"
        )


def summary(results, num_chains):
    """Per model: ppl's best kernel against the best anchor (library and kernel)."""
    first = "cold" if num_chains == 4 else "first"
    print(f"\n### Best of ppl vs best anchor, {num_chains} chains (by warm ESS/s)\n")
    print(
        f"| model | ppl best | ESS/s | anchor best | ESS/s | ESS/s ratio | {first} ratio | "
        "ESS/s ratio, ppl without R-hat/ESS checks |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for model in MODELS:

        def best(libraries, model=model):
            rows = [(k, v[num_chains]) for k, v in results.items() if k[0] == model]
            rows = [(k, v) for k, v in rows if k[1] in libraries and np.isfinite(v["ess_per_s"])]
            return max(rows, key=lambda kv: kv[1]["ess_per_s"], default=(None, None))

        (pk, p), (ak, a) = best(("ppl",)), best(("numpyro", "blackjax"))
        if p is None or a is None:
            continue
        ours = [v[num_chains] for k, v in results.items() if k[0] == model and k[1] == "ppl"]
        unchecked = max(v["ess"] / v["unchecked"] for v in ours if v.get("unchecked"))
        print(
            f"| {model} | {pk[2]} | {p['ess_per_s']:.0f} | {ak[1]} {ak[2]} | "
            f"{a['ess_per_s']:.0f} | {p['ess_per_s'] / a['ess_per_s']:.2f} | "
            f"{p[first] / a[first]:.2f} | {unchecked / a['ess_per_s']:.2f} |"
        )


def density_costs():
    """µs per value_and_grad of ppl's LogDensity and of the hand-written density (the
    BlackJAX side), vmapped over chains in a fused loop: what one gradient costs each side."""
    import jax
    import jax.numpy as jnp
    from common import seconds_per_eval

    print("\n### One value_and_grad, µs (vmapped over chains, fused loop)\n")
    print("| model | chains | ppl LogDensity | hand-written | ppl / hand |")
    print("|---|---|---|---|---|")
    for model in MODELS:
        bound, _, _, hand = problem(model)
        ld = bound.log_density()
        for num_chains, repeats in ((4, 2000), (128, 200)):
            if num_chains not in SETTINGS:
                continue
            theta = jnp.zeros((num_chains, ld.size)) + 0.01
            t_ppl, t_hand = (
                seconds_per_eval(jax.vmap(jax.value_and_grad(f)), theta, repeats) * 1e6
                for f in (ld, hand)
            )
            print(f"| {model} | {num_chains} | {t_ppl:.1f} | {t_hand:.1f} | {t_ppl / t_hand:.2f} |")


def main(quick):
    import jax

    t0 = time.perf_counter()
    runs = [(m, "ppl", k) for m in MODELS for k in ppl_kernels()]
    runs += [(m, lib, k) for m in MODELS for lib, ks in ANCHOR_KERNELS.items() for k in ks]
    runs = [r for r in runs if r[1] in LIBRARIES]
    runs.sort(key=lambda r: (MODELS.index(r[0]), KERNELS.index(r[2]), r[1] != "ppl"))
    results = {}
    for run in runs:
        results[run] = spawn(*run, quick)
        print(f"{' '.join(run)}: {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    print(
        f"MCMC vs NumPyro and BlackJAX, {jax.devices()[0].platform}, {os.cpu_count()} cores"
        + (" (QUICK settings: timings and ESS are not meaningful)" if quick else "")
    )
    for num_chains in SETTINGS:
        table(results, num_chains, quick)
        summary(results, num_chains)
    density_costs()
    print(f"\ntotal {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    quick = "--quick" in sys.argv
    args = [a for a in sys.argv[1:] if a != "--quick"]
    if args[:1] == ["--worker"]:
        worker(*args[1:], quick)
    else:
        main(quick)
