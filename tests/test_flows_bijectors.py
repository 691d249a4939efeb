"""Bijectors of ppl.flows against exact answers, by property tests over random inputs
and random parameters.

- inverse(forward(x)) = x, and the forward log-determinant equals log|det J| of
  jax.jacfwd of the forward map, and the inverse's is its negative. Computed in float64
  (jax.enable_x64), so the tolerance 1e-6 is rounding amplified by the ill-conditioned
  maps random parameters make (spline slopes down to ~e^-5), not approximation.
- Planar and radial layers are invertible for ANY raw parameters: w·û > -1, β > -α, a
  positive Jacobian determinant everywhere, and the inverse recovers x.
- Autoregressive layers have a triangular Jacobian; conditional layers read the context.
- Configurations that are not invertible or do not fit are refused with the sizes named.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ppl import flows
from ppl.errors import OptionError
from ppl.flows.planar import planar_u_hat, radial_alpha_beta

DIM = 4
SEEDS = st.integers(0, 2**31 - 1)
FEW = settings(max_examples=6, deadline=None, derandomize=True)

BIJECTORS = {
    "planar": flows.Planar(),
    "radial": flows.Radial(),
    "affine": flows.Affine(),
    "permutation": flows.Permutation([2, 0, 3, 1]),
    "reverse": flows.Reverse(),
    "iaf": flows.iaf(hidden=(8, 8)),
    "maf": flows.maf(hidden=(8,)),
    "real_nvp": flows.real_nvp(hidden=(8,)),
    "spline_coupling": flows.spline_coupling(bins=4, hidden=(8,)),
    "spline_iaf": flows.spline_autoregressive(bins=4, hidden=(8,)),
    "spline_maf": flows.spline_autoregressive(bins=4, hidden=(8,), direction="maf"),
    "chain": flows.Chain([flows.Planar(), flows.Radial(), flows.Reverse(), flows.iaf((8,))]),
    "conditional_iaf": flows.iaf(hidden=(8,), context_size=3),
    "conditional_spline_coupling": flows.spline_coupling(bins=4, hidden=(8,), context_size=3),
    # the chain's context reaches its conditional layers only
    "conditional_chain": flows.Chain(
        [flows.iaf((8,), context_size=3), flows.Reverse(), flows.maf((8,))]
    ),
}


def random_params(bijector, key, scale):
    """init's params plus N(0, scale²) noise on every leaf (init alone is near identity)."""
    k_init, k_noise = jax.random.split(key)
    params = bijector.init(k_init, DIM)
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(k_noise, max(len(leaves), 1))
    noisy = [v + scale * jax.random.normal(k, jnp.shape(v)) for k, v in zip(keys, leaves)]
    return jax.tree.unflatten(tree, noisy)


def _context(bijector, key):
    size = bijector.context_size
    return jax.random.normal(key, (size,)) if size else None


@pytest.fixture(scope="module")
def checks():
    """One compiled check per bijector (shapes are fixed, so hypothesis' examples reuse it)."""

    def make(bijector):
        @jax.jit
        def check(key):
            kp, kx, kc = jax.random.split(key, 3)
            params = random_params(bijector, kp, 0.5)
            x = 1.5 * jax.random.normal(kx, (DIM,))
            context = _context(bijector, kc)
            y, log_det = bijector.forward_and_log_det(params, x, context)
            back, inv_log_det = bijector.inverse_and_log_det(params, y, context)
            jac = jax.jacfwd(lambda v: bijector.forward(params, v, context))(x)
            sign, ref = jnp.linalg.slogdet(jac)
            return jnp.max(jnp.abs(back - x)), log_det, inv_log_det, sign, ref

        return check

    with jax.enable_x64(True):
        yield {name: make(b) for name, b in BIJECTORS.items()}


@pytest.mark.parametrize("name", list(BIJECTORS))
def test_inverse_and_log_det(name, checks):
    @FEW
    @given(seed=SEEDS)
    def prop(seed):
        with jax.enable_x64(True):
            err, log_det, inv_log_det, sign, ref = checks[name](jax.random.key(seed))
        assert float(err) < 1e-6
        assert float(sign) != 0
        np.testing.assert_allclose(float(log_det), float(ref), atol=1e-6, rtol=1e-6)
        np.testing.assert_allclose(float(inv_log_det), -float(ref), atol=1e-6, rtol=1e-6)

    prop()


