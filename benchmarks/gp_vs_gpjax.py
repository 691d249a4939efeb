"""Coreset VI and ppl's SVGP against GPJax's SVGP on a synthetic 8-D regression.

The issue's problem: N = 100,000 training points x ~ U[0, 1]^8 (fixed seed),
y = sin(2πx0) + 0.5cos(4x1x2) + x3² − 0.5x4 + 0.3sin(6x5x6) + 0.1x7 + 0.1ε, 10,000 test
points; y standardised for training, RMSE and NLL reported in original units. All
three fit an ARD RBF kernel and Gaussian noise jointly with their variational
parameters, M = 100, batch 512, Adam 0.01, float64 (as GPJax was measured);
GPJax: `gpx.fit(..., batch_size=512)`, unwhitened `VariationalGaussian`, random
inducing inputs. After a warm-up run of one epoch, time per epoch =
(T(E epochs) − T(1 epoch)) / (E − 1), which cancels compilation and set-up for both
libraries.

Peak memory: each (library, N) runs in a fresh process (`--memory-child`) for a
fixed number of steps; its peak resident set size is read from the OS.

    PYTHONPATH=. python benchmarks/gp_vs_gpjax.py [--epochs 20] [--memory] [--no-accuracy]
"""

import argparse
import json
import math
import resource
import subprocess
import sys
import time

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

M, BATCH, LR, NUM_TEST, D = 100, 512, 0.01, 10_000, 8


