"""Time steppers: pyqg-jax's own, one file each (the base is ``qgzoo.StepperSpec``)."""

from qgzoo.components.steppers.ab3 import AB3Spec
from qgzoo.components.steppers.euler import EulerSpec

__all__ = ["AB3Spec", "EulerSpec"]
