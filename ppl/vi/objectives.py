"""The standard objectives, each written as a program with the `ppl.vi` operations
(nothing here is special-cased: a user's own objective is built the same way).

Every one takes `num_particles` (K) and a `baseline` for score-function sites; options
are checked when the objective is made (e.g. `ELBO(num_particle=4)` is an OptionError).

Hierarchical objectives (HVI, IWHVI, DIWHVI) need a guide with an auxiliary variable:
the guide samples the site named by `aux` (default "psi") besides the model's latent
sites, so that q(z) = ∫ q(z, psi) dpsi has no closed form. `reverse` is a DSL program
r(psi | z) with its own `ppl.param`s, called as `reverse(z)` where `z` is the dict of the
guide draw's other values (name -> value); it samples the site `aux`:

>>> def reverse(z):
...     c = ppl.param("r_c", 0.0)
...     ppl.sample("psi", dist.Normal(c * z["z"], 1.0))
>>> objective = ppl.vi.IWHVI(reverse=reverse, num_inner=8)
"""

import math
import numbers

import jax
import jax.numpy as jnp

from ppl.errors import ModelError, OptionError
from ppl.vi.program import check_count, draw, logmeanexp, mean, objective, particles, score

__all__ = ["ELBO", "IWAE", "Renyi", "VIMCO", "RWS", "WakeP", "WakeQ", "HVI", "IWHVI", "DIWHVI"]

sg = jax.lax.stop_gradient


def _log_weight(model, guide, path_gradient=False):
    d = draw(guide, path_gradient=path_gradient)
    return score(model, d) - d.log_q


def _with_gradient_of(value, surrogate):
    """`value`, whose gradient is that of `surrogate` (for objectives whose gradient is
    not the gradient of their reported value, as in wake-sleep)."""
    return sg(value) + surrogate - sg(surrogate)


def _check_path_gradient(options):
    if not isinstance(options["path_gradient"], bool):
        raise OptionError(f"ELBO: path_gradient={options['path_gradient']!r} must be True or False")


@objective(bound=True, check=_check_path_gradient)
def ELBO(model, guide, num_particles=1, path_gradient=False):
    """Evidence lower bound E_q[log p(x, z) - log q(z)], averaged over K draws.

    path_gradient=True: the path-gradient (sticking-the-landing) estimator, log q of
    the reparameterised guide sites taken with the guide's parameters held fixed: the
    same expectation, and zero variance where q equals the posterior (see `draw`)."""
    one = lambda: _log_weight(model, guide, path_gradient)  # noqa: E731
    return mean(particles(one, num_particles))


@objective(bound=True)
def IWAE(model, guide, num_particles=5):
    """Importance-weighted bound E[log (1/K) Σ_k p(x, z_k) / q(z_k)] (Burda et al. 2016);
    with baseline="leave_one_out" its score-function sites get VIMCO's baselines."""
    return logmeanexp(particles(lambda: _log_weight(model, guide), num_particles))


def _two_or_more(options):
    if options["num_particles"] < 2:
        raise OptionError(
            f"VIMCO: num_particles={options['num_particles']} must be >= 2: each particle's "
            "baseline is the mean of the others'"
        )


@objective(bound=True, baseline="leave_one_out", check=_two_or_more)
def VIMCO(model, guide, num_particles=5):
    """The IWAE bound with VIMCO's leave-one-out baselines for score-function sites
    (Mnih & Rezende 2016): each particle's log weight replaced by the mean of the
    others'. Needs K >= 2."""
    return logmeanexp(particles(lambda: _log_weight(model, guide), num_particles))


def _check_alpha(options):
    alpha = options["alpha"]
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) or not math.isfinite(alpha):
        raise OptionError(f"Renyi: alpha={alpha!r} must be a finite number (alpha=0 is IWAE)")


@objective(bound=lambda options: options["alpha"] >= 0, check=_check_alpha)
def Renyi(model, guide, alpha=0.0, num_particles=2):
    """Variational Rényi bound L_α = 1/(1-α) log E_q[(p(x, z)/q(z))^(1-α)] (Li & Turner
    2016), estimated with K draws as 1/(1-α) log (1/K) Σ_k w_k^(1-α).

    α = 0 is IWAE, α -> 1 the ELBO (α = 1 is computed as the ELBO). For every draw the
    estimate is non-increasing in α (a power mean of the weights), and for α >= 0 its
    expectation is a lower bound on log p(x)."""
    log_w = particles(lambda: _log_weight(model, guide), num_particles)
    if alpha == 1:
        return mean(log_w)
    return logmeanexp((1 - alpha) * log_w) / (1 - alpha)


# ----- reweighted wake-sleep (Bornschein & Bengio 2015; Le et al. 2019) --------------


def _held_draws(model, guide, num_particles):
    """log p(x, z_k) and log q(z_k) at K guide draws held fixed for differentiation, and
    their self-normalised importance weights (constants)."""

    def one():
        d = draw(guide, gradient=False)
        return score(model, d), d.log_q

    log_p, log_q = particles(one, num_particles)
    return log_p, log_q, sg(jax.nn.softmax(log_p - log_q))


