"""The pure-function boundary of the module zoo.

Networks are written as Flax NNX modules, but the library never calls them statefully: each one is
split once into a static ``graphdef`` and a ``params`` pytree, and applied through a pure
``apply(params, *args)`` (see ../shared/reference/jax-stack.md, section 3). Pure functions run
inside ``jax.jit``, sharded training steps and diffrax solvers without NNX transforms.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
from flax import nnx


@dataclasses.dataclass(frozen=True)
class PureNet:
    """A network as a pure function: ``apply(params, *args, **kwargs)``.

    The dataclass is frozen and hashable (the graphdef is), so it can be closed over by jitted code
    or passed as a static argument.
    """

    graphdef: Any

    def apply(self, params: Any, *args: Any, **kwargs: Any) -> Any:
        """Rebuilds the module from ``params`` and calls it."""
        return nnx.merge(self.graphdef, params)(*args, **kwargs)

    def __call__(self, params: Any, *args: Any, **kwargs: Any) -> Any:
        return self.apply(params, *args, **kwargs)


class ShapeOnlyRngs:
    """Stands in for ``nnx.Rngs`` when a network is built only for its shapes, inside
    ``nnx.eval_shape``: every stream (``rngs.params()``, ``rngs()``, ...) returns one fixed key.

    Why: each draw from ``nnx.Rngs`` increments a traced counter, and that update reads
    ``.sharding`` of a tracer, on which JAX builds its error message by walking the whole trace
    so far (``DynamicJaxprTracer._origin_msg``). Abstract construction with ``nnx.Rngs`` is thus
    quadratic in the number of layers (17 s for CLD's 108M NCSN++; 1.5 s with this class).
    Never use it to initialise real parameters: layers of equal shape would get equal values.
    """

    def __init__(self, seed: int = 0):
        self._key = jax.random.key(seed)

    def __call__(self) -> jax.Array:
        return self._key

    def __getattr__(self, stream: str) -> Any:
        if stream.startswith("_"):
            raise AttributeError(stream)
        return self.__call__


def functional(module: nnx.Module) -> tuple[PureNet, Any]:
    """Splits an NNX module into (pure network, params as a plain nested dict of arrays).

    Plain dicts keep optax, orbax and sharding code free of NNX types. Every variable of the
    module (parameters and any constants such as Fourier frequencies) ends
    up in ``params``; a network must keep no mutable state (use explicit keys for dropout).
    """
    graphdef, state = nnx.split(module)
    return PureNet(graphdef), nnx.to_pure_dict(state)


def count_params(params: Any) -> int:
    """Number of scalars in a params pytree."""
    return sum(int(x.size) for x in jax.tree.leaves(params))


# Initialisation runs once: compile it fast (XLA's CPU backend spends ~40 s optimising the
# thousands of random-number ops of a U-Net's initialisers at the default level; results are the
# same random draws).
INIT_COMPILER_OPTIONS = {"xla_backend_optimization_level": 0, "xla_cpu_use_fusion_emitters": False}


# Networks with more parameter arrays than this are initialised op by op instead. Measured on the
# 2-core CPU (session 3), jitted (trace + compile at level 0) vs eager: MNIST NVAE (288 arrays)
# 11.5 s vs 11.5 s; CLD NCSN++ (963) 43 s vs 12 s; CIFAR-10 NVAE (1434) 236 s vs 15 s. Tracing
# ``nnx.Rngs`` is quadratic in the number of draws (see ``ShapeOnlyRngs``) and XLA's compile of
# the init program grows faster than linearly in its size, while eager dispatch stays linear.
EAGER_INIT_MIN_ARRAYS = 400


def init_params(make: Callable[..., nnx.Module], key: jax.Array) -> dict:
    """Parameters of ``make(rngs=...)``: one compiled program (not one dispatch per op) for
    networks of up to ``EAGER_INIT_MIN_ARRAYS`` parameter arrays, op by op for larger ones.
    Both draw the same random numbers (up to float rounding in some initialisers)."""
    init = lambda k: functional(make(rngs=nnx.Rngs(k)))[1]  # noqa: E731
    if isinstance(key, jax.core.Tracer):  # under eval_shape / jit: nothing to compile here
        return init(key)
    abstract = nnx.eval_shape(lambda: make(rngs=ShapeOnlyRngs()))
    if len(jax.tree.leaves(nnx.state(abstract))) > EAGER_INIT_MIN_ARRAYS:
        return init(key)
    fn = jax.jit(init)
    options = INIT_COMPILER_OPTIONS if jax.default_backend() == "cpu" else None
    return fn.lower(key).compile(compiler_options=options)(key)
