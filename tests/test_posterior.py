"""Tests of `Posterior`: summary numbers, save/load, posterior predictive, ArviZ export.

Summary statistics are deterministic functions of the draws, so they are checked
on synthetic AR(1) chains (no sampling) against ArviZ and NumPy to rounding
error. The other tests reuse the session's NUTS run on the conjugate regression
(tests/conftest.py).
"""

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy import stats

import ppl
from ppl.errors import PPLError, SiteError
from ppl.infer import summary
from ppl.infer.summary import COLUMNS, _average_ranks

with warnings.catch_warnings():
    warnings.simplefilter("ignore", FutureWarning)  # ArviZ announces its 1.0 refactor
    import arviz as az

from conftest import NOISE_SD, linear_regression  # noqa: E402

RTOL = 1e-10  # same formulas in float64: only summation order differs
ABOVE_ONE = float(np.nextafter(1.0, 2.0))  # a near-tie of 1.0


def ar1(rng, phi, chains, draws, offsets=0.0):
    """AR(1) chains x_t = phi x_{t-1} + e_t (stationary start), shifted per chain."""
    x = np.empty((chains, draws))
    x[:, 0] = rng.normal(size=chains) / np.sqrt(1 - phi**2)
    e = rng.normal(size=(chains, draws))
    for t in range(1, draws):
        x[:, t] = phi * x[:, t - 1] + e[:, t]
    return x + np.reshape(offsets, (-1, 1))


@pytest.fixture(scope="module")
def synthetic():
    """Sites with known structure: strong / no / negative autocorrelation, stuck chains."""
    rng = np.random.default_rng(0)
    samples = {
        "a": ar1(rng, 0.9, 4, 500),
        "b": np.stack([ar1(rng, 0.0, 4, 500), ar1(rng, -0.3, 4, 500)], axis=-1),
        "c": ar1(rng, 0.5, 4, 500, offsets=[0.0, 0.0, 0.0, 1.5]) ** 3,  # skewed, one chain off
    }
    return ppl.Posterior(samples)


def components(post):
    """(row label, draws (chains, draws)) for every scalar component."""
    for name, value in post.samples.items():
        for idx in np.ndindex(*value.shape[2:]):
            label = name if not idx else f"{name}[{','.join(map(str, idx))}]"
            yield label, value[(slice(None), slice(None), *idx)]


def rank_r_hat(x):
    """Rank-normalised split R-hat, folded about the median of all draws (Vehtari 2021).

    ArviZ's `method="rank"` folds the split chains instead; the two agree when the
    number of draws is even (no middle draw is dropped by the split).
    """
    folded = np.abs(x - np.median(x))
    return max(az.rhat(x, method="z_scale"), az.rhat(folded, method="z_scale"))


def test_summary_matches_numpy_and_arviz(synthetic):
    table = synthetic.summary()
    idata = az.from_dict(posterior=synthetic.samples)
    ref = az.summary(idata, kind="all", round_to="none", stat_focus="mean")
    labels = [label for label, _ in components(synthetic)]
    assert list(table) == labels == list(ref.index)
    for label, x in components(synthetic):
        row = table[label]
        assert set(row) == set(COLUMNS)
        np.testing.assert_allclose(row["mean"], x.mean(), rtol=RTOL)
        np.testing.assert_allclose(row["sd"], x.std(ddof=1), rtol=RTOL)
        q = np.quantile(x, [0.05, 0.5, 0.95])
        np.testing.assert_allclose([row["5%"], row["50%"], row["95%"]], q, rtol=RTOL)
        np.testing.assert_allclose(row["ess_bulk"], az.ess(x, method="bulk"), rtol=RTOL)
        np.testing.assert_allclose(row["ess_tail"], az.ess(x, method="tail"), rtol=RTOL)
        np.testing.assert_allclose(row["r_hat"], az.rhat(x, method="rank"), rtol=RTOL)
        for col in ("mean", "sd", "ess_bulk", "ess_tail", "r_hat"):
            np.testing.assert_allclose(row[col], ref.loc[label, col], rtol=RTOL, err_msg=col)