@objective(bound=True)
def RWS(model, guide, num_particles=5):
    """Reweighted wake-sleep: the wake-p gradient Σ_k w̄_k ∇ log p(x, z_k) for the model's
    `ppl.param`s and the wake-q gradient Σ_k w̄_k ∇ log q(z_k) for the guide's, with z_k ~ q
    held fixed and w̄ the self-normalised weights. The value is the IWAE estimate."""
    log_p, log_q, w = _held_draws(model, guide, num_particles)
    return _with_gradient_of(logmeanexp(log_p - log_q), jnp.sum(w * (log_p + log_q)))


@objective(bound=True)
def WakeP(model, guide, num_particles=5):
    """The wake-p half of reweighted wake-sleep: gradient Σ_k w̄_k ∇ log p(x, z_k) (a
    self-normalised estimate of ∇ log p(x)), for the model's params only. The value is
    the IWAE estimate."""
    log_p, log_q, w = _held_draws(model, guide, num_particles)
    return _with_gradient_of(logmeanexp(log_p - log_q), jnp.sum(w * log_p))


@objective
def WakeQ(model, guide, num_particles=5):
    """The wake-q half of reweighted wake-sleep: gradient Σ_k w̄_k ∇ log q(z_k), a
    self-normalised estimate of -∇ KL(p(z | x) || q(z)), for the guide's params only. The
    value estimates -KL(p(z | x) || q) as Σ_k w̄_k (log q(z_k) - log p(x, z_k) + log Ẑ)."""
    log_p, log_q, w = _held_draws(model, guide, num_particles)
    log_z = logmeanexp(log_p - log_q)
    return _with_gradient_of(jnp.sum(w * (log_q - log_p + log_z)), jnp.sum(w * log_q))


# ----- hierarchical VI with an auxiliary guide variable ------------------------------


def _hierarchical_check(name):
    """The options check of hierarchical objective `name`."""

    def check(options):
        aux, reverse = options["aux"], options["reverse"]
        if not isinstance(aux, str):
            raise OptionError(f"{name}: aux={aux!r} must be the name of the guide's auxiliary site")
        if not callable(reverse):
            raise OptionError(
                f"{name}: give reverse=<a DSL function reverse(z) that samples '{aux}'>, the "
                f"reverse model r({aux} | z) of the guide's auxiliary variable (got {reverse!r})"
            )
        if "num_inner" in options:
            check_count(name, "num_inner", options["num_inner"], 0)

    return check


def _aux(options):
    return (options["aux"],)


def _split(name, d, aux):
    if aux not in d.values:
        raise ModelError(
            f"{name}: the guide has no site '{aux}' (it has {sorted(d.values)}); a "
            f"hierarchical guide samples an auxiliary site named by aux='{aux}'"
        )
    z = {k: v for k, v in d.values.items() if k != aux}
    return z, {aux: d.values[aux]}


def _log_q_upper(guide, reverse, aux, d, z, psi, num_inner):
    """Sobolev & Vetrov's (2019) upper bound on log q(z): log 1/(K+1) Σ_{k=0..K}
    q(z, psi_k) / r(psi_k | z), psi_0 the guide's own draw and psi_1..K ~ r(· | z)
    (nested particles). K = 0 gives HVI's log q(z, psi) - log r(psi | z)."""
    first = d.log_q - score(reverse, psi, z)
    if num_inner == 0:
        return first

    def inner():
        r = draw(reverse, z)
        return score(guide, {**z, aux: r.values[aux]}) - r.log_q

    terms = jnp.concatenate([first[None], particles(inner, num_inner)])
    return logmeanexp(terms)


def _hierarchical_log_weight(name, model, guide, reverse, aux, num_inner):
    d = draw(guide)
    z, psi = _split(name, d, aux)
    return score(model, z) - _log_q_upper(guide, reverse, aux, d, z, psi, num_inner)


@objective(bound=True, check=_hierarchical_check("HVI"), auxiliary=_aux)
def HVI(model, guide, reverse=None, aux="psi", num_particles=1):
    """Hierarchical VI bound E_q[log p(x, z) + log r(psi | z) - log q(z, psi)] (Ranganath
    et al. 2016): the guide samples (psi, z); `reverse(z)` is r(psi | z) (module doc)."""
    one = lambda: _hierarchical_log_weight("HVI", model, guide, reverse, aux, 0)  # noqa: E731
    return mean(particles(one, num_particles))


@objective(bound=True, check=_hierarchical_check("IWHVI"), auxiliary=_aux)
def IWHVI(model, guide, reverse=None, aux="psi", num_particles=1, num_inner=5):
    """Importance-weighted hierarchical VI (Sobolev & Vetrov 2019): HVI with log q(z)
    replaced by log 1/(K+1) Σ_{k=0..K} q(z, psi_k) / r(psi_k | z), psi_0 from the guide,
    psi_1..K ~ r(psi | z) (K = num_inner). Tighter than HVI, increasingly with K."""

    def one():
        return _hierarchical_log_weight("IWHVI", model, guide, reverse, aux, num_inner)

    return mean(particles(one, num_particles))


@objective(bound=True, check=_hierarchical_check("DIWHVI"), auxiliary=_aux)
def DIWHVI(model, guide, reverse=None, aux="psi", num_particles=5, num_inner=5):
    """Doubly importance-weighted hierarchical VI (Sobolev & Vetrov 2019): the IWAE bound
    over K outer draws z_m with IWHVI's estimate of log q(z_m):
    E log (1/M) Σ_m p(x, z_m) / q̂(z_m)."""

    def one():
        return _hierarchical_log_weight("DIWHVI", model, guide, reverse, aux, num_inner)

    return logmeanexp(particles(one, num_particles))
