"""Run diagnostics and their warnings (ppl/mcmc/diagnostics.py).

Most checks run the pure functions on synthetic draws and statistics whose answer is
known by construction (a chain shifted away from the others, a strongly autocorrelated
chain, a random walk in the energy); two real runs check the wiring through
`ppl.infer`: a small conjugate model that must raise no warning, and the centred eight
schools, which must raise them, at the user's line.
"""

import warnings

import jax.numpy as jnp
import numpy as np
import pytest

import ppl
from ppl import dist, examples
from ppl.errors import OptionError
from ppl.infer.summary import component_labels, ess_bulk, ess_tail, r_hat, summarize
from ppl.mcmc import NUTS, RWMH, cycle, repeat
from ppl.mcmc import diagnostics as diag
from ppl.mcmc.diagnostics import SamplingWarning

RNG_SEED = 20240611


def rng():
    return np.random.default_rng(RNG_SEED)


def ar1(gen, shape, rho):
    """AR(1) draws along axis 1 with unit stationary variance: ESS ≈ n (1 - rho) / (1 + rho)."""
    eps = gen.normal(size=shape) * np.sqrt(1 - rho**2)
    x = np.empty(shape)
    x[:, 0] = gen.normal(size=(shape[0],) + shape[2:])
    for t in range(1, shape[1]):
        x[:, t] = rho * x[:, t - 1] + eps[:, t]
    return x


def direct_e_bfmi(energy):
    """E-BFMI per chain (Betancourt 2016), written out with plain loops: the mean of the
    n - 1 squared energy changes over the energy's sample variance (ddof=1, as ArviZ)."""
    out = []
    for e in np.asarray(energy, dtype=np.float64):
        num = sum((e[i] - e[i - 1]) ** 2 for i in range(1, len(e))) / (len(e) - 1)
        den = sum((v - e.mean()) ** 2 for v in e) / (len(e) - 1)
        out.append(num / den)
    return np.array(out)


# ----- E-BFMI -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def energies():
    """Chain 0 independent (E-BFMI ≈ 2), chain 1 AR(0.5) (≈ 1), chain 2 AR(0.95) (≈ 0.1)."""
    gen = rng()
    return np.stack([ar1(gen, (1, 1000), rho)[0] for rho in (0.0, 0.5, 0.95)]) * 3.0 + 10.0


def test_e_bfmi_matches_direct_computation_and_arviz(energies):
    got = diag.e_bfmi(energies)
    np.testing.assert_allclose(got, direct_e_bfmi(energies), rtol=1e-12)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # ArviZ announces its 1.0 refactor
        import arviz as az
    np.testing.assert_allclose(got, az.bfmi(energies), rtol=1e-10)
    # For AR(1) energies E-BFMI -> 2 (1 - rho). At 1000 draws the independent chain's
    # value has an sd of about 0.14 (squared differences: var 12 sigma^4 / 999, plus the
    # variance estimate's own error), so 0.5 is over 3 sd; rho = 0.95 expects 0.1.
    assert abs(got[0] - 2.0) < 0.5 and got[2] < diag.E_BFMI_MIN


def test_low_e_bfmi_warns_naming_the_chain(energies):
    value, message = diag.check_energy(energies)
    assert message is not None and "chain(s) 2 " in message and "0.3" in message
    assert "non-centred" in message
    np.testing.assert_array_equal(value, diag.e_bfmi(energies))
    assert diag.check_energy(energies[:2])[1] is None


# ----- tree depth -------------------------------------------------------------------------


def test_tree_depth_saturation_warns_above_one_percent():
    depth = np.full((3, 200), 3)
    depth[0, :2] = 5  # 1% of the draws: at the threshold, no warning
    depth[1, :1] = 5
    depth[2, :11] = 5  # 5.5%
    out = NUTS(max_tree_depth=5).kernel_diagnostics({"tree_depth": depth})
    np.testing.assert_array_equal(out["max_tree_depth_hits"], [2, 1, 11])
    np.testing.assert_allclose(out["tree_depth"], depth.mean(axis=1))
    (message,) = out["warnings"]
    assert "chain(s) 2 " in message and "max_tree_depth=5" in message
    assert "max_tree_depth=7" in message and "dense_mass" in message
    depth[2, :11] = 3
    assert NUTS(max_tree_depth=5).kernel_diagnostics({"tree_depth": depth})["warnings"] == []


# ----- convergence: R-hat and ESS ----------------------------------------------------------


