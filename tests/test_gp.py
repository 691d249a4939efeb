"""GP kernels, exact GP regression, SVGP and coreset tempered VI against exact answers.

Closed forms are computed in float64 NumPy; the library runs in float32, so exact
identities are checked to float32 rounding of O(1)–O(100) quantities (tolerances say so
where they are set). Statistical checks (MCMC, fitted RMSE, coverage) state their
Monte Carlo or approximation error budget where they are set.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import ppl
from ppl import gp
from ppl.errors import DataError, InferenceError, ModelError, OptionError
from ppl.gp import kernels as K
from ppl.infer.summary import ess_mean

# ----- data -------------------------------------------------------------------------

NOISE = 0.2


def truth(x):
    return np.sin(3.0 * x) + 0.5 * np.cos(7.0 * x)


def data_1d(n, seed):
    rng = np.random.default_rng(seed)
    x = np.sort(rng.uniform(-2.0, 2.0, n))
    return x[:, None], truth(x) + NOISE * rng.normal(size=n)


def np_rbf(A, B, ell, amp):
    d2 = ((A[:, None, :] - B[None, :, :]) / ell) ** 2
    return amp**2 * np.exp(-0.5 * d2.sum(-1))


def np_exact(Kxx, Kxs, kss_diag, y, noise_var):
    """float64 exact GP: log marginal likelihood, predictive mean and variance of f."""
    Ky = Kxx + noise_var * np.eye(len(y))
    sign, logdet = np.linalg.slogdet(Ky)
    lml = -0.5 * (y @ np.linalg.solve(Ky, y) + logdet + len(y) * math.log(2 * math.pi))
    mean = Kxs.T @ np.linalg.solve(Ky, y)
    var = kss_diag - np.einsum("ij,ij->j", Kxs, np.linalg.solve(Ky, Kxs))
    return lml, mean, var


# ----- kernels ----------------------------------------------------------------------


def test_kernels_match_their_formulas():
    rng = np.random.default_rng(0)
    A, B = rng.normal(size=(4, 2)), rng.normal(size=(3, 2))
    ell, amp = np.array([0.7, 1.9]), 1.3
    d = A[:, None, :] - B[None, :, :]
    r = np.sqrt(((d / ell) ** 2).sum(-1))
    r1 = np.sqrt((d**2).sum(-1)) / 0.8
    s3, s5 = math.sqrt(3) * r, math.sqrt(5) * r
    cases = [
        (K.RBF(ell, amp), amp**2 * np.exp(-0.5 * r**2)),
        (K.Matern12(ell, amp), amp**2 * np.exp(-r)),
        (K.Matern32(ell, amp), amp**2 * (1 + s3) * np.exp(-s3)),
        (K.Matern52(ell, amp), amp**2 * (1 + s5 + s5**2 / 3) * np.exp(-s5)),
        (K.RationalQuadratic(0.8, amp, alpha=2.5), amp**2 * (1 + r1**2 / 5.0) ** -2.5),
        (
            K.Periodic(ell, amp, period=1.7),
            amp**2 * np.exp(-2 * ((np.sin(np.pi * d / 1.7) / ell) ** 2).sum(-1)),
        ),
        (K.Linear(0.5, 0.3), 0.25 * A @ B.T + 0.09),
        (K.RBF(0.8) + K.Linear(0.5, 0.3), np.exp(-0.5 * r1**2) + 0.25 * A @ B.T + 0.09),
        (K.RBF(0.8) * K.Linear(0.5, 0.3), np.exp(-0.5 * r1**2) * (0.25 * A @ B.T + 0.09)),
    ]
    for k, expected in cases:
        # float32 rounding of O(1) values
        np.testing.assert_allclose(k(A, B), expected, rtol=1e-5, atol=1e-6, err_msg=repr(k))
        full = np.asarray(k(A, A))
        np.testing.assert_allclose(k.diag(A), np.diagonal(full), rtol=1e-5, err_msg=repr(k))
        assert np.linalg.eigvalsh(0.5 * (full + full.T)).min() > -1e-5, repr(k)


def test_kernel_hyperparameters_are_pytree_leaves_and_gradients_are_finite_at_zero_distance():
    k = K.RBF(0.5, 2.0) * K.Periodic(1.0, 1.0, 3.0) + K.Matern12(1.0, 1.0)
    assert len(jax.tree.leaves(k)) == 7
    back = K.from_unconstrained(K.to_unconstrained(k))
    np.testing.assert_allclose(jax.tree.leaves(back), jax.tree.leaves(k), rtol=1e-6)
    x = jnp.zeros((2, 1))
    g = jax.grad(lambda x: K.Matern12()(x, x).sum())(x)
    assert np.all(np.isfinite(g))


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: K.RBF(lengthscale=-1.0), r"RBF: lengthscale=-1.0 must be finite and positive"),
        (lambda: K.RBF(lengthscale=0.0), r"RBF: lengthscale=0.0"),
        (lambda: K.RBF(amplitude=-2.0), r"RBF: amplitude=-2.0"),
        (lambda: K.Periodic(period=0.0), r"Periodic: period=0.0"),
        (lambda: K.RationalQuadratic(alpha=float("nan")), r"RationalQuadratic: alpha=nan"),
        (lambda: K.Matern52(lengthscale=np.inf), r"Matern52: lengthscale=inf"),
        (lambda: K.Linear(bias=jnp.array(0.0)), r"Linear: bias=0.0"),
        (lambda: K.RBF(lengthscale=jnp.array([1.0, -1.0])), r"lengthscale=\[1.0, -1.0\]"),
        (lambda: K.RBF(lengthscale="1"), r"lengthscale='1'"),
        (lambda: K.RBF() + 1, r"Sum: right=1 is not a kernel"),
        (lambda: 2.0 * K.RBF(), r"Product: left=2.0 is not a kernel.*set its amplitude"),
        (lambda: gp.CoresetVI(num_points=0), r"num_points=0 must be an integer >= 1"),
        (lambda: gp.SVGP(num_inducing=2.5), r"num_inducing=2.5 must be an integer >= 1"),
    ],
)
def test_bad_kernel_hyperparameters_are_refused_when_the_kernel_is_built(make, message):
    with pytest.raises(OptionError, match=message):
        make()


def test_kernels_sum_as_a_python_sum():
    assert repr(sum([K.RBF(), K.Matern32()])) == repr(K.RBF() + K.Matern32())


def test_kernel_hyperparameters_may_be_numpy_jax_or_traced():
    for value in (2, np.float32(2.0), jnp.array(2.0), np.ones(2), jnp.ones(2)):
        K.RBF(lengthscale=value, amplitude=value)
    # inside a model a hyperparameter is traced: nothing to check when the kernel is built
    k = jax.jit(lambda ell, x: K.Periodic(ell, period=ell)(x, x))(0.5, jnp.zeros((2, 1)))
    assert k.shape == (2, 2)


def test_per_feature_lengthscales_must_match_the_inputs():
    X, y = data_1d(5, seed=0)
    with pytest.raises(OptionError, match=r"RBF: lengthscale has shape \(2,\) but .* 1 feature"):
        gp.regression(X, y, kernel=K.Linear() + K.RBF(lengthscale=jnp.ones(2)))
    with pytest.raises(OptionError, match=r"Periodic: period has shape \(3,\)"):
        K.Periodic(period=np.ones(3))(np.zeros((4, 2)), np.zeros((4, 2)))
    assert K.RBF(lengthscale=np.ones(2))(np.zeros((4, 2)), np.zeros((3, 2))).shape == (4, 3)


# ----- a GP inside an ordinary model ------------------------------------------------


# ESS moves slowly along this posterior (much narrower than the prior), so r_hat can read
# 1.02 here; the check below uses each component's own ESS, which accounts for that.
@pytest.mark.filterwarnings("ignore::ppl.SamplingWarning")
def test_elliptical_slice_on_gp_sample_recovers_exact_posterior_mean():
    X, y = data_1d(12, seed=1)
    kernel = K.RBF(0.6, 1.0)
    m = gp.regression(X, y, kernel=kernel, noise=0.3)
    post = ppl.infer(
        m, method=ppl.mcmc.EllipticalSlice(), num_samples=4000, num_warmup=1000, num_chains=2,
        seed=0, progress=False,
    )  # fmt: skip
    f = post.samples["f"]
    Kxx = np_rbf(X, X, 0.6, 1.0) + 1e-6 * np.eye(12)  # the site's own jitter
    _, mean, var = np_exact(Kxx, Kxx, np.diagonal(Kxx), y, 0.09)
    # Monte Carlo error of each posterior mean: sd / sqrt(ESS of the mean); 4.5 standard
    # errors (12 components: a false alarm has probability < 1e-4)
    se = np.sqrt(var / np.array([ess_mean(f[..., i]) for i in range(12)]))
    assert np.all(np.abs(f.mean((0, 1)) - mean) < 4.5 * se), (f.mean((0, 1)) - mean) / se


# ----- exact GP regression ----------------------------------------------------------


@pytest.fixture(scope="module")
def small():
    X, y = data_1d(40, seed=2)
    Xs = np.linspace(-2.5, 2.5, 30)[:, None]
    return X, y, Xs


def test_exact_log_marginal_likelihood_and_predictions(small):
    X, y, Xs = small
    k = K.RBF(0.5, 1.2)
    f32 = lambda a: jnp.asarray(a, jnp.float32)  # noqa: E731
    lml, jitter = gp.log_marginal_likelihood(k, f32(X), f32(y), NOISE, return_jitter=True)
    mean, var = gp.predict(k, f32(X), f32(y), NOISE, f32(Xs))
    Kxx = np_rbf(X, X, 0.5, 1.2) + float(jitter) * np.eye(40)
    e_lml, e_mean, e_var = np_exact(Kxx, np_rbf(X, Xs, 0.5, 1.2), np.full(30, 1.44), y, NOISE**2)
    # float32: relative 1e-4 of lml (≈ -20), 1e-3 absolute on means/variances of O(1)
    np.testing.assert_allclose(lml, e_lml, rtol=1e-4)
    np.testing.assert_allclose(mean, e_mean, atol=1e-3)
    np.testing.assert_allclose(var, e_var, atol=1e-3)


def test_exact_method_maximises_the_marginal_likelihood(small):
    import scipy.optimize

    X, y, Xs = small

    def neg_lml(theta):
        ell, amp, noise = np.exp(theta)
        Kxx = np_rbf(X, X, ell, amp)
        return -np_exact(Kxx, Kxx, np.diagonal(Kxx), y, noise**2)[0]

    options = {"xatol": 1e-8, "fatol": 1e-10, "maxiter": 4000}
    best = scipy.optimize.minimize(neg_lml, np.log([1.0, 1.0, 0.5]), method="Nelder-Mead",
                                   options=options)  # fmt: skip
    m = gp.regression(X, y, kernel=K.RBF(1.0, 1.0), noise=0.5)
    post = ppl.infer(m, method=gp.Exact(num_steps=600, optimizer=optax.adam(0.05)),
                     num_chains=1, progress=False)  # fmt: skip
    fitted = [post.samples[n][0, 0] for n in ("kernel.lengthscale", "kernel.amplitude", "noise")]
    # the optimum found by Adam in float32 is within 0.01 nats of the float64 optimum
    assert neg_lml(np.log(fitted)) - best.fun < 1e-2
    assert post.diagnostics["jitter"].shape == (1,)
    mean, var = post.predict(Xs)
    assert mean.shape == var.shape == (30,) and np.all(var >= 0)
    mean, var = post.predict(np.zeros((0, 1)))  # no points: empty answers
    assert mean.shape == var.shape == (0,)


def test_fixed_hyperparameters_stay_put_and_exact_counts_full_epochs():
    # learn_hyperparameters=False: the optimizer does not touch them, weight decay
    # included; Exact reads all the data every step, so each step is one epoch
    X, y = data_1d(600, seed=5)
    m = gp.regression(X, y, kernel=K.RBF(0.5, 1.2), noise=0.3)
    decay = optax.adamw(0.05, weight_decay=0.5)
    meth = gp.SVGP(num_inducing=10, num_steps=30, learn_hyperparameters=False, optimizer=decay)
    post = ppl.infer(m, method=meth, num_chains=1, progress=False)
    fixed = [post.samples[n][0, 0] for n in ("kernel.lengthscale", "kernel.amplitude", "noise")]
    np.testing.assert_allclose(fixed, [0.5, 1.2, 0.3], rtol=1e-6)
    post = ppl.infer(m, method=gp.Exact(num_steps=3), num_chains=1, progress=False)
    assert post.diagnostics["epochs"][0] == post.diagnostics["steps"][0] == 3


def test_ill_conditioned_kernel_escalates_jitter_and_reports_it():
    x = np.zeros((30, 1))  # 30 copies of one input: K is rank one
    L, jitter = gp.cholesky(K.RBF()(x, x))
    assert np.all(np.isfinite(L)) and float(jitter) > 0.99e-6
    x = np.linspace(0, 1, 200)[:, None]  # smooth kernel, many inputs: rank-deficient in float32
    Kn = K.RBF(10.0)(x, x)
    assert not np.all(np.isfinite(jnp.linalg.cholesky(Kn + 1e-6 * jnp.eye(200))))
    L, jitter = gp.cholesky(Kn)
    assert np.all(np.isfinite(L)) and float(jitter) > 1e-6  # the first try failed
    np.testing.assert_allclose(L @ L.T, Kn + float(jitter) * np.eye(200), atol=1e-4)
    # the GP methods report it
    m = gp.regression(x, np.sin(x[:, 0]), kernel=K.RBF(10.0), noise=1e-4)
    meth = gp.SVGP(num_inducing=200, batch_size=200, num_steps=1, learn_hyperparameters=False)
    post = ppl.infer(m, method=meth, num_chains=1, progress=False)
    assert post.diagnostics["jitter"][0] > 1e-6


# ----- coreset tempered VI: exact identities ----------------------------------------


def test_coreset_with_all_points_and_unit_weights_is_the_exact_posterior(small):
    X, y, Xs = small
    k, noise_var = K.RBF(0.5, 1.2), NOISE**2
    Xf, yf, Xsf = (jnp.asarray(a, jnp.float32) for a in (X, y, Xs))
    beta = jnp.ones(40)
    mean, var = gp.coreset_marginals(k, Xf, yf, beta, noise_var, Xsf)
    e_mean, e_var = gp.predict(k, Xf, yf, NOISE, Xsf)
    np.testing.assert_allclose(mean, e_mean, atol=1e-3)  # float32, O(1) values
    np.testing.assert_allclose(var, e_var, atol=1e-3)
    # q is then the exact posterior, so KL(q ‖ posterior) = 0 and the ELBO is log p(y)
    elbo = gp.coreset_elbo(k, Xf, yf, beta, noise_var, Xf, yf)
    lml = gp.log_marginal_likelihood(k, Xf, yf, NOISE)
    np.testing.assert_allclose(elbo, lml, atol=0.05)  # float32 sums of ~40 O(1) terms


def direct_kl(k, X_M, Y_M, beta, noise_var):
    """KL(q(f_M) ‖ p(f_M)) from the two Gaussians' means and covariances, in float64."""
    Kmm = np.asarray(k(X_M, X_M), np.float64)
    A = Kmm + np.diag(noise_var / beta)
    mu = Kmm @ np.linalg.solve(A, Y_M)
    S = Kmm - Kmm @ np.linalg.solve(A, Kmm)
    M = len(Y_M)
    Kinv = np.linalg.inv(Kmm)
    return 0.5 * (np.trace(Kinv @ S) + mu @ Kinv @ mu - M + np.linalg.slogdet(Kmm)[1]
                  - np.linalg.slogdet(S)[1])  # fmt: skip