FAST = [name for name, b in BIJECTORS.items() if b.has_fast_score] + ["fast_chain"]
FAST_CHAIN = flows.Chain(
    [flows.Affine(), flows.Planar(), flows.Radial(), flows.Permutation([2, 0, 3, 1]),
     flows.real_nvp(hidden=(8,)), flows.Reverse(), flows.spline_coupling(bins=4, hidden=(8,))]
)  # fmt: skip


@pytest.fixture(scope="module")
def scores():
    """Fast path gradient (layer by layer) against J⁻ᵀ (score - ∇ log|det J|) with the
    Jacobian built by jax.jacfwd and a solve, for a random incoming score."""

    def make(bijector):
        @jax.jit
        def check(key):
            kp, kx, ks, kc = jax.random.split(key, 4)
            params = random_params(bijector, kp, 0.5)
            x, score = 1.5 * jax.random.normal(kx, (DIM,)), jax.random.normal(ks, (DIM,))
            context = _context(bijector, kc)
            y, fast = bijector.forward_and_score(params, x, score, context)
            jac = jax.jacfwd(lambda v: bijector.forward(params, v, context))(x)
            log_det = jax.grad(lambda v: bijector.forward_and_log_det(params, v, context)[1])
            ref = jnp.linalg.solve(jac.T, score - log_det(x))
            return jnp.max(jnp.abs(y - bijector.forward(params, x, context))), fast, ref

        return check

    with jax.enable_x64(True):
        yield {n: make(FAST_CHAIN if n == "fast_chain" else BIJECTORS[n]) for n in FAST}


@pytest.mark.parametrize("name", FAST)
def test_fast_path_gradient_matches_the_jacobian(name, scores):
    @FEW
    @given(seed=SEEDS)
    def prop(seed):
        with jax.enable_x64(True):
            err, fast, ref = scores[name](jax.random.key(seed))
        assert float(err) < 1e-12  # the same forward map (up to rounding)
        np.testing.assert_allclose(np.asarray(fast), np.asarray(ref), atol=1e-6, rtol=1e-6)

    prop()


def test_autoregressive_layers_have_no_fast_path_gradient():
    assert not BIJECTORS["iaf"].has_fast_score and not BIJECTORS["chain"].has_fast_score
    with pytest.raises(OptionError, match="no fast path gradient"):
        BIJECTORS["iaf"].forward_and_score((), jnp.zeros(DIM), jnp.zeros(DIM))


@pytest.fixture(scope="module")
def any_raw():
    """Planar and radial at raw parameters of any size (noise scale 10) and far-out x."""

    def make(bijector):
        @jax.jit
        def check(key):
            kp, kx = jax.random.split(key)
            params = random_params(bijector, kp, 10.0)
            x = 5.0 * jax.random.normal(kx, (DIM,))
            y, log_det = bijector.forward_and_log_det(params, x)
            back = bijector.inverse(params, y)
            det = jnp.linalg.det(jax.jacfwd(lambda v: bijector.forward(params, v))(x))
            if isinstance(bijector, flows.Planar):
                margin = 1 + planar_u_hat(params["w"], params["u"])[1]
            else:
                alpha, beta = radial_alpha_beta(params)
                margin = beta + alpha
            return margin, det, log_det, jnp.max(jnp.abs(back - x)) / (1 + jnp.max(jnp.abs(x)))

        return check

    with jax.enable_x64(True):
        yield {"planar": make(flows.Planar()), "radial": make(flows.Radial())}


@pytest.mark.parametrize("name", ["planar", "radial"])
def test_planar_radial_invertible_for_any_raw_params(name, any_raw):
    @settings(max_examples=25, deadline=None, derandomize=True)
    @given(seed=SEEDS)
    def prop(seed):
        with jax.enable_x64(True):
            margin, det, log_det, err = any_raw[name](jax.random.key(seed))
        assert float(margin) > 0  # w·û > -1 (planar), β > -α (radial)
        assert float(det) > 0 and np.isfinite(float(log_det))
        assert float(err) < 1e-6  # the inverse finds x back

    prop()


def test_autoregressive_jacobian_is_triangular():
    for b in [flows.iaf((8,)), flows.maf((8,)), flows.spline_autoregressive(4, hidden=(8,))]:
        params = random_params(b, jax.random.key(0), 0.5)
        jac = jax.jacfwd(lambda v, b=b, p=params: b.forward(p, v))(jnp.linspace(-1, 1, DIM))
        assert np.allclose(np.triu(np.asarray(jac), 1), 0)
        assert np.abs(np.tril(np.asarray(jac), -1)).max() > 1e-3  # not merely diagonal


