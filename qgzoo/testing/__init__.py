"""Conformance checks for components: import them in a plugin's own tests.

    from qgzoo.testing import check_component

    def test_my_coarsener_conforms():
        check_component(MyCoarsenerSpec())

``check_component`` runs the checks of the spec's category and raises an
``AssertionError`` (a ``ConformanceError``) whose message names the component
and the property it breaks. Each category also has its own function
(``check_coarsener``, ``check_network``, ``check_loss``, ``check_stepper``),
which takes the same options. The checks use small grids (32 -> 16 points,
eddy physics), both precisions and a few steps: from a few seconds to a minute
per component on a small CPU, most of it JAX compilation (``precisions=("double",)``
halves it). Inputs are random but realistic fields (``random_q``).

``qgzoo.testing.fixtures`` holds the pytest fixtures and helpers that qgzoo's
tests and the plugins' share (a conftest.py imports them by name).
"""

from __future__ import annotations

from qgzoo.core.spec import ComponentSpec
from qgzoo.testing.assertions import ConformanceError, checking, require
from qgzoo.testing.coarsener import check_coarsener
from qgzoo.testing.inputs import Q_AMPLITUDE, random_batch, random_q, realistic_stats
from qgzoo.testing.loss import check_loss
from qgzoo.testing.network import check_network
from qgzoo.testing.spec import check_spec
from qgzoo.testing.stepper import check_stepper

__all__ = [
    "ConformanceError", "Q_AMPLITUDE", "check_coarsener", "check_component", "check_loss",
    "check_network", "check_spec", "check_stepper", "random_batch", "random_q",
    "realistic_stats",
]


def check_component(spec: ComponentSpec, **options) -> None:
    """Check ``spec`` and what it builds against the rules of its category.

    Options are those of the category's function (``check_coarsener`` ...);
    ``registered=False`` accepts a spec class that is not in the current registry.
    """
    checks = {"coarsener": check_coarsener, "network": check_network,
              "loss": check_loss, "stepper": check_stepper}
    with checking(spec, "category"):
        require(isinstance(spec, ComponentSpec),
                f"{type(spec).__name__} is not a qgzoo.ComponentSpec")
        require(getattr(spec, "category", None) in checks,
                f"category {getattr(spec, 'category', None)!r} is not one of {tuple(checks)}")
    checks[spec.category](spec, **options)
