"""IAF flow guides against NumPyro's AutoIAFNormal (issue 6, Speed).

Two models: a 10-D funnel (v ~ N(0, 3²), x_1..9 ~ N(0, exp(v/2)²); log Z = 0) and the
logistic regression of benchmarks/common.py (N=1000, D=25). Guides of matching size:
ours `ppl.vi.guides.IAF(num_flows=2, hidden=(32, 32))` (plus a learned diagonal affine
base, 2d parameters, started at scale 1 like AutoIAFNormal's N(0, I) base) and NumPyro's
`AutoIAFNormal(num_flows=2, hidden_dims=[32, 32])`. Same optimizer, Adam 1e-3 (ppl's
default `ppl.vi.adam`, NumPyro's `numpyro.optim.Adam`), 10,000 steps, ELBO with one
particle. Steady-state steps/s:
10,000 steps in one compiled `lax.scan`, after a first call that compiles; ours and
NumPyro's timed alternately, the median of 5 calls each;
ours runs the SVI method's step as the driver does (unguarded, `safe=False`: a chunk in
which a non-finite value appears is run again with guarded steps).
Final ELBO: the 1-particle ELBO averaged over 20,000 draws from the fitted guide (its
Monte Carlo standard error is printed). Bar: ours/numpyro steps/s >= 1.0 with an ELBO
at least as good.

    PYTHONPATH=. python benchmarks/flows_vs_numpyro.py
"""

import time

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as nd
from numpyro.infer import SVI as NSVI
from numpyro.infer import Trace_ELBO
from numpyro.infer.autoguide import AutoIAFNormal

import ppl
import ppl.examples
import ppl.vi as vi
from benchmarks.common import data
from ppl import dist
from ppl.vi.guides import IAF, bind_guide

NUM_STEPS, LR, EVAL_DRAWS = 10_000, 1e-3, 20_000


def numpyro_funnel():
    v = numpyro.sample("v", nd.Normal(0.0, 3.0))
    numpyro.sample("x", nd.Normal(0.0, jnp.exp(v / 2)).expand([9]).to_event(1))


@ppl.model
def funnel():
    v = ppl.sample("v", dist.Normal(0.0, 3.0))
    ppl.sample("x", dist.Normal(0.0, jnp.exp(v / 2)).expand([9]).to_event(1))


def numpyro_logistic(x, y=None):
    w = numpyro.sample("w", nd.Normal(0, 1).expand([x.shape[1]]).to_event(1))
    b = numpyro.sample("b", nd.Normal(0, 5))
    with numpyro.plate("data", x.shape[0]):
        numpyro.sample("y", nd.Bernoulli(logits=x @ w + b), obs=y)


def _alternating(fits, repeats=5):
    """Steps/s of each fit (a function running the compiled scan), timed alternately so
    that a change in the machine's speed hits all alike: the median of `repeats` calls
    each, after a first call that compiles. Returns (final states, steps/s)."""
    outs = [jax.block_until_ready(fit()) for fit in fits]
    times = [[] for _ in fits]
    for _ in range(repeats):
        for fit, t in zip(fits, times):
            t0 = time.perf_counter()
            jax.block_until_ready(fit())
            t.append(time.perf_counter() - t0)
    return outs, [NUM_STEPS / np.median(t) for t in times]


def run_numpyro(model, *args):
    """(fit: the compiled 10,000-step scan, elbos: final state -> ELBO draws)."""
    guide = AutoIAFNormal(model, num_flows=2, hidden_dims=[32, 32])
    svi = NSVI(model, guide, numpyro.optim.Adam(LR), Trace_ELBO())
    state = svi.init(jax.random.key(0), *args)

    @jax.jit
    def scan(state):
        return jax.lax.scan(lambda s, _: svi.update(s, *args), state, None, length=NUM_STEPS)

    @jax.jit
    def elbos(params, keys):
        one = lambda k: -Trace_ELBO().loss(k, params, model, guide, *args)  # noqa: E731
        return jax.lax.map(one, keys, batch_size=1000)

    def evaluate(out):
        params = svi.get_params(out[0])
        return np.asarray(elbos(params, jax.random.split(jax.random.key(1), EVAL_DRAWS)))

    return lambda: scan(state), evaluate


def run_ours(model):
    """(fit: the compiled 10,000-step scan, elbos: final state -> ELBO draws)."""
    # init_scale=1: a N(0, I) base at the start, as AutoIAFNormal's
    spec = IAF(num_flows=2, hidden=(32, 32), init_scale=1.0)
    method = vi.SVI(guide=spec, optimizer=vi.adam(LR))
    guide = bind_guide(method.guide, model)
    state = jax.jit(method.init)(model, guide, jax.random.key(0))

    @jax.jit
    def scan(state, model, guide):
        keys = jax.random.split(jax.random.key(2), NUM_STEPS)
        return jax.lax.scan(lambda s, k: method.step(model, guide, k, s, safe=False), state, keys)

    elbo = vi.ELBO()

    @jax.jit
    def elbos(params, keys):
        one = lambda k: elbo.surrogate(k, params, model, guide, jnp.zeros(())).value  # noqa: E731
        return jax.lax.map(one, keys, batch_size=1000)

    def evaluate(out):
        keys = jax.random.split(jax.random.key(1), EVAL_DRAWS)
        return np.asarray(elbos(out[0].params, keys))

    return lambda: scan(state, model, guide), evaluate


def compare(ours, theirs):
    """((steps/s, ELBO draws) of ours, the same of NumPyro's)."""
    (fit_ours, eval_ours), (fit_np, eval_np) = ours, theirs
    (out_ours, out_np), (rate_ours, rate_np) = _alternating([fit_ours, fit_np])
    return (rate_ours, eval_ours(out_ours)), (rate_np, eval_np(out_np))


def report(name, ours, theirs):
    (r_ours, e_ours), (r_np, e_np) = ours, theirs
    se = lambda e: e.std() / np.sqrt(e.size)  # noqa: E731
    print(f"{name}:")
    print(f"  ppl     {r_ours:9.0f} steps/s   ELBO {e_ours.mean():9.3f} ± {se(e_ours):.3f}")
    print(f"  numpyro {r_np:9.0f} steps/s   ELBO {e_np.mean():9.3f} ± {se(e_np):.3f}")
    print(f"  ratio (ours / numpyro steps/s) {r_ours / r_np:.2f}")


def main():
    print(f"JAX {jax.__version__}, numpyro {numpyro.__version__}, devices {jax.devices()}")
    report("10-D funnel", *compare(run_ours(funnel()), run_numpyro(numpyro_funnel)))
    x, y = data()
    report(
        "logistic regression (N=1000, D=25)",
        *compare(
            run_ours(ppl.examples.logistic_regression(x, y)), run_numpyro(numpyro_logistic, x, y)
        ),
    )


if __name__ == "__main__":
    main()