def test_statistics_of_repeated_draws_match_arviz():
    # MCMC draws repeat (a rejected move keeps the last draw) and float32 draws collide:
    # ranks with many ties, in the draws and in their folds about the median.
    rng = np.random.default_rng(5)
    x = ar1(rng, 0.6, 4, 400)
    stay = rng.uniform(size=x.shape) < 0.3
    for t in range(1, x.shape[1]):
        x[:, t] = np.where(stay[:, t], x[:, t - 1], x[:, t])
    x = np.round(x, 1)  # and a coarse grid: large tie groups
    x[0, :3] = [1.0, ABOVE_ONE, 1.0]  # near-ties
    np.testing.assert_allclose(summary.ess_bulk(x), az.ess(x, method="bulk"), rtol=RTOL)
    np.testing.assert_allclose(summary.ess_tail(x), az.ess(x, method="tail"), rtol=RTOL)
    np.testing.assert_allclose(summary.r_hat(x), rank_r_hat(x), rtol=RTOL)


def test_summary_detects_what_it_should(synthetic):
    table = synthetic.summary()
    assert table["a"]["ess_bulk"] < 0.15 * 2000  # phi=0.9: ESS ≈ N (1-phi)/(1+phi) ≈ 105
    assert table["b[0]"]["ess_bulk"] > 0.7 * 2000  # independent draws
    assert table["b[1]"]["ess_bulk"] > 2000  # antithetic: ESS above the number of draws
    assert table["c"]["r_hat"] > 1.1 > table["b[0]"]["r_hat"]  # one chain shifted


@pytest.mark.parametrize("draws", [301, 8])
def test_summary_odd_and_short_chains(draws):
    # Odd: the split drops the middle draw. 8 draws: the ESS cap S·log10(S) binds.
    rng = np.random.default_rng(draws)
    post = ppl.Posterior({"x": ar1(rng, 0.4, 4, draws, offsets=[0, 0.2, 0, -0.2])})
    row = post.summary()["x"]
    x = post.samples["x"]
    np.testing.assert_allclose(row["ess_bulk"], az.ess(x, method="bulk"), rtol=RTOL)
    np.testing.assert_allclose(row["ess_tail"], az.ess(x, method="tail"), rtol=RTOL)
    np.testing.assert_allclose(row["r_hat"], rank_r_hat(x), rtol=RTOL)


@settings(max_examples=200, deadline=None)
@given(
    hnp.arrays(
        np.float64,
        hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=9),
        elements=st.sampled_from([-2.5, -1.0, -0.0, 0.0, 0.5, 1.0, ABOVE_ONE, 3.0])
        | st.floats(-1e3, 1e3),
    )
)
def test_average_ranks_match_scipy_with_ties(x):
    # Few distinct values: many ties, within and across the rows of the last axis, and
    # near-ties (1 and the next float) that the packed-key sort must order exactly.
    np.testing.assert_array_equal(_average_ranks(x), stats.rankdata(x, method="average", axis=-1))


@settings(max_examples=200, deadline=None)
@given(
    hnp.arrays(
        np.float64,
        hnp.array_shapes(min_dims=2, max_dims=4, min_side=1, max_side=7),
        elements=st.sampled_from([-2.5, 0.0, 3.0]) | st.floats(-1e6, 1e6),
    ),
    st.lists(st.floats(0, 1), min_size=1, max_size=4),
)
def test_quantiles_from_one_sort_equal_numpys(x, probs):
    # The tail ESS compares draws with these quantiles: they must be NumPy's to the bit.
    flat = x.reshape(x.shape[:-2] + (-1,))
    expected = np.quantile(flat, probs, axis=-1)
    np.testing.assert_array_equal(summary._quantiles(x, probs), expected)


