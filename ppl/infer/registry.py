"""Method registry: names in `infer(method=...)` -> method classes.

Later families register themselves with `@register("name")`; `infer()` never changes.
"""

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
    return sorted(_METHODS)


def resolve(method):
    """A method object from a registered name or an instance of a registered class."""
    if isinstance(method, str):
        if method not in _METHODS:
            raise OptionError(
                f"unknown method {method!r}; valid methods are {', '.join(method_names())}"
            )
        return _METHODS[method]()
    if isinstance(method, tuple(_METHODS.values())):
        return method
    if isinstance(method, type) and method in _METHODS.values():
        raise OptionError(f"pass an instance, e.g. method={method.__name__}(), not the class")
    raise OptionError(
        f"method must be a name ({', '.join(method_names())}) or a method object such as "
        f"ppl.mcmc.NUTS(...), got {type(method).__name__}"
    )