def test_coreset_kl_matches_direct_kl_between_gaussians():
    rng = np.random.default_rng(3)
    k = K.Matern52(0.8, 1.1)
    for _ in range(3):
        X_M = rng.uniform(-2, 2, (8, 1))
        Y_M = rng.normal(size=8)
        beta = np.exp(rng.normal(size=8))
        kl = gp.coreset_kl(k, *(jnp.asarray(a, jnp.float32) for a in (X_M, Y_M, beta)), 0.3)
        expected = direct_kl(k, X_M, Y_M, beta, 0.3)
        # float32 vs float64 on a KL of O(10): relative 1e-3
        np.testing.assert_allclose(kl, expected, rtol=1e-3)


def test_coreset_elbo_never_exceeds_the_log_marginal_likelihood(small):
    X, y, _ = small
    rng = np.random.default_rng(4)
    k = K.RBF(0.5, 1.2)
    Xf, yf = jnp.asarray(X, jnp.float32), jnp.asarray(y, jnp.float32)
    lml = float(gp.log_marginal_likelihood(k, Xf, yf, NOISE))
    gaps = []
    for M in (5, 20, 40):
        for _ in range(4):
            X_M = jnp.asarray(rng.uniform(-2, 2, (M, 1)), jnp.float32)
            Y_M = jnp.asarray(rng.normal(size=M), jnp.float32)
            beta = jnp.asarray(np.exp(2 * rng.normal(size=M)), jnp.float32)
            gaps.append(lml - float(gp.coreset_elbo(k, X_M, Y_M, beta, NOISE**2, Xf, yf)))
    assert min(gaps) > -0.05, gaps  # float32 slack only (see the equality test)