def test_conditional_layers_read_the_context():
    for b in [flows.iaf((8,), context_size=3), flows.real_nvp((8,), context_size=3)]:
        params = random_params(b, jax.random.key(1), 0.5)
        x = jnp.linspace(-1, 1, DIM)
        y1 = b.forward(params, x, jnp.zeros(3))
        y2 = b.forward(params, x, jnp.ones(3))
        assert np.abs(np.asarray(y1 - y2)).max() > 1e-3
        with pytest.raises(OptionError, match="context vector of size 3, got none"):
            b.forward(params, x)


def test_refused_configurations_name_the_sizes():
    with pytest.raises(OptionError, match=r"not a permutation of 0..2 \(size 3\)"):
        flows.Permutation([0, 0, 2])
    with pytest.raises(OptionError, match="split=0 on events of size 1"):
        flows.real_nvp().init(jax.random.key(0), 1)
    with pytest.raises(OptionError, match="split=5 on events of size 3"):
        flows.real_nvp(split=5).init(jax.random.key(0), 3)
    with pytest.raises(OptionError, match="works on events of size 3, got size 4"):
        flows.Permutation([2, 1, 0]).init(jax.random.key(0), 4)
    with pytest.raises(OptionError, match="different event sizes"):
        flows.Chain([flows.Permutation([1, 0]), flows.Permutation([2, 1, 0])])
    with pytest.raises(OptionError, match=r"contexts of different sizes \[2, 3\]"):
        flows.Chain([flows.iaf((8,), context_size=3), flows.maf((8,), context_size=2)])
    with pytest.raises(OptionError, match="direction"):
        flows.Autoregressive(direction="sideways")


@pytest.mark.parametrize("name", list(BIJECTORS))
def test_a_batch_is_refused_with_the_vmap_advice(name):
    # bijectors work on one event; a batch used to give silently wrong results (radial: one
    # log-det for all rows; reverse, permutation: the batch axis reordered) or TypeErrors
    bijector = BIJECTORS[name]
    # params as shapes only: the check is on static shapes, before any computation
    params = jax.eval_shape(lambda key: bijector.init(key, DIM), jax.random.key(0))
    batch, context = jnp.zeros((2, DIM)), _context(bijector, jax.random.key(1))
    calls = [bijector.forward, bijector.forward_and_log_det, bijector.log_det_gradient]
    calls += [bijector.inverse, bijector.inverse_log_det_jacobian] if bijector.has_inverse else []
    for call in calls:
        with pytest.raises(OptionError, match=r"\(4,\), got shape \(2, 4\); apply it to a batch"):
            call(params, batch, context)
    if bijector.has_fast_score:
        with pytest.raises(OptionError, match=r"\(4,\), got shape \(2, 4\); apply it to a batch"):
            bijector.forward_and_score(params, batch, batch, context)
        with pytest.raises(OptionError, match=r"score has shape \(2, 4\), but x has shape \(4,\)"):
            bijector.forward_and_score(params, jnp.zeros(DIM), batch, context)


def test_one_event_of_the_wrong_size_or_a_scalar_is_refused():
    wrong_size = r"Permutation: expects one event of shape \(2,\), got shape \(3,\); it works"
    with pytest.raises(OptionError, match=wrong_size):
        flows.Permutation([1, 0]).forward((), jnp.ones(3))
    scalar = r"Reverse: expects one event of shape \(d,\), got shape \(\); give x as a vector"
    with pytest.raises(OptionError, match=scalar):
        flows.Reverse().forward((), jnp.ones(()))
    batch = jnp.arange(6.0).reshape(2, 3)  # the advice works
    reversed_rows = jax.vmap(flows.Reverse().forward, (None, 0))((), batch)
    np.testing.assert_array_equal(reversed_rows, batch[:, ::-1])


def test_spline_bound_takes_numpy_and_jax_scalars():
    for bound in [np.float32(2.0), jnp.asarray(2.0), np.int64(2), 2]:
        transformer = flows.SplineTransformer(bins=4, bound=bound)
        assert transformer.bound == 2.0 and isinstance(transformer.bound, float)
        hash(transformer)  # a static argument of compiled code
    for bound in [True, 0.0, -1, np.inf, np.nan, jnp.ones(1), "2", None]:
        with pytest.raises(OptionError, match="bound=.* must be a positive finite number"):
            flows.SplineTransformer(bound=bound)
    with pytest.raises(OptionError, match="bins=1000 is too many"):
        flows.SplineTransformer(bins=1000)
