"""Fields that hold a component, validated against the registry; the JSON Schema.

A field annotated ``Component("network")`` takes a spec or a dict with a
``kind``; the dict is validated against the spec class registered for that
kind, which is known only once plugins have loaded. ``json_schema`` writes the
schema of a spec with the union of every registered kind in place of each such
field.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ValidationError
from pydantic.json_schema import models_json_schema
from pydantic_core import PydanticCustomError, core_schema

from qgzoo.core import plugins
from qgzoo.core.errors import UserError
from qgzoo.core.spec import (
    CATEGORIES, CoarsenerSpec, ComponentSpec, LossSpec, NetworkSpec, StepperSpec)


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


def validate_component(category: str, value: Any) -> ComponentSpec:
    """Validate ``value`` (spec or dict) as a component of ``category``."""
    return _ComponentField(category).validate(value)


def json_schema(model: type[BaseModel]) -> dict:
    """JSON Schema of ``model`` with every registered component kind included."""
    current = plugins.registry()
    classes = [reg.spec_class for reg in current.registrations()]
    refs, schema = models_json_schema(
        [(model, "validation")] + [(cls, "validation") for cls in classes],
        ref_template="#/$defs/{model}",
    )
    # Pydantic renames defs whose class names clash (two plugins' ``GaussianSpec``),
    # so take each class's reference from it rather than from ``__name__``.
    ref = {cls: refs[cls, "validation"]["$ref"] for cls in [model, *classes]}
    defs = schema.setdefault("$defs", {})
    for category in CATEGORIES:
        members = [reg for reg in current.registrations() if reg.category == category]
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


def validation_messages(error: ValidationError) -> list[str]:
    """One ``field.path: message`` per error of ``error`` (just the message for the whole spec)."""
    lines = []
    for item in error.errors():
        path = ".".join(str(part) for part in item["loc"])
        message = item["msg"]
        if item["type"] == "value_error":
            # A model-level check: its message already names the fields involved.
            message = str(item.get("ctx", {}).get("error", message))
        lines.append(f"{path}: {message}" if path else message)
    return lines


def invalid_spec(subject: str, error: ValidationError) -> UserError:
    """The ``UserError`` that ``subject`` (a file, an entry) is not a valid spec, with one
    indented ``field.path: message`` line per error of ``error``."""
    lines = "\n".join(f"  {line}" for line in validation_messages(error))
    return UserError(f"{subject} is not a valid spec:\n{lines}")