# ----- fitted methods on a 1-D problem ----------------------------------------------

N_TRAIN, N_TEST = 400, 400


@pytest.fixture(scope="module")
def fits():
    X, y = data_1d(N_TRAIN, seed=5)
    Xt, yt = data_1d(N_TEST, seed=6)
    m = gp.regression(X, y, kernel=K.RBF(1.0, 1.0), noise=0.5)
    opt = optax.adam(0.02)
    methods = {
        "exact": gp.Exact(num_steps=300, optimizer=optax.adam(0.05)),
        "svgp": gp.SVGP(num_inducing=30, batch_size=128, num_steps=3000, optimizer=opt),
        "coreset": gp.CoresetVI(num_points=30, batch_size=128, num_steps=3000, optimizer=opt),
    }
    posts = {n: ppl.infer(m, method=meth, num_chains=1, progress=False, seed=0)
             for n, meth in methods.items()}  # fmt: skip
    return posts, Xt, yt


def test_svgp_and_coreset_reach_the_exact_gp_rmse(fits):
    posts, Xt, yt = fits
    ft = truth(Xt[:, 0])
    rmse = {n: np.sqrt(np.mean((p.predict(Xt)[0] - ft) ** 2)) for n, p in posts.items()}
    # the exact GP's error of the latent function is ≈ 0.03 here; 30 pseudo points on a
    # smooth 1-D function lose little: allow 0.02 more (≈ 10% of the noise sd 0.2)
    assert rmse["exact"] < 0.06, rmse
    assert rmse["svgp"] < rmse["exact"] + 0.02, rmse
    assert rmse["coreset"] < rmse["exact"] + 0.02, rmse
    for p in posts.values():
        assert (
            abs(p.samples["noise"][0, 0] - NOISE) < 0.03
        )  # > 4 sd (σ/√(2N) = 0.007) of its estimate


