"""Structured SG-MCMC against plain SGLD: ESS per second on a Bayesian neural network.

The model is tutorials/06_sgmcmc.ipynb's: scikit-learn's bundled digits (1,400 training
images, 8x8 pixels scaled to [0, 1]), one hidden layer of 32 tanh units, a softmax
over 10 classes, standard-normal priors, minibatches of 100. Three runs in one process,
the same step size (SGLD's 5e-4), the same number of sampler steps, thinning and seed:

- SGLD (one gradient per step);
- structured SGLD, dropout variant (`rho=0.5`, one gradient per step), one group per
  layer, [["w1", "b1"], ["w2", "b2"]], pool of 50 past values;
- structured SGLD, fully factorised (`rho=None`, one gradient per group: two per step).

Printed per run: the wall time of the whole `ppl.infer` call (compilation included),
the sampling time (the driver's kept phase), min and median bulk ESS
(`ppl.infer.summary.ess_bulk`, all chains) over the 330 output-layer weights and biases
(w2, b2), ESS (median) per sampling second and per 1,000 gradient evaluations of the
kept phase, and both ratios to SGLD; then the within-chain ESS (each chain's bulk ESS
alone, summed over chains; median over the weights) and its ESS/s ratio to SGLD. Network weights are not identifiable (hidden units can be permuted), so the ESS
of a weight measures how fast the chain moves within its mode, as in the paper.

The claim beside it: Alexos, Boyd & Mandt (ICML 2022) report that structured SG-MCMC
with dropout mixes faster per gradient evaluation than the fully joint SGLD on BNNs.

    PYTHONPATH=. python benchmarks/sgmcmc_structured_bnn.py
    PYTHONPATH=. python benchmarks/sgmcmc_structured_bnn.py --quick   # to check it runs
"""

import argparse
import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np
from sklearn.datasets import load_digits

import ppl
from ppl import dist
from ppl.infer.summary import ess_bulk
from ppl.sgmcmc import SGLD, Structured

HIDDEN, CLASSES, BATCH, STEP_SIZE, THINNING = 32, 10, 100, 5e-4, 10
CLAIM = (
    "Alexos, Boyd & Mandt 2022: structured SG-MCMC with dropout mixes faster per gradient "
    "evaluation than fully joint SGLD on BNNs"
)


@ppl.model
def bnn(x, y=None):
    w1 = ppl.sample("w1", dist.Normal(0, 1).expand([x.shape[1], HIDDEN]).to_event(2))
    b1 = ppl.sample("b1", dist.Normal(0, 1).expand([HIDDEN]).to_event(1))
    w2 = ppl.sample("w2", dist.Normal(0, 1).expand([HIDDEN, CLASSES]).to_event(2))
    b2 = ppl.sample("b2", dist.Normal(0, 1).expand([CLASSES]).to_event(1))
    with ppl.plate("data", x.shape[0], subsample_size=BATCH) as idx:
        logits = jnp.tanh(x[idx] @ w1 + b1) @ w2 + b2
        ppl.sample("y", dist.Categorical(logits=logits), obs=y[idx])


def digits_train():
    """The tutorial's 1,400 training images (same permutation seed)."""
    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    y = digits.target.astype(np.int32)
    train = np.random.default_rng(0).permutation(len(x))[:1400]
    return x[train], y[train]


def output_layer_ess(post):
    """Bulk ESS of every output-layer weight and bias: over all chains, and summed over
    the chains each taken alone (within-mode mixing; chains in different modes of the
    non-identifiable weights drive the pooled ESS towards the number of chains)."""
    draws = [post.samples[k].reshape(*post.samples[k].shape[:2], -1) for k in ("w2", "b2")]
    draws = np.concatenate(draws, axis=-1)
    pooled = np.array([ess_bulk(draws[..., j]) for j in range(draws.shape[-1])])
    within = np.array([sum(ess_bulk(c[None, :, j]) for c in draws) for j in range(draws.shape[-1])])
    return pooled, within


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="tiny run, to check it works")
    args = parser.parse_args()
    samples, warmup, chains = (100, 100, 2) if args.quick else (2000, 1000, 4)
    run = dict(
        num_samples=samples, num_warmup=warmup * THINNING, num_chains=chains, seed=0,
        progress=False,
    )  # fmt: skip
    steps = (samples + warmup) * THINNING
    model = bnn(*digits_train())
    groups = [["w1", "b1"], ["w2", "b2"]]
    methods = {
        "SGLD": SGLD(step_size=STEP_SIZE, thinning=THINNING),
        "structured rho=0.5": Structured(
            base=SGLD(step_size=STEP_SIZE, thinning=THINNING), groups=groups, rho=0.5,
            pool_size=50,
        ),
        "structured rho=None": Structured(
            base=SGLD(step_size=STEP_SIZE, thinning=THINNING), groups=groups, pool_size=50
        ),
    }  # fmt: skip
    print(
        f"BNN on digits (2,410 parameters), {chains} chains x {steps} steps "
        f"({warmup * THINNING} burn-in), step size {STEP_SIZE}, thinning {THINNING}, "
        f"batch {BATCH}; device: {jax.devices()[0].device_kind}"
    )
    header = (
        f"{'method':20s} {'wall s':>7s} {'sample s':>9s} {'grads/step':>10s} {'min ESS':>8s} "
        f"{'med ESS':>8s} {'ESS/s':>7s} {'ESS/1k grads':>13s} {'ratio /s':>9s} {'ratio /grad':>11s}"
        f" | {'within-chain med ESS':>20s} {'ratio /s':>9s}"
    )
    print(header)
    base = base_grad = base_within = None
    for name, method in methods.items():
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ppl.SamplingWarning)
            post = ppl.infer(model, method, **run)
        wall = time.perf_counter() - t0
        ess, within = output_layer_ess(post)
        sampling = post.diagnostics["sampling_time"]
        grads_per_step = post.diagnostics["grad_evals"].mean() / post.diagnostics["steps"].mean()
        kept_grads = samples * THINNING * chains * grads_per_step
        per_s, per_grad = np.median(ess) / sampling, 1000 * np.median(ess) / kept_grads
        within_s = np.median(within) / sampling
        if base is None:
            base, base_grad, base_within = per_s, per_grad, within_s
        print(
            f"{name:20s} {wall:7.1f} {sampling:9.2f} {grads_per_step:10.0f} {ess.min():8.1f} "
            f"{np.median(ess):8.1f} {per_s:7.1f} {per_grad:13.2f} {per_s / base:9.2f} "
            f"{per_grad / base_grad:11.2f} | {np.median(within):20.1f} {within_s / base_within:9.2f}"
        )
    print(f"paper's claim: {CLAIM}")


if __name__ == "__main__":
    main()