def test_statistics_split_over_threads_are_unchanged(synthetic, monkeypatch):
    draws = np.moveaxis(
        np.concatenate([synthetic.samples["b"], synthetic.samples["a"][..., None]], -1), -1, 0
    )
    whole = summary.rank_diagnostics(draws)
    monkeypatch.setattr(summary, "PARALLEL_VALUES", 1)  # one part per component
    np.testing.assert_array_equal(summary.rank_diagnostics(draws), whole)
    # any memory layout (e.g. a view of draws stored steps-first, as the driver keeps them)
    x = synthetic.samples["a"]
    strided = np.swapaxes(np.ascontiguousarray(np.swapaxes(x, 0, 1)), 0, 1)
    assert not strided.flags.c_contiguous
    for statistic in (summary.ess, summary.ess_mean, summary.ess_tail, summary.r_hat):
        np.testing.assert_allclose(statistic(strided), statistic(x), rtol=1e-12)  # sum order


def test_summary_selects_sites_and_prints(synthetic):
    table = synthetic.summary(sites=["b"])
    assert list(table) == ["b[0]", "b[1]"]
    text = str(synthetic.summary())
    assert all(c in text.splitlines()[0] for c in COLUMNS)
    assert len(text.splitlines()) == 1 + 4
    assert synthetic.summary().to_pandas().shape == (4, len(COLUMNS))
    with pytest.raises(PPLError, match="'nope'"):
        synthetic.summary(sites=["nope"])


def test_summary_prob_sets_the_interval_columns(synthetic):
    assert synthetic.summary(prob=0.9) == synthetic.summary()
    table = synthetic.summary(sites="b", prob=0.95)
    assert list(table["b[0]"]) == ["mean", "sd", "2.5%", "50%", "97.5%", *COLUMNS[5:]]
    q = np.quantile(synthetic.samples["b"][..., 0], [0.025, 0.975])
    np.testing.assert_allclose([table["b[0]"]["2.5%"], table["b[0]"]["97.5%"]], q, rtol=RTOL)
    assert "2.5%" in str(table).splitlines()[0]
    for prob in (0, 1.0, "0.9", True):
        with pytest.raises(PPLError, match=rf"prob={prob!r} must be a number in \(0, 1\)"):
            synthetic.summary(prob=prob)


def test_summary_prints_large_and_small_values_apart():
    rng = np.random.default_rng(0)
    draws = {"revenue": rng.normal(2.5e6, 3e5, (2, 100)), "rate": rng.normal(3e-4, 5e-5, (2, 100))}
    lines = str(summary.summarize(draws)).splitlines()
    revenue, rate = lines[1].split(), lines[2].split()
    assert len(revenue) == len(rate) == 1 + len(COLUMNS)  # cells never run together
    assert revenue[1].endswith("e+06") and rate[1].endswith("e-04")
    assert float(revenue[1]) == pytest.approx(draws["revenue"].mean(), rel=1e-3)


# ----- samples ------------------------------------------------------------------------------


def test_sample_shapes_include_deterministic_sites(regression, regression_nuts):
    post = regression_nuts
    assert post.samples["w"].shape == (4, 1000, 3)
    assert post.samples["signal"].shape == (4, 1000, regression.x.shape[0])  # deterministic
    assert post.latent_sites == ("w",)
    assert (post.num_chains, post.num_samples) == (4, 1000)
    assert post.flat("w").shape == (4000, 3)
    np.testing.assert_array_equal(post["w"], post.samples["w"])
    assert "y" not in post.samples  # observed
    rows = {f"w[{i}]" for i in range(3)} | {f"signal[{i}]" for i in range(regression.x.shape[0])}
    assert set(post.summary()) == rows


# ----- save / load --------------------------------------------------------------------------


def assert_same_posterior(a, b):
    assert list(a.samples) == list(b.samples)
    for k in a.samples:
        assert a.samples[k].dtype == b.samples[k].dtype
        np.testing.assert_array_equal(a.samples[k], b.samples[k])
    assert list(a.sample_stats) == list(b.sample_stats)
    for k in a.sample_stats:
        assert a.sample_stats[k].dtype == b.sample_stats[k].dtype
        np.testing.assert_array_equal(a.sample_stats[k], b.sample_stats[k])
    assert list(a.diagnostics) == list(b.diagnostics)
    for k, v in a.diagnostics.items():
        w = b.diagnostics[k]
        assert type(w) is type(v) or (isinstance(v, np.ndarray) and isinstance(w, np.ndarray)), k
        if isinstance(v, (np.ndarray, np.generic)):
            assert v.dtype == w.dtype, k
        np.testing.assert_equal(w, v, err_msg=k)
    assert (a.method, a.latent_sites) == (b.method, b.latent_sites)
    np.testing.assert_equal(a.log_evidence, b.log_evidence)


