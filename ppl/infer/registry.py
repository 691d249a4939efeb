"""Method registry: names in `infer(method=...)` -> method classes.

Later families register themselves with `@register("name")`; `infer()` never changes.
"""

from ppl.core.checks import did_you_mean
from ppl.errors import OptionError

_METHODS = {}


def register(name):
    """Class decorator: make `infer(method=name)` build `cls()`."""

    def deco(cls):
        _METHODS[name] = cls
        cls.name = name
        return cls

    return deco


def method_names():
    """The method names `ppl.infer(method=name)` accepts in this installation, sorted
    (each builds its method with default options).

    >>> import ppl
    >>> "nuts" in ppl.method_names()
    True
    """
    return sorted(_METHODS)


def discrete_method_names():
    """Registered methods that can sample discrete latent sites."""
    return sorted(n for n, cls in _METHODS.items() if getattr(cls, "handles_discrete", False))


def resolve(method):
    """A method object from a registered name, or any method object (a `Method`) as is."""
    from ppl.infer.method import Method

    if isinstance(method, str):
        if method not in _METHODS:
            raise OptionError(
                f"unknown method {method!r}{did_you_mean(method, _METHODS)}; "
                f"valid methods are {', '.join(method_names())}"
            )
        return _METHODS[method]()
    if isinstance(method, Method):
        return method
    if isinstance(method, type) and issubclass(method, Method):
        raise OptionError(f"pass an instance, e.g. method={method.__name__}(), not the class")
    raise OptionError(
        f"method must be a name ({', '.join(method_names())}) or a method object such as "
        f"ppl.mcmc.NUTS(...), got {type(method).__name__}"
    )
