"""The rules every component spec keeps, whatever its category."""

from __future__ import annotations

import json
import typing
from typing import Literal

import pydantic

from qgzoo.core import plugins
from qgzoo.core.schema import validate_component
from qgzoo.core.spec import ComponentSpec
from qgzoo.testing.assertions import checking, require


def check_spec(spec: ComponentSpec, *, registered: bool = True) -> None:
    """The spec's rules: a Literal ``kind`` default, frozen, strict, JSON round trip, schema,
    units on numbers, and (unless ``registered=False``) registered under its kind."""
    cls = type(spec)
    with checking(spec, "kind is a Literal default"):
        field = cls.model_fields.get("kind")
        require(field is not None, "the spec has no kind field")
        args = typing.get_args(field.annotation)
        require(typing.get_origin(field.annotation) is Literal and len(args) == 1,
                f"kind is annotated {field.annotation!r}; declare kind: Literal['name'] = 'name'")
        require(field.default == args[0] == spec.kind,
                f"kind default {field.default!r}, Literal {args[0]!r} and value "
                f"{spec.kind!r} must be the same string")
    with checking(spec, "frozen"):
        try:
            setattr(spec, "kind", spec.kind)
        except (pydantic.ValidationError, AttributeError, TypeError):
            pass
        else:
            raise AssertionError("assigning a field did not raise; set frozen=True "
                                 "(subclass a qgzoo spec base and keep its model_config)")
    with checking(spec, "unknown fields rejected"):
        try:
            cls.model_validate({**spec.model_dump(mode="json"), "qgzoo_unknown_field": 1})
        except pydantic.ValidationError:
            pass
        else:
            raise AssertionError("an unknown field was accepted; keep extra='forbid'")
    with checking(spec, "round trip"):
        dumped = spec.model_dump(mode="json")
        require(dumped.get("kind") == spec.kind, f"model_dump(mode='json') lacks kind: {dumped}")
        back = cls.model_validate(dumped)
        require(back == spec, f"model_validate(model_dump(mode='json')) gave {back!r}, "
                f"not {spec!r}")
        back = cls.model_validate(json.loads(json.dumps(dumped)))
        require(back == spec, f"through json.dumps/json.loads it became {back!r}")
        back = cls.model_validate_json(spec.model_dump_json())
        require(back == spec, f"through model_dump_json it became {back!r}")
    with checking(spec, "JSON schema"):
        cls.model_json_schema()
    with checking(spec, "units of numbers"):
        undescribed = [name for name, info in cls.model_fields.items()
                       if _is_numeric(info.annotation) and not info.description]
        require(not undescribed, f"numeric fields {undescribed} need a description that "
                "gives their unit (pydantic.Field(description=...))")
    if registered:
        _check_registered(spec)


def _is_numeric(annotation) -> bool:
    if annotation in (int, float):
        return True
    return any(_is_numeric(arg) for arg in typing.get_args(annotation)
               if arg is not Ellipsis and not isinstance(arg, str))


def _check_registered(spec):
    with checking(spec, "registered"):
        registry = plugins.registry()
        key = (spec.category, spec.kind)
        if key in registry.ambiguous:
            origins = " and ".join(f"{r.plugin} ({r.distribution})"
                                   for r in registry.ambiguous[key])
            raise AssertionError(f"kind {spec.kind!r} is registered by both {origins}")
        registration = registry.kinds[spec.category].get(spec.kind)
        require(registration is not None,
                f"kind {spec.kind!r} is not in the current registry (installed "
                f"{spec.category} kinds: {', '.join(sorted(registry.kinds[spec.category]))}); "
                "register it in register_components, install the plugin and check "
                "QGZOO_PLUGINS, or pass registered=False for a class defined in a test")
        require(registration.spec_class is type(spec),
                f"kind {spec.kind!r} is registered to {registration.spec_class.__qualname__} "
                f"of plugin {registration.plugin!r}, not to {type(spec).__qualname__}")
        back = validate_component(spec.category, spec.model_dump(mode="json"))
        require(back == spec, f"validating its dump through the registry gave {back!r}")