def test_save_load_round_trip_of_a_nuts_run(regression_nuts, tmp_path):
    path = tmp_path / "post.npz"
    regression_nuts.save(path)
    loaded = ppl.load(path)
    assert_same_posterior(regression_nuts, loaded)
    assert loaded.method == "nuts" and loaded.log_evidence is None


def test_save_load_round_trip_of_every_kind_of_value(tmp_path):
    rng = np.random.default_rng(1)
    post = ppl.Posterior(
        {"layer/w": rng.normal(size=(2, 5, 3)).astype(np.float32), "k": np.ones((2, 5), np.int32)},
        {
            "wall_time": 1.25,
            "grad_evals": 120,
            "converged": True,
            "note": "ok",
            "missing": None,
            "nan": float("nan"),
            "per_chain": np.array([0.1, 0.2]),
            "np_scalar": np.float32(2.5),
            "flags": np.array([True, False]),
            "log_evidence_se": 0.03,
        },
        sample_stats={"lp": rng.normal(size=(2, 5))},
        log_evidence=-12.5,
        method="smc",
        latent_sites=("layer/w",),
    )
    post.save(tmp_path / "p.npz")
    assert_same_posterior(post, ppl.load(str(tmp_path / "p.npz")))


def test_load_rejects_files_that_are_not_saved_posteriors(tmp_path):
    np.savez(tmp_path / "other.npz", x=np.arange(3))
    with pytest.raises(PPLError, match="not a saved ppl Posterior"):
        ppl.load(tmp_path / "other.npz")
    (tmp_path / "text.npz").write_text("hello")
    with pytest.raises(PPLError, match="not a saved ppl Posterior"):
        ppl.load(tmp_path / "text.npz")
    np.save(tmp_path / "array.npy", np.arange(3))
    with pytest.raises(PPLError, match="not a saved ppl Posterior"):
        ppl.load(tmp_path / "array.npy")


# ----- predictive ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def predictive(regression, regression_nuts):
    return regression_nuts.predictive(linear_regression(regression.x_new), seed=0)


def test_predictive_sites_and_shapes(regression, predictive):
    n_new = regression.x_new.shape[0]
    assert "y" in predictive  # the observed site, now unobserved
    assert "w" not in predictive  # latent sites are the posterior's own draws
    assert predictive["y"].shape == (4, 1000, n_new)
    assert predictive["signal"].shape == (4, 1000, n_new)


def test_predictive_warns_when_it_would_not_predict(regression, regression_nuts):
    x, y = regression.x_new, np.zeros(regression.x_new.shape[0], np.float32)
    with pytest.warns(
        ppl.errors.SamplingWarning, match=r"data bound to \[.y.\].*None for that data"
    ):
        regression_nuts.predictive(linear_regression(x, y), seed=0)

    @ppl.model
    def unrelated():
        ppl.sample("v", ppl.dist.Normal())

    with pytest.warns(ppl.errors.SamplingWarning, match=r"none of the posterior's latent sites"):
        regression_nuts.predictive(unrelated(), seed=0)


def test_predictive_for_a_latent_site_of_another_shape_names_it(regression_nuts):
    @ppl.model
    def wider(x):
        w = ppl.sample("w", ppl.dist.Normal(0.0, 1.0).expand([x.shape[1] + 1]).to_event(1))
        ppl.sample("y", ppl.dist.Normal(x @ w[:-1], 1.0))

    x = np.zeros((2, 3), np.float32)
    with pytest.raises(PPLError, match=r"site 'w' has draws of shape \(3,\), but wider now"):
        regression_nuts.predictive(wider(x))