def test_small_sites_get_exactly_the_summary_statistics():
    gen = rng()
    samples = {"a": gen.normal(size=(3, 101)), "b": ar1(gen, (3, 101, 2, 3), 0.7)}
    table = summarize(samples)
    got = {}
    for name, value in samples.items():
        x = np.moveaxis(value.reshape(3, 101, -1), -1, 0)
        for label, stats in zip(
            component_labels(name, value.shape[2:]), diag._component_stats(x).T
        ):
            got[label] = stats
    assert list(got) == list(table)  # same component names, in the same order
    for label, (rh, bulk, tail) in got.items():
        row = table[label]
        assert (rh, bulk, tail) == (row["r_hat"], row["ess_bulk"], row["ess_tail"]), label


def test_stuck_chains_give_r_hat_warning_naming_the_component():
    # Two chains of iid N(0, 1) draws, except theta[3] whose second chain sits at +3:
    # the chains disagree there and only there.
    gen = rng()
    samples = {"alpha": gen.normal(size=(2, 500)), "theta": gen.normal(size=(2, 500, 5))}
    samples["theta"][1, :, 3] += 3.0
    out, messages = diag.check_convergence(samples)
    rhat_messages = [m for m in messages if m.startswith("r_hat")]
    assert len(rhat_messages) == 1 and "1 of 6 components" in rhat_messages[0]
    assert "theta[3]" in rhat_messages[0] and "theta[0]" not in rhat_messages[0]
    assert out["r_hat_max"] == r_hat(samples["theta"][..., 3]) > 1.5
    for m in messages:  # any ESS complaint is about the same component
        assert "theta[3]: " in m and "alpha: " not in m


def test_low_ess_warns_with_threshold_and_names():
    # 4 chains x 500 AR(0.95) draws: ESS ≈ 2000 * 0.05 / 1.95 ≈ 51, far below 400;
    # the iid components have ESS ≈ 2000.
    gen = rng()
    x = gen.normal(size=(4, 500, 2, 2))
    x[:, :, 1, 0] = ar1(gen, (4, 500), 0.95)
    out, messages = diag.check_convergence({"x": x})
    bulk = [m for m in messages if m.startswith("ess_bulk")]
    tail = [m for m in messages if m.startswith("ess_tail")]
    assert len(bulk) == len(tail) == 1
    for m in bulk + tail:
        assert "< 400 (100 per chain x 4 chains)" in m and "1 of 4 components" in m
        assert "x[1,0]" in m and "x[0,0]" not in m
    assert out["ess_bulk_min"] == ess_bulk(x[:, :, 1, 0]) < 150
    assert out["ess_tail_min"] == ess_tail(x[:, :, 1, 0]) < 400


def test_well_mixed_draws_raise_nothing():
    gen = rng()
    out, messages = diag.check_convergence({"a": gen.normal(size=(4, 500, 3))})
    assert messages == []
    assert out["r_hat_max"] < 1.01 and out["ess_bulk_min"] > 1000


def test_one_chain_uses_split_r_hat():
    # One chain that drifts: its halves disagree, which split R-hat sees.
    gen = rng()
    drift = gen.normal(size=(1, 400)) + np.linspace(0, 3, 400)
    out, messages = diag.check_convergence({"mu": drift})
    assert out["r_hat_max"] > 1.1 and any(m.startswith("r_hat") and "mu" in m for m in messages)
    assert any("< 100 (100 per chain x 1 chain)" in m for m in messages)


def test_constant_short_and_broken_draws_give_nan_quietly():
    broken = rng().normal(size=(2, 50, 100))  # large enough to be screened
    broken[1, 3, :] = np.inf
    broken[0, 5, :] = np.nan
    samples = {"c": np.ones((2, 50)), "short": np.ones((2, 3, 2)), "broken": broken}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no RuntimeWarning from NumPy either
        out, messages = diag.check_convergence(samples)
        assert np.all(np.isnan(diag.e_bfmi(np.ones((2, 2)))))
    assert messages == [] and all(np.isnan(v) for v in out.values())


def test_large_site_is_screened_and_its_worst_components_are_exact():
    # 300 components (> EXACT_COMPONENTS): a shifted chain at 7, slow chains at 250.
    gen = rng()
    z = gen.normal(size=(4, 400, 300))
    z[0, :, 7] += 1.0
    z[:, :, 250] = ar1(gen, (4, 400), 0.97)
    out, messages = diag.check_convergence({"z": z})
    assert z.shape[-1] > diag.EXACT_COMPONENTS
    exact = np.array([(r_hat(c), ess_bulk(c), ess_tail(c)) for c in np.moveaxis(z, -1, 0)])
    assert out["r_hat_max"] == exact[:, 0].max()
    assert out["ess_bulk_min"] == exact[:, 1].min() == exact[250, 1]
    assert out["ess_tail_min"] == exact[:, 2].min()
    rhat_message, *ess_messages = messages
    assert "z[7]: " in rhat_message and "z[250]: " in rhat_message
    assert ess_messages and all("z[250]: " in m for m in ess_messages)


