"""SG-MCMC over 4 simulated CPU devices: sharded chains and data-parallel minibatches.

As in tests/test_sharding.py, XLA's device count is fixed when JAX starts, so the
runs happen in a child process started with 4 host devices. Chain c draws its
minibatches and noise from chain c's keys in both layouts; with a fixed step size
on a Gaussian target rounding does not grow, so the layouts agree to float
tolerance (the data, here a subsampled regression, is replicated on each device).

`data_parallel=True` splits each step's minibatch of 20 into 4 slices of 5, one per
device, and averages the devices' estimates (a psum/pmean): the same chain as the
single-device run, with the 20 terms summed in another order.
"""

import textwrap

import numpy as np
import pytest
from child_process import run_child

CHILD = textwrap.dedent(
    """
    import os, sys, json
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
    os.environ["JAX_PLATFORMS"] = "cpu"
    import warnings; warnings.simplefilter("ignore")
    import jax, numpy as np
    import ppl
    from ppl import dist

    def make(batch):
        @ppl.model
        def regression(x, y=None):
            w = ppl.sample("w", dist.Normal(0.0, 1.0).expand([2]).to_event(1))
            with ppl.plate("data", x.shape[0], subsample_size=batch) as idx:
                ppl.sample("y", dist.Normal(x[idx] @ w, 1.0), obs=y[idx])
        return regression

    regression = make(20)

    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 2)).astype(np.float32)
    y = (x @ np.array([0.5, -1.0]) + rng.normal(size=200)).astype(np.float32)
    out, draws, facts = sys.argv[1], {}, {"devices": len(jax.devices())}
    kw = dict(num_samples=100, num_warmup=50, num_chains=8, seed=0, progress=False)
    m = regression(x, y)
    sgld = lambda **o: ppl.sgmcmc.SGLD(step_size=1e-3, **o)
    structured = lambda **o: ppl.sgmcmc.Structured(base=sgld(**o), pool_size=20)
    for name, method in [("sgld", sgld), ("structured", structured)]:
        draws[name + "_vectorized"] = ppl.infer(m, method(), **kw).samples["w"]
        draws[name + "_sharded"] = ppl.infer(
            m, method(), chain_method="sharded", **kw).samples["w"]
        draws[name + "_data_parallel"] = ppl.infer(
            m, method(data_parallel=True), **kw).samples["w"]
    # one chain, with control variates (two data-parallel gradients per step)
    one = dict(kw, num_chains=1)
    cv = dict(control_variate=True, cv_steps=50)
    draws["sgld_cv_one"] = ppl.infer(m, sgld(**cv), **one).samples["w"]
    draws["sgld_cv_one_data_parallel"] = ppl.infer(
        m, sgld(data_parallel=True, **cv), **one).samples["w"]

    # the compiled estimator really reduces over devices
    from ppl.sgmcmc import Target, estimate
    ld = m.log_density()
    hlo = jax.jit(lambda z, k: estimate(Target(ld), z, k, data_parallel=True)).lower(
        np.zeros(2, np.float32), jax.random.key(0)).compile().as_text()
    facts["all_reduce"] = "all-reduce" in hlo

    def error(model, **options):
        try:
            ppl.infer(model, sgld(data_parallel=True), **dict(one, num_samples=5, **options))
        except ppl.errors.OptionError as e:
            return str(e)
    facts["indivisible"] = error(make(18)(x, y))
    facts["with_sharded"] = error(m, chain_method="sharded", num_chains=4)
    np.savez(out, **{k: np.asarray(v) for k, v in draws.items()})
    print("FACTS" + json.dumps(facts))
    """
)


@pytest.fixture(scope="module")
def child(tmp_path_factory):
    return run_child(CHILD, tmp_path_factory.mktemp("sgmcmc_sharding") / "draws.npz")


def test_child_sees_four_devices(child):
    assert child[0]["devices"] == 4


@pytest.mark.parametrize("name", ["sgld", "structured"])
def test_sharded_chains_equal_vectorized(child, name):
    draws = child[1]
    assert draws[f"{name}_sharded"].shape == (8, 100, 2)
    np.testing.assert_allclose(
        draws[f"{name}_sharded"], draws[f"{name}_vectorized"], rtol=1e-4, atol=1e-5
    )


@pytest.mark.parametrize("single", ["sgld_vectorized", "structured_vectorized", "sgld_cv_one"])
def test_data_parallel_equals_single_device(child, single):
    # Same keys, same minibatch indices, same noise: only the order of the 20 (or 2 x 20,
    # with control variates) minibatch terms differs, a few float32 ulps per step that
    # the contracting Gaussian target does not amplify (observed: ~1e-7). A wrong split or
    # scale would move each step by step_size x O(100) = O(0.1).
    draws = child[1]
    parallel = draws[single.removesuffix("_vectorized") + "_data_parallel"]
    assert parallel.shape == draws[single].shape
    np.testing.assert_allclose(parallel, draws[single], rtol=1e-5, atol=1e-5)


def test_data_parallel_reduces_over_devices(child):
    assert child[0]["all_reduce"]


def test_data_parallel_batch_must_divide(child):
    message = child[0]["indivisible"]
    assert message is not None
    assert "subsample_size=18" in message and "4 devices" in message
    assert "subsample_size=20" in message  # the fix it suggests


def test_data_parallel_refuses_sharded_chains(child):
    message = child[0]["with_sharded"]
    assert message is not None and "chain_method='sharded'" in message
