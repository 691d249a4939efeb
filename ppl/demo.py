"""`python -m ppl demo`: fit the bundled models with NUTS and print their summaries."""

import time

import ppl
from ppl import examples


def main(num_samples=1000, num_chains=4, seed=0):
    t0 = time.perf_counter()
    print("== eight schools (NUTS, non-centred, target_accept=0.95) ==")
    post = ppl.infer(
        examples.eight_schools(examples.EIGHT_SCHOOLS_SIGMA, y=examples.EIGHT_SCHOOLS_Y),
        method=ppl.mcmc.NUTS(target_accept=0.95),
        num_samples=num_samples, num_chains=num_chains, seed=seed,
    )  # fmt: skip
    print(post.summary(["mu", "tau", "theta"]))
    _report(post)

    print("\n== logistic regression, 500 synthetic points, 5 features (NUTS) ==")
    x, y, w, b = examples.logistic_data(num_data=500, num_features=5, seed=seed)
    post = ppl.infer(
        examples.logistic_regression(x, y=y),
        method="nuts", num_samples=num_samples, num_chains=num_chains, seed=seed,
    )  # fmt: skip
    print(post.summary())
    print("true w:", " ".join(f"{v:.3f}" for v in w), f" true b: {b:.3f}")
    _report(post)
    print(f"\ndemo finished in {time.perf_counter() - t0:.1f} s")


def _report(post):
    d = post.diagnostics
    print(
        f"divergences: {int(d['divergences'].sum())}, accept rate: {d['accept_rate'].mean():.2f}, "
        f"gradient evaluations: {d['grad_evals'].sum()}, wall time: {d['wall_time']:.1f} s"
    )