def test_predictive_takes_a_key_as_seed(regression, regression_nuts, predictive):
    import jax

    by_key = regression_nuts.predictive(linear_regression(regression.x_new), jax.random.key(0))
    np.testing.assert_array_equal(by_key["y"], predictive["y"])  # the same as seed=0


def test_predictive_uses_each_posterior_draw(regression, regression_nuts, predictive):
    # The deterministic site is recomputed from draw (c, i) of w: exact up to float32.
    expected = regression_nuts.samples["w"] @ regression.x_new.T
    np.testing.assert_allclose(predictive["signal"], expected, rtol=1e-5, atol=1e-5)


def test_predictive_distribution(regression, regression_nuts, predictive):
    y = predictive["y"].astype(np.float64)
    noise = y - predictive["signal"]
    n = noise.shape[0] * noise.shape[1]
    # Given w, each y is signal + independent N(0, NOISE_SD²) noise, so the predictive
    # mean differs from x_new @ E_draws[w] by a mean of n independent noises:
    # sd NOISE_SD / sqrt(n) per point, whatever the autocorrelation of the w draws.
    w_bar = regression_nuts.samples["w"].astype(np.float64).mean(axis=(0, 1))
    tol = 4 * NOISE_SD / np.sqrt(n)
    np.testing.assert_array_less(np.abs(y.mean(axis=(0, 1)) - regression.x_new @ w_bar), tol)
    # The noise variance: the sample variance of n normals has sd NOISE_SD² sqrt(2 / n).
    tol = 4 * NOISE_SD**2 * np.sqrt(2 / n)
    np.testing.assert_array_less(np.abs(noise.var(axis=(0, 1)) - NOISE_SD**2), tol)
    # Noise is fresh per draw and per point, not shared.
    assert abs(np.corrcoef(noise[..., 0].ravel(), noise[..., 1].ravel())[0, 1]) < 4 / np.sqrt(n)


def test_predictive_from_a_loaded_posterior(regression, regression_nuts, predictive, tmp_path):
    regression_nuts.save(tmp_path / "post.npz")
    again = ppl.load(tmp_path / "post.npz").predictive(linear_regression(regression.x_new), seed=0)
    assert set(again) == set(predictive)
    for k in predictive:
        np.testing.assert_array_equal(again[k], predictive[k])


# ----- ArviZ --------------------------------------------------------------------------------


def test_predictive_leaves_out_factor_sites():
    @ppl.model
    def penalised(n):
        mu = ppl.sample("mu", ppl.dist.Normal(0, 1))
        ppl.factor("pen", -(mu**2))
        with ppl.plate("data", n):
            ppl.sample("y", ppl.dist.Normal(mu, 1))

    post = ppl.Posterior({"mu": np.linspace(-1, 1, 6).reshape(2, 3)}, latent_sites=["mu"])
    out = post.predictive(penalised(4))
    assert sorted(out) == ["y"] and out["y"].shape == (2, 3, 4)


def test_to_arviz(regression_nuts):
    idata = regression_nuts.to_arviz()
    assert isinstance(idata, az.InferenceData)
    assert {"posterior", "sample_stats"} <= set(idata.groups())
    posterior, stats = idata.posterior, idata.sample_stats
    assert (posterior.sizes["chain"], posterior.sizes["draw"]) == (4, 1000)
    assert posterior["w"].shape == (4, 1000, 3)
    np.testing.assert_array_equal(posterior["w"].values, regression_nuts.samples["w"])
    for name in ("diverging", "lp", "acceptance_rate", "n_steps", "tree_depth", "step_size",
                 "energy"):  # fmt: skip
        assert stats[name].shape == (4, 1000), name
    assert stats["diverging"].dtype == bool
    np.testing.assert_array_equal(stats["lp"].values, regression_nuts.sample_stats["lp"])
    # ArviZ's own diagnostics run on the export and agree with ours.
    ref = az.summary(idata, var_names=["w"], round_to="none")
    ours = regression_nuts.summary(sites=["w"])
    for label in ours:
        np.testing.assert_allclose(ours[label]["ess_bulk"], ref.loc[label, "ess_bulk"], rtol=RTOL)
    assert np.all(np.isfinite(az.bfmi(idata)))