def test_predictive_intervals_cover_held_out_points(fits):
    posts, Xt, yt = fits
    for name, p in posts.items():
        mean, var = p.predict(Xt)
        sd = np.sqrt(var + p.samples["noise"][0, 0] ** 2)  # y = f + noise
        covered = np.mean(np.abs(yt - mean) < 1.96 * sd)
        # nominal 0.95; binomial sd at n=400 is 0.011, so 90–99% is > 3.5 sd either side
        assert 0.90 <= covered <= 0.99, (name, covered)


def test_fitted_coreset_elbo_is_below_the_exact_log_marginal_likelihood(fits):
    posts, _, _ = fits
    p = posts["coreset"]
    X, y = p._X, p._y
    kernel, noise_var = p._gp.hyper(jax.tree.map(lambda v: v[0], p._params), p._spec)
    c = p.params
    elbo = gp.coreset_elbo(
        kernel, c["inputs"][0], c["outputs"][0], c["weights"][0], noise_var, X, y
    )
    lml = gp.log_marginal_likelihood(kernel, X, y, jnp.sqrt(noise_var))
    assert float(elbo) <= float(lml) + 0.5  # float32 slack on sums of 400 terms
    # and not a loose one: 30 pseudo points lose < 0.05 nats per data point (≈ 9 of 400 here)
    assert float(lml) - float(elbo) < 0.05 * N_TRAIN
    assert c["inputs"].shape == (1, 30, 1) and np.all(c["weights"] > 0)
    assert np.all(np.isfinite(p.diagnostics["loss"]))


