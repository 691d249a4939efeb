"""`@ppl.model`: a model function that binds its arguments before anything runs."""

import functools
import inspect
import numbers

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
from numpyro.distributions import (
    ImproperUniform,
    Unit,
)
from numpyro.distributions.transforms import biject_to
from numpyro.infer import Predictive
from numpyro.primitives import _PYRO_STACK, Messenger

from ppl.core import handlers
from ppl.core.checks import SkipCheckedSupport, traced_parameters_unchecked, unwrapped
from ppl.errors import ModelError, OptionError

__all__ = ["model", "Model", "BoundModel"]


def _running_under_handlers():
    return len(_PYRO_STACK) > 0


def _as_device_arrays(tree):
    """NumPy data becomes JAX arrays once, so models can index it with traced values
    (`device_put`, not `jnp.asarray`: that compiles a conversion program for float64)."""
    return jax.tree.map(lambda a: jax.device_put(a) if isinstance(a, np.ndarray) else a, tree)


def int_key(seed):
    """`jax.random.key(seed)` for an int seed. Under the default threefry implementation a
    seed in [0, 2**31) is the key (0, seed), wrapped here without compiling JAX's seeding
    program (~25 ms on the first call of a process)."""
    default = getattr(jax.config, "jax_default_prng_impl", None)
    if 0 <= seed < 2**31 and default == "threefry2x32":
        return jax.random.wrap_key_data(np.array([0, seed], np.uint32), impl="threefry2x32")
    return jax.random.key(seed)


def as_key(seed):
    """An int, a jax.random.key, or a legacy uint32 jax.random.PRNGKey -> a typed key."""
    if isinstance(seed, jax.Array) and jax.dtypes.issubdtype(seed.dtype, jax.dtypes.prng_key):
        if seed.shape == ():
            return seed
    elif isinstance(seed, (jax.Array, np.ndarray)):
        if seed.dtype == np.uint32 and seed.shape == (2,):
            return jax.random.wrap_key_data(jnp.asarray(seed))
        if seed.shape == () and jnp.issubdtype(seed.dtype, jnp.integer):
            return int_key(int(seed))
    elif isinstance(seed, numbers.Integral) and not isinstance(seed, bool):
        return int_key(int(seed))
    raise OptionError(f"seed must be an integer or a jax.random.key (one key), got {seed!r}")


def is_improper(fn):
    """Whether `fn` is (a wrapped) ImproperUniform: a flat prior with no draws."""
    return isinstance(unwrapped(fn), ImproperUniform)


def improper_values(radius):
    """A `substitute_fn` giving each latent ImproperUniform site a value drawn uniformly in
    (-radius, radius) on the unconstrained scale (such sites cannot be sampled).

    Use it outside `seed`, e.g. `substitute(seed(m, key), substitute_fn=improper_values(2.0))`.
    """

    def substitute_fn(site):
        if site["type"] != "sample" or site["is_observed"] or not is_improper(site["fn"]):
            return None
        fn = site["fn"]
        transform = biject_to(fn.support)
        shape = transform.inverse_shape(fn.shape(site["kwargs"].get("sample_shape", ())))
        key = site["kwargs"].get("rng_key")
        if radius == 0 or key is None:
            return transform(jnp.zeros(shape))
        return transform(jax.random.uniform(key, shape, minval=-radius, maxval=radius))

    return substitute_fn


#: The mark `BoundModel.trace` leaves in a latent site's `infer` when a handler inside the
#: model (handlers.substitute) had already set its value.
FIXED_BY_HANDLER = "ppl_fixed_by_handler"


class _checked_sites(Messenger):
    """Refuse a second sample/deterministic site of the same name, or one named like a
    plate, naming the model; mark latent sites whose value a handler set."""

    def __init__(self, fn, model_name):
        self.model_name = model_name
        self.seen, self.plates = set(), set()
        super().__init__(fn)

    def process_message(self, msg):
        if msg["type"] == "plate":
            self.plates.add(msg["name"])
        if msg["type"] not in ("sample", "deterministic", "plate"):
            return
        if {msg["name"]} & (self.seen if msg["type"] == "plate" else self.plates):
            raise ModelError(
                f"{self.model_name}: a site and a plate are both named '{msg['name']}'; "
                "give the plate another name (e.g. 'data')"
            )
        if msg["type"] == "plate":
            return
        if (
            msg["type"] == "sample"
            and not msg["is_observed"]
            and msg["value"] is not None
            and not is_improper(msg["fn"])
            and not msg.get("_control_flow_done")  # (a scan's sites come with their values)
        ):  # a latent value set by a handler inside (handlers.substitute): inference ignores it
            msg["infer"] = {**(msg.get("infer") or {}), FIXED_BY_HANDLER: True}
        if msg["name"] in self.seen:
            raise ModelError(
                f"{self.model_name}: two sites are named '{msg['name']}'; give every "
                "ppl.sample/ppl.deterministic a distinct name (in a loop, e.g. f'x_{i}', "
                "or use ppl.plate / ppl.scan)"
            )
        self.seen.add(msg["name"])


