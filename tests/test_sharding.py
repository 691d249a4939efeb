"""Sharded chains: `infer(..., chain_method="sharded")` over 4 simulated CPU devices.

XLA's device count is fixed when JAX starts, so the runs happen in one child
process started with `XLA_FLAGS=--xla_force_host_platform_device_count=4`; it
saves what it saw and the tests below check it. Multi-host runs
(`jax.distributed.initialize()`) cannot be tested on one machine.

What XLA gives (measured, and the reason for each check): chain c uses chain
c's keys in both layouts, but XLA optimises the sharded program (and a vmap over
fewer chains) slightly differently, so a value may differ in its last bit. With
a fixed step size on a Gaussian target rounding does not grow, and the layouts
agree to float tolerance (NUTS here: bit for bit; a random walk: to ~1e-6). With warmup, adaptation can turn
a one-ulp difference into a different path for a chain, so there the sharded
run is checked against the exact posterior and for bit-for-bit reproducibility.
"""

import textwrap

import jax
import numpy as np
import pytest
from child_process import run_child

import ppl
from ppl.errors import OptionError
from ppl.infer.summary import ess_mean

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # short runs: r_hat/ESS warnings

NUM_SIGMAS = 4.0  # a correct sampler fails a 4-sigma check with probability ~6e-5

CHILD = textwrap.dedent(
    """
    import os, sys, json
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
    os.environ["JAX_PLATFORMS"] = "cpu"
    import jax, jax.numpy as jnp, numpy as np
    import ppl
    from ppl import dist
    from ppl.errors import OptionError
    from ppl.infer import checkpoint
    from ppl.infer.driver import Phase, run

    out, facts, draws = sys.argv[1], {"devices": len(jax.devices())}, {}

    @ppl.model
    def gaussian_mean(y=None):
        mu = ppl.sample("mu", dist.Normal(0.0, 10.0).expand([2]).to_event(1))
        with ppl.plate("data", 10):
            ppl.sample("y", dist.Normal(mu, 1.0).to_event(1), obs=y)

    m = gaussian_mean(jnp.stack([jnp.linspace(-1, 3, 10), jnp.linspace(0, 1, 10)], -1))

    # (a) fixed step size, no warmup: vectorized and sharded, same seed
    fixed = ppl.mcmc.NUTS(step_size=0.3, adapt_step_size=False, adapt_mass_matrix=False)
    kw = dict(num_warmup=0, num_samples=200, num_chains=8, seed=0, progress=False)
    draws["fixed_vectorized"] = ppl.infer(m, fixed, **kw).samples["mu"]
    draws["fixed_sharded"] = ppl.infer(m, fixed, chain_method="sharded", **kw).samples["mu"]

    # (b) full NUTS with warmup, sharded, twice
    kw = dict(num_warmup=200, num_samples=200, num_chains=8, seed=1, progress=False)
    adaptive = ppl.infer(m, "nuts", chain_method="sharded", **kw)
    draws["adaptive"] = adaptive.samples["mu"]
    draws["adaptive_again"] = ppl.infer(m, "nuts", chain_method="sharded", **kw).samples["mu"]

    # (c) sharded + checkpoint: interrupted in sampling, resumed sharded
    path = os.path.join(os.path.dirname(out), "sharded.ckpt")
    save, writes = checkpoint.Checkpoint.save, [0]
    def save_then_stop(self, *args):
        save(self, *args)
        writes[0] += 1
        if writes[0] == 13:
            raise KeyboardInterrupt
    checkpoint.Checkpoint.save = save_then_stop
    try:
        ppl.infer(m, "nuts", chain_method="sharded", checkpoint=path, **kw)
    except KeyboardInterrupt:
        facts["interrupted_at"] = json.loads(np.load(path)["meta"].tobytes())["step"]
    checkpoint.Checkpoint.save = save
    try:  # another layout would not give the same draws, so it is refused
        ppl.infer(m, "nuts", checkpoint=path, **kw)
    except checkpoint.CheckpointError as e:
        facts["vectorized_resume_error"] = str(e)
    draws["resumed"] = ppl.infer(m, "nuts", chain_method="sharded", checkpoint=path,
                                 **kw).samples["mu"]

    # (d) the driver's state stays sharded: a random walk, 8 chains
    def walk(scale):
        return (lambda key, z: (z + scale * jax.random.normal(key, z.shape), None)), (
            lambda z, info: z)
    args = (walk, 0.5, jnp.zeros((8, 3)), jax.random.split(jax.random.key(2), 8),
            [Phase("walk", 30, keep=True)])
    state, kept, _ = run(*args, progress=False, chain_method="sharded")
    facts["state_sharding"] = repr(state.sharding)
    facts["state_devices"] = len(state.sharding.device_set)
    facts["state_shards"] = sorted([s.data.shape for s in state.addressable_shards])
    draws["walk_sharded"] = kept
    draws["walk_vectorized"] = run(*args, progress=False)[1]

    # (e) chains that do not split evenly over the devices
    try:
        ppl.infer(m, "nuts", num_chains=6, chain_method="sharded", progress=False)
    except OptionError as e:
        facts["uneven_error"] = str(e)

    np.savez(out, **{k: np.asarray(v) for k, v in draws.items()})
    print("FACTS" + json.dumps(facts))
    """
)