def test_pointwise_log_likelihood_for_loo(regression, regression_nuts):
    idata = regression_nuts.to_arviz()
    loglik = idata.log_likelihood["y"].values  # (chains, draws, points)
    w = regression_nuts.samples["w"].astype(np.float64)
    mean = np.einsum("cdk,nk->cdn", w, np.asarray(regression.x, np.float64))
    exact = stats.norm.logpdf(np.asarray(regression.y, np.float64), mean, NOISE_SD)
    np.testing.assert_allclose(loglik, exact, rtol=1e-4, atol=1e-4)
    assert np.isfinite(az.loo(idata).elpd_loo)


def test_masked_entries_are_no_data_points_for_loo():
    """obs_mask's masked entries have no likelihood: NaN pointwise, left out for az.loo
    (they counted as data points with log likelihood 0, Pareto k = inf)."""
    y = np.array([1.0, np.nan, 2.0, np.nan, 0.5])

    @ppl.model
    def imputed(y):
        mu = ppl.sample("mu", ppl.dist.Normal(0, 5))
        with ppl.plate("n", len(y)):
            ppl.sample("y", ppl.dist.Normal(mu, 1), obs=np.nan_to_num(y), obs_mask=~np.isnan(y))

    mu = np.random.default_rng(0).normal(1.2, 0.4, size=(2, 50))
    post = ppl.Posterior({"mu": mu}, model=imputed(y), latent_sites=["mu"])
    pointwise = post.log_likelihood()["y_observed"]
    exact = stats.norm.logpdf(np.nan_to_num(y), mu[..., None], 1.0)
    observed = ~np.isnan(y)
    np.testing.assert_allclose(pointwise[..., observed], exact[..., observed], rtol=1e-5)
    assert np.isnan(pointwise[..., ~observed]).all()
    idata = post.to_arviz()
    np.testing.assert_allclose(
        idata.log_likelihood["y_observed"].values, exact[..., observed], rtol=1e-5
    )
    assert set(idata.observed_data) == {"y_observed"}


def test_arviz_reads_the_stats_of_a_combined_kernels_part():
    rng = np.random.default_rng(1)
    energy = rng.normal(size=(2, 50))
    diverging = rng.uniform(size=(2, 50)) < 0.1
    post = ppl.Posterior(
        {"a": rng.normal(size=(2, 50))},
        sample_stats={
            "0.accept_prob": np.ones((2, 50)),
            "1.energy": energy,
            "1.diverging": diverging,
        },
    )
    idata = post.to_arviz(posterior_predictive={"y": rng.normal(size=(2, 50, 3))})
    np.testing.assert_array_equal(idata.sample_stats["energy"].values, energy)
    np.testing.assert_array_equal(idata.sample_stats["diverging"].values, diverging)
    assert np.all(np.isfinite(az.bfmi(idata)))
    assert idata.posterior_predictive["y"].shape == (2, 50, 3)


def test_an_unknown_site_is_named_with_the_sites():
    post = ppl.Posterior({"alpha": np.zeros((1, 4))})
    for get in (post.flat, post.__getitem__, lambda n: post.summary(sites=[n])):
        with pytest.raises(SiteError, match=r"no site 'alpah' .*did you mean 'alpha'.*\['alpha'\]"):
            get("alpah")


def test_a_vector_site_by_name_lists_its_rows(synthetic):
    with pytest.raises(KeyError, match=r"'b' has a row per component: b\[0\], b\[1\]"):
        synthetic.summary()["b"]


def test_a_component_with_nan_draws_has_nan_statistics():
    x = np.random.default_rng(0).normal(size=(2, 100))
    x[0, 5] = np.nan
    row = summary.summarize({"d": x})["d"]
    assert all(np.isnan(row[c]) for c in COLUMNS)  # not finite low quantiles beside NaN
