"""SVI against NumPyro (issue 5, Speed).

Case 1: logistic regression N=1000, D=25, mean-field Normal guide, ELBO with 1 particle,
Adam 1e-2, 5000 steps. NumPyro's `SVI.run` end to end (it traces and compiles on every
call) with and without its progress bar, and `svi.update` in a compiled `lax.scan`
(steady state); ours end to end with the progress bar on: cold (a fresh process: first
with an empty compilation cache, then with the persistent cache of `ppl.cache` filled)
and warm (a second call in the same process), and our steady-state steps/s (the driver's
fit phase of the warm call: compiled chunks plus the bar and host transfers between
them). Bars: ours end to end with the bar <= NumPyro's without; our steady state >=
NumPyro's compiled scan.

Case 2: a mixture-style model with one global discrete choice c (3 components) and a
continuous shift: ours with REINFORCE (moving-average baseline) and with enumeration vs
NumPyro's TraceGraph_ELBO and TraceEnum_ELBO (guide-side enumeration via
config_enumerate), same guide family: steps/s in a compiled loop and the final bound
(the exact ELBO at the fitted guide: enumerated over c, 4000 draws of the shift).

    PYTHONPATH=. python benchmarks/svi_vs_numpyro.py
"""

import json
import os
import subprocess
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as nd
import optax
from numpyro.infer import SVI as NSVI
from numpyro.infer import Trace_ELBO, TraceEnum_ELBO, TraceGraph_ELBO, init_to_median
from numpyro.infer.autoguide import AutoNormal

NUM_STEPS = 5000


# ----- case 1: logistic regression -------------------------------------------------


def numpyro_logistic(x, y=None):
    w = numpyro.sample("w", nd.Normal(0, 1).expand([x.shape[1]]).to_event(1))
    b = numpyro.sample("b", nd.Normal(0, 5))
    with numpyro.plate("data", x.shape[0]):
        numpyro.sample("y", nd.Bernoulli(logits=x @ w + b), obs=y)


def numpyro_case1(x, y):
    guide = AutoNormal(numpyro_logistic, init_loc_fn=init_to_median, init_scale=0.1)
    svi = NSVI(numpyro_logistic, guide, numpyro.optim.Adam(1e-2), Trace_ELBO())
    out = {}
    for bar in (False, True):
        t0 = time.perf_counter()
        result = svi.run(jax.random.key(0), NUM_STEPS, x, y, progress_bar=bar)
        jax.block_until_ready(result.params)
        out[f"run_bar={bar}"] = time.perf_counter() - t0
    out["final_loss"] = float(np.mean(np.asarray(result.losses)[-100:]))

    state = svi.init(jax.random.key(0), x, y)

    @jax.jit
    def scan(state):
        return jax.lax.scan(lambda s, _: svi.update(s, x, y), state, None, length=NUM_STEPS)

    jax.block_until_ready(scan(state))
    best = min(_timed(lambda: jax.block_until_ready(scan(state))) for _ in range(5))
    out["scan_steps_per_s"] = NUM_STEPS / best
    return out


def steady_pair(x, y, repeats=9):
    """Steady state of both, alternating (so that a change in the machine's speed hits
    both alike): median steps/s of our driver's fit phase and of NumPyro's compiled scan."""
    import ppl
    from ppl.examples import logistic_regression
    from ppl.vi.guides import Normal
    from ppl.vi.objectives import ELBO
    from ppl.vi.svi import SVI

    method = SVI(guide=Normal(), objective=ELBO(), optimizer=optax.adam(1e-2), num_steps=NUM_STEPS)
    model = logistic_regression(x, y=y)
    guide = AutoNormal(numpyro_logistic, init_loc_fn=init_to_median, init_scale=0.1)
    svi = NSVI(numpyro_logistic, guide, numpyro.optim.Adam(1e-2), Trace_ELBO())
    state = svi.init(jax.random.key(0), x, y)
    scan = jax.jit(lambda s: jax.lax.scan(lambda s, _: svi.update(s, x, y), s, None, NUM_STEPS))

    def ours():
        post = ppl.infer(model, method, num_samples=10, num_chains=1, seed=0, progress=True)
        return post.diagnostics["fit_time"]

    ours(), jax.block_until_ready(scan(state))  # compile both
    times = [(ours(), _timed(lambda: jax.block_until_ready(scan(state)))) for _ in range(repeats)]
    t_ours, t_numpyro = np.median(times, axis=0)
    return NUM_STEPS / t_ours, NUM_STEPS / t_numpyro