def problem(n, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(size=(n + NUM_TEST, D))
    f = (
        np.sin(2 * np.pi * x[:, 0]) + 0.5 * np.cos(4 * x[:, 1] * x[:, 2]) + x[:, 3] ** 2
        - 0.5 * x[:, 4] + 0.3 * np.sin(6 * x[:, 5] * x[:, 6]) + 0.1 * x[:, 7]
    )  # fmt: skip
    y = f + 0.1 * rng.normal(size=n + NUM_TEST)
    return x[:n], y[:n], x[n:], y[n:]


def scores(mean, var, y_test, y_mean, y_sd):
    """RMSE and mean negative log predictive density of y, in original units."""
    mean, var = mean * y_sd + y_mean, var * y_sd**2
    rmse = float(np.sqrt(np.mean((mean - y_test) ** 2)))
    nll = float(np.mean(0.5 * np.log(2 * np.pi * var) + 0.5 * (y_test - mean) ** 2 / var))
    return rmse, nll


def run_ppl(method_name, X, ys, steps, seed=0):
    """Fit; return (seconds, predict function giving the predictive mean and variance of y)."""
    import ppl
    from ppl import gp

    kernel = gp.kernels.RBF(lengthscale=np.ones(D), amplitude=1.0)
    model = gp.regression(X, ys, kernel=kernel, noise=1.0)
    opt = optax.adam(LR)
    if method_name == "coreset":
        method = gp.CoresetVI(num_points=M, batch_size=BATCH, num_steps=steps, optimizer=opt)
    else:
        method = gp.SVGP(num_inducing=M, batch_size=BATCH, num_steps=steps, optimizer=opt)
    t0 = time.perf_counter()
    post = ppl.infer(model, method=method, num_chains=1, seed=seed, progress=False)
    seconds = time.perf_counter() - t0
    noise = float(post.samples["noise"][0, 0])

    def predict(Xt):
        mean, var = post.predict(Xt)
        return mean, var + noise**2

    return seconds, predict


def run_gpjax(X, ys, steps, seed=0):
    import gpjax as gpx

    key = jax.random.key(seed)
    data = gpx.Dataset(X=jnp.asarray(X), y=jnp.asarray(ys)[:, None])
    kernel = gpx.kernels.RBF(lengthscale=jnp.ones(D), variance=1.0)
    prior = gpx.gps.Prior(mean_function=gpx.mean_functions.Zero(), kernel=kernel)
    likelihood = gpx.likelihoods.Gaussian(obs_stddev=1.0)
    posterior = prior * likelihood
    idx = np.random.default_rng(seed).choice(X.shape[0], M, replace=False)
    q = gpx.variational_families.VariationalGaussian(posterior, inducing_inputs=jnp.asarray(X[idx]))
    t0 = time.perf_counter()
    fitted, _ = gpx.fit(
        model=q, objective=lambda p, d: -gpx.objectives.elbo(p, d), train_data=data,
        optim=optax.adam(LR), num_iters=steps, batch_size=BATCH, key=key, verbose=False,
    )  # fmt: skip
    jax.block_until_ready(jax.tree.leaves(fitted))
    seconds = time.perf_counter() - t0

    def predict(Xt):
        means, variances = [], []
        for lo in range(0, Xt.shape[0], 2000):
            dist = fitted.predict(jnp.asarray(Xt[lo : lo + 2000]))
            pred = fitted.model.likelihood.predict(dist)
            means.append(np.asarray(pred.mean))
            variances.append(np.asarray(pred.variance))
        return np.concatenate(means), np.concatenate(variances)

    return seconds, predict


RUNNERS = {
    "ppl CoresetVI": lambda X, y, s: run_ppl("coreset", X, y, s),
    "ppl SVGP": lambda X, y, s: run_ppl("svgp", X, y, s),
    "GPJax SVGP": run_gpjax,
}


def accuracy(n, epochs):
    X, y, Xt, yt = problem(n)
    y_mean, y_sd = y.mean(), y.std()
    ys = (y - y_mean) / y_sd
    per_epoch = math.ceil(n / BATCH)
    rows = {}
    for name, runner in RUNNERS.items():
        runner(X, ys, per_epoch)  # warm-up: imports, first tracing, caches
        t1, _ = runner(X, ys, per_epoch)
        tE, predict = runner(X, ys, epochs * per_epoch)
        mean, var = predict(Xt)
        rmse, nll = scores(np.asarray(mean), np.asarray(var), yt, y_mean, y_sd)
        rows[name] = {
            "s_per_epoch": (tE - t1) / (epochs - 1), "ms_per_step": 1e3 * (tE - t1) / ((epochs - 1) * per_epoch),
            "total_s": tE, "rmse": rmse, "nll": nll,
        }  # fmt: skip
        print(f"{name:>14}: {rows[name]['s_per_epoch']:.2f} s/epoch "
              f"({rows[name]['ms_per_step']:.2f} ms/step), test RMSE {rmse:.4f}, NLL {nll:.3f} "
              f"[{epochs} epochs, {tE:.1f} s in all]", flush=True)  # fmt: skip
    return rows


def peak_rss_mb():
    """This process's peak resident set size (VmHWM: unlike ru_maxrss, it is not
    inherited from the parent across fork and exec)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def memory_child(name, n, steps):
    X, y, _, _ = problem(n)
    ys = (y - y.mean()) / y.std()
    seconds, _ = RUNNERS[name](X, ys, steps)
    peak_mb = peak_rss_mb()
    print(json.dumps({"peak_mb": peak_mb, "seconds": seconds}))


def memory(sizes, steps):
    rows = {}
    for name in RUNNERS:
        for n in sizes:
            out = subprocess.run(
                [sys.executable, __file__, "--memory-child", name, str(n), str(steps)],
                capture_output=True, text=True, check=True,
            )  # fmt: skip
            r = json.loads(out.stdout.strip().splitlines()[-1])
            rows[(name, n)] = r
            print(f"{name:>14}: N={n:>9,}  peak RSS {r['peak_mb']:.0f} MB  "
                  f"({steps} steps in {r['seconds']:.1f} s incl. compile)", flush=True)  # fmt: skip
    return rows


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=100_000)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--memory", action="store_true", help="peak memory for N = 1e4, 1e5, 1e6")
    p.add_argument("--memory-steps", type=int, default=200)
    p.add_argument("--no-accuracy", action="store_true", help="skip the N=1e5 comparison")
    p.add_argument("--memory-child", nargs=3, metavar=("NAME", "N", "STEPS"))
    a = p.parse_args()
    if a.memory_child:
        name, n, steps = a.memory_child
        return memory_child(name, int(n), int(steps))
    print(f"jax {jax.__version__} on {jax.devices()[0].platform}; N={a.n:,}, D={D}, M={M}, "
          f"batch {BATCH}, Adam {LR}, float64")  # fmt: skip
    if not a.no_accuracy:
        rows = accuracy(a.n, a.epochs)
        ref = rows["GPJax SVGP"]["s_per_epoch"]
        for name in ("ppl CoresetVI", "ppl SVGP"):
            print(f"time per epoch, {name} / GPJax SVGP: {rows[name]['s_per_epoch'] / ref:.2f}")
    if a.memory:
        memory((10_000, 100_000, 1_000_000), a.memory_steps)


if __name__ == "__main__":
    main()