@pytest.fixture(scope="module")
def child(tmp_path_factory):
    return run_child(CHILD, tmp_path_factory.mktemp("sharding") / "draws.npz")


def test_child_sees_four_devices(child):
    assert child[0]["devices"] == 4


def test_sharded_equals_vectorized_with_a_fixed_step_size(child):
    draws = child[1]
    assert draws["fixed_sharded"].shape == (8, 200, 2)
    # float tolerance: leapfrog on a Gaussian is linear, so rounding does not grow
    np.testing.assert_allclose(draws["fixed_sharded"], draws["fixed_vectorized"], rtol=1e-5)


def test_sharded_random_walk_equals_vectorized(child):
    # measured: equal up to last-bit differences of the normal draws, which add up, not grow
    walk = child[1]["walk_vectorized"]
    assert walk.shape == (8, 30, 3)
    np.testing.assert_allclose(child[1]["walk_sharded"], walk, rtol=1e-5, atol=1e-5)


def test_driver_state_is_sharded_over_four_devices(child):
    facts = child[0]
    assert facts["state_devices"] == 4
    assert "NamedSharding" in facts["state_sharding"] and "'chains'" in facts["state_sharding"]
    assert facts["state_shards"] == [[2, 3]] * 4  # 8 chains, 2 per device


def test_sharded_run_is_reproducible(child):
    np.testing.assert_array_equal(child[1]["adaptive"], child[1]["adaptive_again"])


def test_sharded_run_matches_the_exact_posterior(child):
    """mu | y ~ N(sum(y) / (n + 0.01), 1 / (n + 0.01)) per coordinate (prior N(0, 10²))."""
    y = np.stack([np.linspace(-1, 3, 10), np.linspace(0, 1, 10)], -1)
    precision = 10 + 1 / 10.0**2
    mean, sd = y.sum(0) / precision, np.sqrt(1 / precision)
    draws = child[1]["adaptive"].astype(np.float64)
    for i in range(2):
        x = draws[..., i]
        mcse = x.std() / np.sqrt(ess_mean(x))
        assert abs(x.mean() - mean[i]) < NUM_SIGMAS * mcse, (i, x.mean(), mean[i], mcse)
        # sd of the sample sd ~ sd / sqrt(2 ESS) for a Gaussian
        assert abs(x.std() - sd) < NUM_SIGMAS * sd / np.sqrt(2 * ess_mean(x)), (i, x.std(), sd)


def test_sharded_checkpoint_resumes_exactly(child):
    facts, draws = child
    assert facts["interrupted_at"] == 13 * 20  # chunk of 20 steps; 60 draws kept so far
    np.testing.assert_array_equal(draws["resumed"], draws["adaptive"])


def test_sharded_checkpoint_is_not_resumed_vectorized(child):
    message = child[0]["vectorized_resume_error"]
    assert "chain layout" in message and "sharded over 4 cpu devices" in message


def test_uneven_chains_raise_naming_both_numbers(child):
    message = child[0]["uneven_error"]
    assert "num_chains=6" in message and "4 devices" in message and "num_chains=8" in message


# ----- in this process (one device) ---------------------------------------------------


@ppl.model
def tiny():
    ppl.sample("x", ppl.dist.Normal(0.0, 1.0))


def test_unknown_chain_method_lists_the_valid_ones():
    with pytest.raises(OptionError, match="'vectorized', 'sharded'.*did you mean 'sharded'"):
        ppl.infer(tiny(), "nuts", chain_method="shardd", num_samples=10, progress=False)


def test_sharded_on_one_device_runs_every_chain_count():
    assert len(jax.devices()) == 1
    kw = dict(num_chains=3, num_samples=20, num_warmup=20, seed=0, progress=False)
    post = ppl.infer(tiny(), "rwmh", chain_method="sharded", **kw)
    ref = ppl.infer(tiny(), "rwmh", **kw)
    assert post.samples["x"].shape == (3, 20)
    np.testing.assert_allclose(post.samples["x"], ref.samples["x"], rtol=1e-5)