def test_constant_components_do_not_take_the_exact_checks_of_others():
    # constant draws (e.g. a Cholesky factor's structural zeros) have no statistic; they
    # must not fill the budget of exact statistics meant for the worst components
    gen = rng()
    z = gen.normal(size=(4, 400, 300))
    z[:, :, 250] = ar1(gen, (4, 400), 0.97)
    out, _ = diag.check_convergence({"zeros": np.zeros((4, 400, 400)), "z": z})
    exact = np.array([(r_hat(c), ess_bulk(c), ess_tail(c)) for c in np.moveaxis(z, -1, 0)])
    assert out["r_hat_max"] == exact[:, 0].max()
    assert out["ess_bulk_min"] == exact[:, 1].min()
    assert out["ess_tail_min"] == exact[:, 2].min()


# ----- one run, combined kernels ------------------------------------------------------------


def fake_stats(num_chains=2, num_draws=200, prefixes=("",), energy_rho=0.0):
    """Per-draw stats of a healthy NUTS run under each prefix, as `flat_stats` lays them out."""
    gen = rng()
    shape = (num_chains, num_draws)
    stats = {"lp": gen.normal(size=shape), "accept_prob": gen.uniform(0.7, 1.0, shape)}
    for p in prefixes:
        stats[p + "accept_prob"] = gen.uniform(0.7, 1.0, shape)
        stats[p + "diverging"] = np.zeros(shape, bool)
        stats[p + "tree_depth"] = np.full(shape, 3)
        stats[p + "energy"] = ar1(gen, shape, energy_rho)
    return stats


def test_combined_kernel_diagnostics_per_part():
    # cycle(repeat(NUTS, 2), RWMH, NUTS(max_tree_depth=3)): parts "0." (whose own part
    # is "0.0."), "1." and "2."; part 2 always hits its max depth, part 0.0 mixes badly.
    method = cycle(repeat(NUTS(), 2), RWMH(), NUTS(max_tree_depth=3))
    stats = fake_stats(prefixes=("0.0.", "2."))
    stats["0.0.energy"] = ar1(rng(), (2, 200), 0.97)
    stats["0.accept_prob"] = stats["0.0.accept_prob"]
    stats["1.accept_prob"] = np.full((2, 200), 0.25)
    stats["1.accepted"] = np.ones((2, 200), bool)
    stats["2.diverging"][1, :3] = True
    out = diag.check_run(method, stats)
    for key in ("0.0.e_bfmi", "2.e_bfmi", "0.0.tree_depth", "2.max_tree_depth_hits"):
        assert out[key].shape == (2,), key
    assert "e_bfmi" not in out and "tree_depth" not in out
    np.testing.assert_allclose(out["0.0.e_bfmi"], direct_e_bfmi(stats["0.0.energy"]))
    np.testing.assert_array_equal(out["1.accept_rate"], [0.25, 0.25])
    np.testing.assert_array_equal(out["2.max_tree_depth_hits"], [200, 200])
    np.testing.assert_array_equal(out["0.0.max_tree_depth_hits"], [0, 0])
    np.testing.assert_array_equal(out["divergences"], [0, 3])
    assert out["nonfinite_draws"] == 0
    text = "\n".join(out["warnings"])
    assert len(out["warnings"]) == 3, text
    assert "Cycle: 3 divergent transitions after warmup in part 2 (nuts) (per chain" in text
    assert "Cycle part 0.0 (nuts): E-BFMI below 0.3" in text
    assert "Cycle part 2 (nuts): 400 draws hit max_tree_depth=3" in text


def test_healthy_run_has_no_warnings_and_all_keys():
    # iid draws, 2 chains x 1000: split R-hat exceeds 1.01 with probability ~1e-7.
    gen = rng()
    samples = {"mu": gen.normal(size=(2, 1000)), "theta": gen.normal(size=(2, 1000, 3))}
    out = diag.check_run(NUTS(), fake_stats(), samples)
    assert out["warnings"] == []
    for key in ("e_bfmi", "tree_depth", "max_tree_depth_hits", "divergences",
                "nonfinite_draws", "r_hat_max", "ess_bulk_min", "ess_tail_min"):  # fmt: skip
        assert key in out, key
    assert diag.check_run(NUTS(), fake_stats())["warnings"] == []  # no samples: no R-hat


