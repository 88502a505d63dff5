"""qgzoo's conformance kit (``qgzoo.testing.check_component``) on every kind."""

import pytest

from qgzoo_physical import SPECS

testing = pytest.importorskip("qgzoo.testing")


@pytest.mark.slow
@pytest.mark.parametrize("spec_class", SPECS, ids=lambda cls: cls.__name__)
def test_conforms_with_its_constants_trainable(spec_class):
    # Trainable, the closure must have arrays with a non-zero gradient.
    testing.check_component(spec_class(trainable=spec_class.constant_names),
                            trainable_arrays=True)