def test_coreset_bernoulli_classification():
    rng = np.random.default_rng(7)
    x = rng.uniform(-2, 2, 600)
    p_true = jax.nn.sigmoid(4.0 * np.sin(2.0 * x))
    yb = (rng.uniform(size=600) < p_true).astype(np.float32)
    m = gp.regression(x, yb, kernel=K.RBF(1.0, 2.0), likelihood="bernoulli")
    meth = gp.CoresetVI(num_points=20, batch_size=128, num_steps=1500, optimizer=optax.adam(0.02))
    post = ppl.infer(m, method=meth, num_chains=1, progress=False)
    xt = np.linspace(-1.8, 1.8, 200)
    mean, var = post.predict(xt)
    assert np.all(var > 0)
    # the latent function's sign matches the truth's away from its zeros (|f| > 1):
    # ≈ 75 Bernoulli draws per unit of x determine the sign there with high probability
    f_true = 4.0 * np.sin(2.0 * xt)
    clear = np.abs(f_true) > 1.0
    assert np.mean(np.sign(mean[clear]) == np.sign(f_true[clear])) > 0.95
    assert "noise" not in post.samples


# ----- bad input --------------------------------------------------------------------


def test_bad_input_is_refused_with_sizes():
    X, y = data_1d(20, seed=8)
    with pytest.raises(DataError, match="20 rows but y has 19"):
        gp.regression(X, y[:-1], kernel=K.RBF())
    Xbad = X.copy()
    Xbad[3, 0] = np.nan
    with pytest.raises(DataError, match="non-finite.*row 3"):
        gp.regression(Xbad, y, kernel=K.RBF())
    with pytest.raises(DataError, match="non-finite"):
        gp.regression(X, np.where(np.arange(20) == 5, np.inf, y), kernel=K.RBF())
    with pytest.raises(DataError, match="shape"):
        gp.regression(np.zeros((20, 2, 2)), y, kernel=K.RBF())
    with pytest.raises(OptionError, match="noise"):
        gp.regression(X, y, kernel=K.RBF(), noise=-1.0)
    with pytest.raises(OptionError, match=r"noise=\[0.1, 0.1\] must be a positive number"):
        gp.regression(X, y, kernel=K.RBF(), noise=jnp.full(2, 0.1))
    for noise in (np.float32(0.1), jnp.array(0.1), np.array(0.1)):  # 0-d arrays are numbers
        assert gp.regression(X, y, kernel=K.RBF(), noise=noise).args[3] == pytest.approx(0.1)
    with pytest.raises(OptionError, match="likelihood"):
        gp.regression(X, y, kernel=K.RBF(), likelihood="poisson")
    with pytest.raises(DataError, match="0, 1"):
        gp.regression(X, y, kernel=K.RBF(), likelihood="bernoulli")
    m = gp.regression(X, y, kernel=K.RBF())
    with pytest.raises(
        DataError, match="num_points=50 is larger than the number of data points N=20"
    ):
        ppl.infer(m, method=gp.CoresetVI(num_points=50), num_chains=1, progress=False)
    with pytest.raises(DataError, match="num_inducing=21"):
        ppl.infer(m, method=gp.SVGP(num_inducing=21), num_chains=1, progress=False)
    with pytest.raises(OptionError, match="batch_size"):
        gp.CoresetVI(batch_size=0)
    with pytest.raises(ModelError, match="ppl.gp.regression"):
        ppl.infer(_other(), method=gp.CoresetVI(), num_chains=1)
    with pytest.raises(DataError, match=r"ppl.gp.sample\('f'\): X must be \(N,\) or \(N, D\)"):
        ppl.infer(_gp_site(jnp.zeros((2, 3, 4))), num_samples=1, num_warmup=1, num_chains=1)


def _gp_site(X):
    @ppl.model
    def latent(X):
        gp.sample("f", gp.GP(K.RBF()), X)

    return latent(X)


def test_a_failed_gp_fit_gives_advice_for_gp_fits():
    X, y = data_1d(10, seed=0)
    m = gp.regression(X, y, kernel=K.RBF(), noise=0.1)
    meth = gp.Exact(num_steps=15, optimizer=optax.sgd(1e8))  # diverges at once
    with pytest.raises(InferenceError, match=r"Exact: fit\(s\) \[0\] failed") as info:
        ppl.infer(m, method=meth, num_chains=1, progress=False)
    assert "kernel's hyperparameters" in str(info.value) and "guide" not in str(info.value)


def _other():
    @ppl.model
    def other():
        ppl.sample("a", ppl.dist.Normal(0, 1))

    return other()
