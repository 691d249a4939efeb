"""Flow guides (ppl.flows.FlowGuide and the ready ones in ppl.vi.guides) and the path
gradient of the ELBO, against exact answers.

- A flow guide's density integrates to 1 on a 2-D grid (midpoint rule on [-15, 15]²,
  measured error 2e-7 for this smooth density; tolerance 1e-3), and the log q the guide
  program reports with its draws equals the density computed through the flow's inverse.
- On U2 of Rezende & Mohamed (log Z by quadrature) the planar guide's ELBO approaches
  log Z as K grows: the gap shrinks from K=2 to K=8 by far more than the Monte Carlo
  error of the ELBO estimates (4096 draws each: standard error < 0.02) and is >= 0 up
  to that error (the ELBO is a lower bound).
- Path gradient (sticking the landing): on a Gaussian target that the guide family
  contains, at the optimum every single-draw gradient is 0 (the standard reparameterised
  gradient's variance is not); near the optimum its variance is lower; away from it the
  two estimators have the same mean (both unbiased), within 5 standard errors.
- Bad input: a flow that does not fit the model's latent size, a coupling flow on a
  1-D model, a conditional flow without a context: errors naming the sizes.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import ppl
import ppl.vi as vi
from ppl import dist, flows
from ppl.errors import ModelError, OptionError
from ppl.flows import energies
from ppl.vi.guides import NeuralSpline, Normal, Planar, bind_guide

MU, SIGMA = jnp.array([1.0, -2.0]), jnp.array([0.5, 2.0])


@ppl.model
def gaussian():
    ppl.sample("z", dist.Normal(MU, SIGMA).to_event(1))


def energy_model(energy):
    """p(z) ∝ exp(-U(z)) on R² (a N(0, I) prior whose density the factor cancels)."""

    @ppl.model
    def target():
        z = ppl.sample("z", dist.Normal(0.0, 1.0).expand([2]).to_event(1))
        ppl.factor("energy", -energy(z) - dist.Normal(0.0, 1.0).log_prob(z).sum())

    return target()


def perturbed(params, seed, scale):
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(seed), len(leaves))
    return jax.tree.unflatten(
        tree, [v + scale * jax.random.normal(k, jnp.shape(v)) for k, v in zip(keys, leaves)]
    )


ELBO1 = vi.ELBO()


def init(spec, model, objective=ELBO1):
    return vi.init_params(objective, jax.random.key(0), model, bind_guide(spec, model))


# ----- density ----------------------------------------------------------------------

MIXED = flows.FlowGuide(flows.Chain([flows.Planar(), flows.Radial(), flows.iaf((8,))]))


def test_density_integrates_to_one_and_matches_the_draws():
    model = gaussian()
    params = perturbed(init(MIXED, model), 1, 0.4)
    params["auto_scale"] = jnp.log(jnp.array([1.2, 0.8]))  # unconstrained: log scale
    axis = np.linspace(-15, 15, 601)  # the perturbed flow has tails past ±9
    points = np.stack(np.meshgrid(axis, axis, indexing="ij"), -1).reshape(-1, 2)
    log_q = jax.jit(MIXED.log_prob)(params, jnp.asarray(points))
    mass = float(np.sum(np.exp(np.asarray(log_q, np.float64))) * (axis[1] - axis[0]) ** 2)
    assert abs(mass - 1) < 1e-3

    @vi.objective
    def mismatch(model, guide):
        d = vi.draw(guide)
        return jnp.abs(d.log_q - MIXED.log_prob(params, d.values["_auto_u"]))

    guide = bind_guide(MIXED, model)
    worst = jax.jit(
        lambda k: jnp.max(
            jax.vmap(lambda k: mismatch().surrogate(k, params, model, guide, 0.0).value)(
                jax.random.split(k, 64)
            )
        )
    )(jax.random.key(2))
    assert float(worst) < 1e-3  # float32 round trip through the sequential inverse


# ----- ELBO -> log Z as K grows -----------------------------------------------------

STEPS = 2000


def fit(spec, model, steps=STEPS, seed=0):
    """Adam with cosine decay, 8 particles per step, one compiled scan; then the ELBO at
    the fit from 4096 draws."""
    objective = vi.ELBO(num_particles=8)
    guide = bind_guide(spec, model)
    params = vi.init_params(objective, jax.random.key(seed), model, guide)
    opt = optax.adam(optax.cosine_decay_schedule(1e-2, steps, alpha=0.05))

    @jax.jit
    def run(params, model, guide, key):
        def step(carry, k):
            p, s = carry
            grads = jax.grad(
                lambda p: -objective.surrogate(k, p, model, guide, jnp.zeros(())).surrogate
            )(p)
            updates, s = opt.update(grads, s, p)
            return (optax.apply_updates(p, updates), s), None

        keys = jax.random.split(key, steps)
        params = jax.lax.scan(step, (params, opt.init(params)), keys)[0][0]
        final = vi.ELBO(num_particles=4096).surrogate(
            jax.random.key(9), params, model, guide, jnp.zeros(())
        )
        return params, final.value

    params, elbo = run(params, model, guide, jax.random.key(seed + 1))
    return params, float(elbo)


def test_planar_elbo_approaches_log_z_as_k_grows():
    model = energy_model(energies.U2)
    log_z = energies.log_normalizer(energies.U2)
    gaps = {k: log_z - fit(Planar(k), model)[1] for k in (2, 8)}
    # measured: K=2 gap ~1.1 (one fold short of the sine), K=8 ~0.2
    assert gaps[2] > -0.05 and gaps[8] > -0.05  # lower bounds, up to MC error
    assert gaps[8] < gaps[2] - 0.4


# ----- path gradients ---------------------------------------------------------------

PLANAR1 = flows.FlowGuide(flows.Chain([flows.Planar()]))  # fast path gradient
IAF1 = flows.FlowGuide(flows.Chain([flows.iaf(hidden=(8,))]))  # the Jacobian form


def at_optimum(spec):
    """Params at which the guide IS the target N(MU, diag SIGMA²)."""
    params = jax.tree.map(jnp.zeros_like, init(spec, gaussian()))
    params["auto_loc"], params["auto_scale"] = MU, jnp.log(SIGMA)
    return params


def gradient_samples(spec, params, path_gradient, n=2000):
    """n single-draw ELBO gradient estimates, flattened: (n, num_params)."""
    model = gaussian()
    guide = bind_guide(spec, model)
    objective = vi.ELBO(path_gradient=path_gradient)

    @jax.jit
    def grads(params, key):
        def one(k):
            g = jax.grad(lambda p: objective.surrogate(k, p, model, guide, 0.0).surrogate)(params)
            return jnp.concatenate([jnp.ravel(v) for v in jax.tree.leaves(g)])

        return jax.vmap(one)(jax.random.split(key, n))

    return np.asarray(grads(params, jax.random.key(5)), np.float64)


@pytest.mark.parametrize("spec", [Normal(), PLANAR1, IAF1], ids=["normal", "planar", "iaf"])
def test_path_gradient_is_zero_at_the_optimum(spec):
    params = at_optimum(spec)
    standard = gradient_samples(spec, params, False)
    path = gradient_samples(spec, params, True)
    assert standard.var(0).sum() > 0.5  # e.g. d/dloc: (z - MU)/SIGMA² has variance 1/SIGMA²
    assert np.abs(path).max() < 1e-4  # float32 rounding of an exact 0


@pytest.mark.parametrize("spec", [Normal(), PLANAR1], ids=["normal", "planar"])
def test_path_gradient_variance_and_mean(spec):
    near = perturbed(at_optimum(spec), 3, 0.05)
    standard = gradient_samples(spec, near, False)
    path = gradient_samples(spec, near, True)
    assert path.var(0).sum() < 0.1 * standard.var(0).sum()
    far = perturbed(at_optimum(spec), 4, 0.5)
    standard, path = gradient_samples(spec, far, False), gradient_samples(spec, far, True)
    diff = standard - path  # same draws: the difference is the dropped score term
    se = diff.std(0) / np.sqrt(diff.shape[0])
    assert np.all(np.abs(diff.mean(0)) < 5 * se + 1e-6)


def test_fast_path_gradient_equals_the_jacobian_form():
    """A flow of layers with a fast path gradient (carried along the forward pass) gives
    the ∇_u log q of the Jacobian form, at random parameters."""
    from ppl.flows.guide import Pushforward, _score_by_jacobian

    flow = flows.Chain([flows.Affine(), flows.Planar(), flows.Radial(), flows.real_nvp((8,))])
    d = 4
    keys = jax.random.split(jax.random.key(0), 4)
    weights = jax.tree.map(
        lambda v: v + 0.3 * jax.random.normal(keys[0], jnp.shape(v)), flow.init(keys[1], d)
    )
    loc, scale = jnp.arange(d) / d, jnp.exp(0.2 * jnp.arange(d) - 0.3)
    eps = jax.random.normal(keys[2], (d,))
    draw = Pushforward(flow, weights, loc, scale, eps)
    fast = jax.grad(draw.path_log_prob)(draw.u)
    slow = _score_by_jacobian(flow, weights, loc, scale, eps)
    np.testing.assert_allclose(np.asarray(fast), np.asarray(slow), rtol=1e-4, atol=1e-4)


def test_path_gradient_option_is_checked():
    with pytest.raises(OptionError, match="path_gradient='yes' must be True or False"):
        init(Normal(), gaussian(), vi.ELBO(path_gradient="yes"))


# ----- bad input --------------------------------------------------------------------


def test_flow_that_does_not_fit_the_model_is_refused():
    spec = flows.FlowGuide(flows.Chain([flows.Permutation([2, 1, 0]), flows.Planar()]))
    with pytest.raises(ModelError, match=r"events of size 3.*has size 2 \(z \(2\)\)"):
        spec.bind(gaussian())


def test_non_invertible_configuration_is_refused():
    @ppl.model
    def scalar():
        ppl.sample("x", dist.Normal(0.0, 1.0))

    with pytest.raises(OptionError, match="split=0 on events of size 1"):
        vi.init_params(vi.ELBO(), jax.random.key(0), scalar(),
                       bind_guide(NeuralSpline(coupling=True), scalar()))  # fmt: skip
    with pytest.raises(OptionError, match="context of size 2"):
        flows.FlowGuide(flows.iaf(context_size=2))
    with pytest.raises(OptionError, match="must be a ppl.flows bijector"):
        flows.FlowGuide("planar")


@pytest.mark.parametrize("objective", [vi.RWS(), vi.WakeQ()])
def test_wake_sleep_refuses_flow_guides(objective):
    # their log q is known along their own draws only; at a held draw its gradient would
    # be taken at a held base draw, which shrinks the flow to a point mass
    with pytest.raises(OptionError, match=r"holds the guide's draws fixed .*\(ELBO, IWAE"):
        init(Planar(2), gaussian(), objective)


def test_flow_guide_options_are_checked_at_construction():
    # not first inside infer: NeuralSpline(bins=0) used to fail only when the flow was built
    for kwargs, message in [
        ({"bins": 0}, "NeuralSpline: bins=0 must be an integer >= 1"),
        ({"bins": 1000}, "NeuralSpline: bins=1000 is too many"),
        ({"bound": -1.0}, "NeuralSpline: bound=-1.0 must be a positive finite number"),
        ({"hidden": 8}, r"NeuralSpline: hidden=8 must be a tuple .* hidden=\(8,\)"),
        ({"coupling": "yes"}, "NeuralSpline: coupling='yes' must be True"),
    ]:
        with pytest.raises(OptionError, match=message):
            NeuralSpline(**kwargs)
    assert NeuralSpline(bound=np.float32(2.0)).bound == 2.0  # NumPy and JAX scalars are fine