# ----- real runs through ppl.infer ----------------------------------------------------------


@ppl.model
def normal_mean(y=None):
    """mu ~ N(0, 10²), y_i ~ N(mu, 1): a posterior NUTS samples nearly independently."""
    mu = ppl.sample("mu", dist.Normal(0.0, 10.0))
    with ppl.plate("data", 10):
        ppl.sample("y", dist.Normal(mu, 1.0), obs=y)


@pytest.fixture(scope="module")
def well_mixed():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        post = ppl.infer(
            normal_mean(jnp.linspace(-1.0, 3.0, 10)), num_warmup=300, num_samples=500,
            num_chains=4, seed=0, progress=False,
        )  # fmt: skip
    return post, [w for w in caught if issubclass(w.category, SamplingWarning)]


@pytest.fixture(scope="module")
def centred():
    # Few draws of the centred funnel: divergences, poor mixing of tau.
    model = examples.eight_schools_centred(examples.EIGHT_SCHOOLS_SIGMA, y=examples.EIGHT_SCHOOLS_Y)
    with pytest.warns(SamplingWarning) as record:
        post = ppl.infer(model, num_warmup=200, num_samples=200, num_chains=2, seed=0,
                         progress=False)  # fmt: skip
    return post, [w for w in record if issubclass(w.category, SamplingWarning)]


def test_well_mixed_run_raises_no_warning(well_mixed):
    post, caught = well_mixed
    d = post.diagnostics
    assert caught == [] and d["warnings"] == []
    assert d["e_bfmi"].shape == (4,) and np.all(d["e_bfmi"] > diag.E_BFMI_MIN)
    np.testing.assert_allclose(d["e_bfmi"], direct_e_bfmi(post.sample_stats["energy"]), rtol=1e-6)
    table = post.summary()
    assert d["r_hat_max"] == max(row["r_hat"] for row in table.values()) < 1.01
    assert d["ess_bulk_min"] == min(row["ess_bulk"] for row in table.values()) >= 400
    assert d["ess_tail_min"] == min(row["ess_tail"] for row in table.values()) >= 400
    np.testing.assert_array_equal(d["max_tree_depth_hits"], 0)


def test_centred_eight_schools_warns_at_the_users_line(centred):
    post, record = centred
    messages = [str(w.message) for w in record]
    assert messages == post.diagnostics["warnings"]  # one warning per problem, same text
    assert all(w.filename == __file__ for w in record), [w.filename for w in record]
    text = "\n".join(messages)
    assert "divergent transitions" in text
    r_hat_line = next(m for m in messages if m.startswith("nuts: r_hat > 1.01"))
    assert "tau" in r_hat_line
    assert any(m.startswith("nuts: ess_bulk < 200 (100 per chain x 2 chains)") for m in messages)
    d = post.diagnostics
    assert d["r_hat_max"] > 1.01 and d["ess_bulk_min"] < 200
    assert d["divergences"].sum() > 0 and d["e_bfmi"].shape == (2,)


def test_convergence_checks_can_be_turned_off(centred):
    """Same run as `centred` (compiled already), R-hat/ESS skipped: only the per-draw
    checks warn, and the draws are those of the checked run."""
    model = examples.eight_schools_centred(examples.EIGHT_SCHOOLS_SIGMA, y=examples.EIGHT_SCHOOLS_Y)
    settings = dict(num_warmup=200, num_samples=200, num_chains=2, seed=0, progress=False)
    with pytest.warns(SamplingWarning) as record:
        post = ppl.infer(model, convergence_checks=False, **settings)
    messages = [str(w.message) for w in record]
    assert messages == post.diagnostics["warnings"]
    assert any("divergent transitions" in m for m in messages)
    assert not any("r_hat" in m or "ess_" in m for m in messages)
    assert not {"r_hat_max", "ess_bulk_min", "ess_tail_min"} & set(post.diagnostics)
    np.testing.assert_array_equal(post.samples["tau"], centred[0].samples["tau"])
    assert post.summary()["tau"]["r_hat"] > 1.01  # still there on demand
    with pytest.raises(OptionError, match="convergence_checks must be True or False"):
        ppl.infer(model, convergence_checks="no", **settings)
    with pytest.raises(OptionError, match="does not take convergence_checks"):
        ppl.infer(model, method="vi", convergence_checks=False)