class Model:
    """A model function wrapped by `@ppl.model`.

    Calling it binds arguments and returns a `BoundModel`; nothing runs until
    inference. Called inside another running model, it runs as a submodel.
    """

    def __init__(self, fn):
        if isinstance(fn, (Model, BoundModel)):
            fn = fn.fn
        if not callable(fn):
            raise ModelError(f"ppl.model expects a function, got {type(fn).__name__}")
        # updated=(): copying fn.__dict__ would clobber self.fn when fn is itself a
        # wrapper with an `fn` attribute (a NumPyro handler such as condition(f, data)).
        functools.update_wrapper(self, fn, updated=())
        self.fn = fn

    def __call__(self, *args, **kwargs):
        if _running_under_handlers():
            return self.fn(*args, **kwargs)
        return BoundModel(self.fn, args, kwargs)

    def __repr__(self):
        return f"ppl.model({getattr(self.fn, '__name__', self.fn)!r})"


def model(fn):
    """Decorate a model function (ppl or plain NumPyro primitives alike).

    >>> import jax.numpy as jnp
    >>> import ppl
    >>> from ppl import dist
    >>> @ppl.model
    ... def normal_mean(y=None):
    ...     mu = ppl.sample("mu", dist.Normal(0, 10))
    ...     with ppl.plate("data", 3):
    ...         ppl.sample("y", dist.Normal(mu, 1), obs=y)
    >>> m = normal_mean(y=jnp.array([0.1, 0.4, -0.2]))   # a BoundModel
    """
    return Model(fn)


class _Static:
    """A non-array argument, compared by value where it can be hashed, else by identity."""

    def __init__(self, value):
        self.value = value
        try:
            self._hash = hash(value)
        except TypeError:
            self._hash = id(value)

    def __hash__(self):
        return self._hash

    def __eq__(self, other):
        if not isinstance(other, _Static) or type(other.value) is not type(self.value):
            return False
        try:
            return bool(self.value is other.value or self.value == other.value)
        except Exception:
            return False


@jax.tree_util.register_pytree_node_class
class BoundModel:
    """A model with its arguments bound: what `ppl.infer()` and handlers consume.

    A BoundModel is also a zero-argument callable that runs the model, so every
    NumPyro handler applies to it: `handlers.trace(handlers.seed(m, 0)).get_trace()`.
    It is a pytree whose leaves are its array arguments, so compiled inference
    takes the data as an input and is reused for new data of the same shapes. A model
    that computes Python values from its data (`int(group.max())`, `np.unique(g)`,
    `if y.mean() > 0`) cannot run on traced data: `log_density()` finds that and calls
    `use_static_data()`, after which the model sees its data as NumPy arrays, constants
    of the compiled programs (as in NumPyro's MCMC), compiled again for other data.
    """

    def __init__(self, fn, args=(), kwargs=None):
        self.fn = fn
        self.args = _as_device_arrays(tuple(args))
        self.kwargs = _as_device_arrays(dict(kwargs or {}))
        #: Observed sites whose bound data was found inside its support (set by
        #: `log_density()`): scored without NumPyro's per-evaluation support check.
        self.checked_data = frozenset()
        self.static_data = False

    def tree_flatten(self):
        leaves, treedef = jax.tree.flatten((self.args, self.kwargs))
        is_array = tuple(
            isinstance(x, (jax.Array, np.ndarray)) and not self.static_data for x in leaves
        )
        arrays = [x for x, a in zip(leaves, is_array) if a]
        static = tuple(None if a else _Static(x) for x, a in zip(leaves, is_array))
        return arrays, (self.fn, treedef, static, self.checked_data, self.static_data)

    @classmethod
    def tree_unflatten(cls, aux, arrays):
        fn, treedef, static, checked, static_data = aux
        arrays = iter(arrays)
        leaves = [next(arrays) if s is None else s.value for s in static]
        obj = object.__new__(cls)
        obj.fn, obj.checked_data, obj.static_data = fn, checked, static_data
        obj.args, obj.kwargs = jax.tree.unflatten(treedef, leaves)
        return obj

    @property
    def name(self):
        return getattr(self.fn, "__name__", type(self.fn).__name__)

    def use_static_data(self):
        """From now on the model sees its data as NumPy arrays, which compiled programs
        close over as constants (see the class docstring)."""
        numpy = lambda a: np.asarray(a) if isinstance(a, jax.Array) else a  # noqa: E731
        self.args, self.kwargs = jax.tree.map(numpy, (self.args, self.kwargs))
        self.static_data = True

    def __call__(self):
        fn = self.fn
        if self.checked_data:
            fn = SkipCheckedSupport(fn, self.checked_data)
        with traced_parameters_unchecked():
            return fn(*self.args, **self.kwargs)

    def __repr__(self):
        return f"BoundModel({self.name})"

    def trace(self, seed=0):
        """Run the model once with random draws; return NumPyro's trace (name -> site).

        Latent ImproperUniform sites (no draws exist) get the value at 0 on the
        unconstrained scale.
        """
        seeded = handlers.seed(self, rng_seed=as_key(seed))
        model = handlers.substitute(seeded, substitute_fn=improper_values(0.0))
        return handlers.trace(_checked_sites(model, self.name)).get_trace()

    def prior(self, num_samples=1, seed=0):
        """Draws of every site from the prior, each with a leading axis of `num_samples`.

        Sample and deterministic sites are returned (factors and params are not).
        Observed sites return their data; bind them to None for prior-predictive draws.
        """
        if isinstance(num_samples, bool) or not isinstance(num_samples, numbers.Integral):
            raise OptionError(f"prior: num_samples must be an integer >= 1, got {num_samples!r}")
        if num_samples < 1:
            raise OptionError(f"prior: num_samples must be an integer >= 1, got {num_samples}")
        trace = self.trace(seed)
        improper = [n for n, s in trace.items() if s["type"] == "sample" and is_improper(s["fn"])]
        if improper:
            raise ModelError(
                f"{self.name}: site(s) {improper} have an improper prior (ImproperUniform), "
                "which has no draws; give them a proper prior to draw from it"
            )
        draws = Predictive(self, num_samples=int(num_samples), return_sites=value_sites(trace))(
            as_key(seed)
        )
        return dict(draws)

    def condition(self, data):
        """A new BoundModel with the sample sites in `data` (name -> value) observed."""
        trace = self.trace()
        samples = sorted(n for n, s in trace.items() if s["type"] == "sample")
        determ = sorted(set(data) & {n for n, s in trace.items() if s["type"] == "deterministic"})
        if determ:
            raise ModelError(
                f"{self.name}: cannot condition on deterministic site(s) {determ}: they are "
                "functions of other sites; condition on the sample sites they depend on"
            )
        unknown = sorted(set(data) - set(samples))
        if unknown:
            raise ModelError(
                f"{self.name}: cannot condition on {unknown}: no such sample sites; "
                f"sample sites are {samples}"
            )
        return BoundModel(numpyro.handlers.condition(self.fn, data=data), self.args, self.kwargs)

    def log_density(self):
        """The model's `LogDensity` over its latent sites (flat, unconstrained). Built
        once per bound model whose arguments are all immutable (device arrays, numbers,
        strings): reading the model's structure traces it, a few ms that repeated
        `infer` calls then skip."""
        from ppl.core.logdensity import LogDensity

        cached = self.__dict__.get("_log_density")
        if cached is not None:
            return cached
        ld = LogDensity(self)
        leaves = jax.tree.leaves((self.args, self.kwargs))
        if all(isinstance(x, (jax.Array, numbers.Number, str)) for x in leaves):
            self._log_density = ld
        return ld


