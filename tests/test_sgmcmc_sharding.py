"""SG-MCMC chains sharded over 4 simulated CPU devices (`chain_method="sharded"`).

As in tests/test_sharding.py, XLA's device count is fixed when JAX starts, so the
runs happen in a child process started with 4 host devices. Chain c draws its
minibatches and noise from chain c's keys in both layouts; with a fixed step size
on a Gaussian target rounding does not grow, so the layouts agree to float
tolerance (the data, here a subsampled regression, is replicated on each device).
"""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]

CHILD = textwrap.dedent(
    """
    import os, sys, json
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
    os.environ["JAX_PLATFORMS"] = "cpu"
    import warnings; warnings.simplefilter("ignore")
    import jax, numpy as np
    import ppl
    from ppl import dist

    @ppl.model
    def regression(x, y=None):
        w = ppl.sample("w", dist.Normal(0.0, 1.0).expand([2]).to_event(1))
        with ppl.plate("data", x.shape[0], subsample_size=20) as idx:
            ppl.sample("y", dist.Normal(x[idx] @ w, 1.0), obs=y[idx])

    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 2)).astype(np.float32)
    y = (x @ np.array([0.5, -1.0]) + rng.normal(size=200)).astype(np.float32)
    out, draws = sys.argv[1], {}
    kw = dict(num_samples=100, num_warmup=50, num_chains=8, seed=0, progress=False)
    for name, method in [
        ("sgld", ppl.sgmcmc.SGLD(step_size=1e-3)),
        ("structured", ppl.sgmcmc.Structured(base=ppl.sgmcmc.SGLD(step_size=1e-3),
                                             pool_size=20)),
    ]:
        m = regression(x, y)
        draws[name + "_vectorized"] = ppl.infer(m, method, **kw).samples["w"]
        draws[name + "_sharded"] = ppl.infer(m, method, chain_method="sharded", **kw).samples["w"]
    np.savez(out, **{k: np.asarray(v) for k, v in draws.items()})
    print("FACTS" + json.dumps({"devices": len(jax.devices())}))
    """
)


@pytest.fixture(scope="module")
def child(tmp_path_factory):
    out = tmp_path_factory.mktemp("sgmcmc_sharding") / "draws.npz"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("XLA_FLAGS", None)
    proc = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", CHILD, str(out)], env=env, cwd=ROOT,
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    facts = json.loads(proc.stdout.split("FACTS", 1)[1])
    with np.load(out) as f:
        return facts, {k: f[k] for k in f.files}


def test_child_sees_four_devices(child):
    assert child[0]["devices"] == 4


@pytest.mark.parametrize("name", ["sgld", "structured"])
def test_sharded_chains_equal_vectorized(child, name):
    draws = child[1]
    assert draws[f"{name}_sharded"].shape == (8, 100, 2)
    np.testing.assert_allclose(
        draws[f"{name}_sharded"], draws[f"{name}_vectorized"], rtol=1e-4, atol=1e-5
    )
