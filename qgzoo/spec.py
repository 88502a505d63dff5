"""Spec base classes: frozen pydantic models with a ``kind`` tag.

A component spec describes one coarsener, network, loss or stepper. Fields
that hold a component are annotated ``Component("network")``: the value is
validated against the spec class registered for its ``kind``, which is known
only once plugins have loaded.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import models_json_schema
from pydantic_core import PydanticCustomError, core_schema

from qgzoo import plugins


class FrozenSpec(BaseModel):
    """A strict, immutable spec: unknown fields are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ComponentSpec(FrozenSpec):
    """Base of every component spec; subclasses set ``category`` and ``kind``."""

    category: ClassVar[str]
    kind: str


class CoarsenerSpec(ComponentSpec):
    """Spec of a coarsener: ``build(hires_model, lores_model)``."""

    category: ClassVar[str] = "coarsener"


class NetworkSpec(ComponentSpec):
    """Spec of a network or closure: ``build(stats, *, key, target)``."""

    category: ClassVar[str] = "network"


class LossSpec(ComponentSpec):
    """Spec of a loss: ``build(stats, lores, target)``; says if it scores rollouts or forcings."""

    category: ClassVar[str] = "loss"

    def needs_rollout(self) -> bool:
        return False

    def needs_forcing(self) -> bool:
        return False


class StepperSpec(ComponentSpec):
    """Spec of a time stepper with ``dt`` in seconds: ``build()`` returns a pyqg-jax stepper
    (or an object with ``stepped_model(model)``, see ``qgzoo.rollout.parameterized_model``)."""

    category: ClassVar[str] = "stepper"
    dt: float = Field(3600.0, gt=0, description="time step in seconds")


class _ComponentField:
    """Pydantic annotation that validates a dict against its kind's spec class."""

    def __init__(self, category: str):
        self.category = category

    def __get_pydantic_core_schema__(self, source, handler):
        return core_schema.no_info_plain_validator_function(
            self.validate,
            serialization=core_schema.plain_serializer_function_ser_schema(
                _dump_component, info_arg=True),
        )

    def __get_pydantic_json_schema__(self, schema, handler):
        # A placeholder: json_schema() swaps it for a reference to the union of kinds.
        return {_PLACEHOLDER: self.category}

    def validate(self, value: Any) -> ComponentSpec:
        if isinstance(value, ComponentSpec):
            if value.category != self.category:
                raise PydanticCustomError(
                    "wrong_category", "expected a {expected} spec, got a {got} spec",
                    {"expected": self.category, "got": value.category})
            return value
        if not isinstance(value, dict):
            raise PydanticCustomError(
                "component_type", "expected a {category} spec or a dict with a 'kind'",
                {"category": self.category})
        kinds = sorted(plugins.registry().kinds[self.category])
        if "kind" not in value:
            raise PydanticCustomError(
                "missing_kind", "missing 'kind'; installed {category} kinds: {kinds}",
                {"category": self.category, "kinds": ", ".join(kinds)})
        try:
            cls = plugins.registry().spec_class(self.category, value["kind"])
        except plugins.UnknownKindError as error:
            raise PydanticCustomError("unknown_kind", str(error)) from None
        return cls.model_validate(value)


_PLACEHOLDER = "x-qgzoo-component"


def _dump_component(value: ComponentSpec, info) -> dict:
    # Dump the concrete class's fields, not only those of the declared base.
    return value.model_dump(mode=info.mode)


def Component(category: str) -> Any:
    """Annotation for a field holding a component of ``category``."""
    base = {"coarsener": CoarsenerSpec, "network": NetworkSpec,
            "loss": LossSpec, "stepper": StepperSpec}[category]
    return Annotated[base, _ComponentField(category)]


def build_component(category: str, value: Any) -> ComponentSpec:
    """Validate ``value`` (spec or dict) as a component of ``category``."""
    return _ComponentField(category).validate(value)


def json_schema(model: type[BaseModel]) -> dict:
    """JSON Schema of ``model`` with every registered component kind included."""
    registry = plugins.registry()
    classes = [reg.spec_class for reg in registry.registrations()]
    refs, schema = models_json_schema(
        [(model, "validation")] + [(cls, "validation") for cls in classes],
        ref_template="#/$defs/{model}",
    )
    # Pydantic renames defs whose class names clash (two plugins' ``GaussianSpec``),
    # so take each class's reference from it rather than from ``__name__``.
    ref = {cls: refs[cls, "validation"]["$ref"] for cls in [model, *classes]}
    defs = schema.setdefault("$defs", {})
    for category in plugins.CATEGORIES:
        members = [reg for reg in registry.registrations() if reg.category == category]
        defs[category] = {
            "oneOf": [{"$ref": ref[reg.spec_class]} for reg in members],
            "discriminator": {
                "propertyName": "kind",
                "mapping": {reg.kind: ref[reg.spec_class] for reg in members},
            },
        }
    top = defs.pop(ref[model].removeprefix("#/$defs/"))
    return _link_components({**top, "$defs": defs})


def _link_components(node):
    if isinstance(node, dict):
        if _PLACEHOLDER in node:
            rest = {k: v for k, v in node.items() if k != _PLACEHOLDER}
            return {"$ref": f"#/$defs/{node[_PLACEHOLDER]}", **rest}
        return {k: _link_components(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_link_components(v) for v in node]
    return node