def abstract_call(fn, *args):
    """`fn(*args)` run abstractly (`jax.eval_shape`: traced, nothing compiled or
    computed), returning its Python result: how a model's structure is read. Arrays
    closed over stay concrete; computed ones come back as abstract values (shapes)."""
    out = {}

    def run(*a):
        out["result"] = fn(*a)
        return 0

    jax.eval_shape(run, *args)
    return out["result"]


def value_sites(trace):
    """Names of the sites that carry values: sample sites (not factors) and deterministic ones."""
    return [
        n
        for n, s in trace.items()
        if (s["type"] == "sample" and not isinstance(s["fn"], Unit)) or s["type"] == "deterministic"
    ]


def _example_call(fn):
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return "model(x, y=y)"
    args = [p.name if p.default is p.empty else f"{p.name}=..." for p in params]
    return f"{getattr(fn, '__name__', 'model')}({', '.join(args)})"


def _named(fn, name):
    def run():
        return fn()

    run.__name__ = name
    return run


def _innermost(handler):
    fn = handler
    while isinstance(fn, Messenger):
        fn = fn.fn
    return fn


def as_bound_model(obj):
    """Accept a BoundModel; explain the fix for anything else."""
    if isinstance(obj, BoundModel):
        return obj
    if isinstance(obj, Messenger) and isinstance(_innermost(obj), BoundModel):
        # a NumPyro handler around a bound model, e.g. handlers.condition(m(y), data=...)
        return BoundModel(_named(obj, _innermost(obj).name))  # (its data: constants)
    if isinstance(obj, Model):
        raise ModelError(
            f"{obj!r} is not bound to data yet: call it with its arguments first, "
            f"e.g. ppl.infer({_example_call(obj.fn)}, ...)"
        )
    if callable(obj):
        raise ModelError(
            f"{getattr(obj, '__name__', obj)!r} is a plain function: wrap and bind it, "
            f"e.g. ppl.infer(ppl.model({getattr(obj, '__name__', 'fn')})"
            f"{_example_call(obj)[len(getattr(obj, '__name__', 'model')) :]}, ...)"
        )
    raise ModelError(f"expected a bound model, got {type(obj).__name__}")