def _timed(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def ours_case1(progress=True, repeats=5):
    """First call and warm calls in this process: (first, [warm...], steady steps/s, loss)."""
    import ppl
    from benchmarks.common import data
    from ppl.examples import logistic_regression
    from ppl.vi.guides import Normal
    from ppl.vi.objectives import ELBO
    from ppl.vi.svi import SVI

    x, y = data()
    method = SVI(guide=Normal(), objective=ELBO(), optimizer=optax.adam(1e-2), num_steps=NUM_STEPS)
    times, fits = [], []
    for _ in range(1 + repeats):
        t0 = time.perf_counter()
        post = ppl.infer(logistic_regression(x, y=y), method, num_samples=1000, num_chains=1,
                         seed=0, progress=progress)  # fmt: skip
        times.append(time.perf_counter() - t0)
        fits.append(post.diagnostics["fit_time"])
    loss = float(post.diagnostics["final_loss"][0])
    return times[0], times[1:], NUM_STEPS / min(fits[1:] or fits), loss


def _cold(cache_dir):
    """Our first call in a fresh process (compilation included), with `cache_dir` as the
    persistent compilation cache."""
    env = dict(os.environ, PPL_CACHE_DIR=cache_dir, PYTHONPATH=".")
    code = (
        "import json, sys; sys.path.insert(0, '.');"
        "from benchmarks.svi_vs_numpyro import ours_case1;"
        "print(json.dumps(ours_case1(progress=True, repeats=0)[0]))"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(out.stderr)
    return float(out.stdout.strip().splitlines()[-1])


# ----- case 2: a discrete global choice -------------------------------------------

OFFSETS = jnp.array([-2.0, 0.0, 3.0])
N2, STEPS2, LR2 = 200, 3000, 2e-2


def mixture_data():
    rng = np.random.default_rng(1)
    return jnp.asarray(rng.normal(1.0, 1.0, N2), jnp.float32)


def mixture(x):
    c = numpyro.sample("c", nd.Categorical(probs=jnp.ones(3) / 3))
    shift = numpyro.sample("shift", nd.Normal(0.0, 1.0))
    with numpyro.plate("n", x.shape[0]):
        numpyro.sample("x", nd.Normal(shift + OFFSETS[c], 1.0), obs=x)


def make_guide(estimator=None):
    def guide(x):
        from numpyro.distributions import constraints

        probs = numpyro.param("c_probs", jnp.ones(3) / 3, constraint=constraints.simplex)
        kw = {} if estimator is None else {"infer": {"estimator": estimator}}
        numpyro.sample("c", nd.Categorical(probs=probs), **kw)
        loc = numpyro.param("shift_loc", 0.0)
        scale = numpyro.param("shift_scale", 1.0, constraint=constraints.positive)
        numpyro.sample("shift", nd.Normal(loc, scale))

    return guide


def exact_elbo(x, probs, loc, scale, num_draws=4000):
    """ELBO of q(c) q(shift) (mean field): exact over c, Monte Carlo over shift."""
    s = loc + scale * jax.random.normal(jax.random.key(9), (num_draws,))
    log_q_s = nd.Normal(loc, scale).log_prob(s)
    total = 0.0
    for c in range(3):
        lik = nd.Normal(s[:, None] + OFFSETS[c], 1.0).log_prob(x).sum(-1)
        log_p = jnp.log(1 / 3) + nd.Normal(0, 1).log_prob(s) + lik
        total += probs[c] * jnp.mean(log_p - log_q_s - jnp.log(probs[c] + 1e-30))
    return float(total)


def numpyro_case2(x, elbo):
    guide = make_guide()
    if isinstance(elbo, TraceEnum_ELBO):
        from numpyro.contrib.funsor import config_enumerate  # needs funsor

        guide = config_enumerate(guide)
    svi = NSVI(mixture, guide, numpyro.optim.Adam(LR2), elbo)
    state = svi.init(jax.random.key(0), x)

    @jax.jit
    def scan(state):
        return jax.lax.scan(lambda s, _: svi.update(s, x), state, None, length=STEPS2)

    state_out, _ = jax.block_until_ready(scan(state))
    best = min(_timed(lambda: jax.block_until_ready(scan(state))) for _ in range(5))
    p = svi.get_params(state_out)
    return STEPS2 / best, exact_elbo(x, p["c_probs"], p["shift_loc"], p["shift_scale"])


def ours_case2(x, estimator):
    import ppl
    from ppl.vi.objectives import ELBO
    from ppl.vi.svi import SVI

    method = SVI(guide=make_guide(estimator), objective=ELBO(), optimizer=optax.adam(LR2),
                 num_steps=STEPS2)  # fmt: skip
    m = ppl.model(mixture)(x)
    posts = [
        ppl.infer(m, method, num_samples=10, num_chains=1, seed=0, progress=False) for _ in range(6)
    ]  # the first compiles; the best of the other five, as for NumPyro's scan
    post = posts[-1]
    p = {k: v[0] for k, v in post.diagnostics["params"].items()}
    steps_per_s = STEPS2 / min(q.diagnostics["fit_time"] for q in posts[1:])
    return steps_per_s, exact_elbo(x, p["c_probs"], p["shift_loc"], p["shift_scale"])


def main():
    from benchmarks.common import data

    print(f"jax {jax.__version__}, numpyro {numpyro.__version__}, device {jax.devices()[0]}")
    x, y = data()
    print(f"\n== case 1: logistic regression N={x.shape[0]}, D={x.shape[1]}, {NUM_STEPS} steps")
    with tempfile.TemporaryDirectory() as cache:
        cold_empty = _cold(cache)
        cold_cached = _cold(cache)
    first, warm, steady, loss = ours_case1()
    npy = numpyro_case1(x, y)
    warm = min(warm)
    rows = [
        ("numpyro SVI.run, no bar", npy["run_bar=False"], NUM_STEPS / npy["run_bar=False"]),
        ("numpyro SVI.run, bar", npy["run_bar=True"], NUM_STEPS / npy["run_bar=True"]),
        ("numpyro update in lax.scan (steady)", NUM_STEPS / npy["scan_steps_per_s"],
         npy["scan_steps_per_s"]),
        ("ppl cold, empty compilation cache, bar", cold_empty, NUM_STEPS / cold_empty),
        ("ppl cold, persistent cache filled, bar", cold_cached, NUM_STEPS / cold_cached),
        ("ppl first call in this process, bar", first, NUM_STEPS / first),
        ("ppl warm (second call), bar", warm, NUM_STEPS / warm),
        ("ppl steady state (driver fit phase)", NUM_STEPS / steady, steady),
    ]  # fmt: skip
    for name, t, rate in rows:
        print(f"{name:42s} {t:8.3f} s  {rate:12,.0f} steps/s")
    print(f"final loss (mean of last 100): numpyro {npy['final_loss']:.2f}, ppl {loss:.2f}")
    base = npy["run_bar=False"]
    print(f"bar 1: ppl end to end with bar / numpyro without bar: warm {warm / base:.3f}, "
          f"cold (cache filled) {cold_cached / base:.2f}, cold (empty cache) "
          f"{cold_empty / base:.2f}  (<= 1 passes)")  # fmt: skip
    pair = steady_pair(x, y)
    print(
        f"bar 2: ppl steady steps/s / numpyro compiled scan: "
        f"{steady / npy['scan_steps_per_s']:.2f}; measured alternately (median of 9 each): "
        f"ppl {pair[0]:,.0f}, numpyro {pair[1]:,.0f}, ratio {pair[0] / pair[1]:.2f}  (>= 1 passes)"
    )

    print(
        f"\n== case 2: global discrete choice (3 components), N={N2}, {STEPS2} steps, "
        f"Adam {LR2}, 1 particle"
    )
    xm = mixture_data()
    runs = [
        ("ppl REINFORCE + moving-average baseline", lambda: ours_case2(xm, "reinforce")),
        ("ppl enumeration", lambda: ours_case2(xm, "enum")),
        ("numpyro TraceGraph_ELBO", lambda: numpyro_case2(xm, TraceGraph_ELBO())),
        ("numpyro TraceEnum_ELBO (guide enumerated)", lambda: numpyro_case2(xm, TraceEnum_ELBO())),
    ]
    results = []
    for name, run in runs:
        try:  # an anchor that breaks on this JAX (numpyro 0.21's provenance on JAX 0.11)
            results.append((name, run()))
        except Exception as e:  # noqa: BLE001
            print(f"{name:42s} failed: {type(e).__name__}: {str(e)[:120]}")
            continue
        rate, bound = results[-1][1]
        print(f"{name:42s} {rate:12,.0f} steps/s   final ELBO {bound:10.3f}")
    print(json.dumps({"case2": {n: r for n, r in results}}, default=float))


if __name__ == "__main__":
    main()
