"""Specs: round trips, errors that name the field, the JSON Schema, immutability, curriculum."""

from __future__ import annotations

import json
from typing import Literal

import jax
import pydantic
import pytest

import qgzoo
from qgzoo.components.networks.symbolic import SymbolicSpec
from qgzoo.core.fields import FieldStats
from qgzoo.core import plugins
from qgzoo.training.experiment import TrainingSpec

OFFLINE = dict(loss={"kind": "forcing_mse"}, training={"rollout_steps": 0})

EXPERIMENTS = {
    "default": {},
    "offline": OFFLINE,
    "weighted": dict(loss={"kind": "weighted", "terms": [
        {"weight": 1.0, "loss": {"kind": "state_mse"}},
        {"weight": 0.25, "loss": {"kind": "forcing_mse"}},
    ]}),
    "mlp": dict(network={"kind": "mlp", "stencil": 5, "width": 16, "inputs": ["q", "u"]}),
    "operator2": dict(coarsener={"kind": "operator2"},
                      reference={"hires_nx": 64, "lores_nx": 16, "physics": {"beta": 1e-11}}),
    "euler": dict(stepper={"kind": "euler", "dt": 1800.0},
                  training={"rollout_steps": 4, "curriculum_start": 2, "curriculum_steps": 50},
                  optimizer={"name": "adamw", "schedule": "cosine", "clip_norm": 1.0}),
}


@pytest.fixture(params=list(EXPERIMENTS))
def experiment(request):
    return qgzoo.Experiment(**EXPERIMENTS[request.param])


# ----------------------------------------------------------------------------
# Round trip


def test_round_trip_through_json_mode_dump(experiment):
    dumped = experiment.model_dump(mode="json")
    assert json.loads(json.dumps(dumped)) == dumped  # plain JSON types only
    assert qgzoo.Experiment.model_validate(dumped) == experiment


def test_round_trip_through_a_json_file(experiment, tmp_path):
    path = tmp_path / "experiment.json"
    path.write_text(experiment.to_json())
    assert qgzoo.Experiment.from_file(path) == experiment


def test_dump_keeps_every_kind_and_the_concrete_fields():
    exp = qgzoo.Experiment(**EXPERIMENTS["weighted"], network={"kind": "mlp", "width": 16})
    dumped = exp.model_dump(mode="json")
    assert {name: dumped[name]["kind"] for name in ("coarsener", "network", "loss", "stepper")} \
        == {"coarsener": "operator1", "network": "mlp", "loss": "weighted", "stepper": "ab3"}
    # Fields of the concrete class, not only those of NetworkSpec.
    assert dumped["network"]["width"] == 16 and dumped["network"]["stencil"] == 3
    assert [(t["weight"], t["loss"]["kind"]) for t in dumped["loss"]["terms"]] == [
        (1.0, "state_mse"), (0.25, "forcing_mse")]


def test_components_validate_to_their_registered_classes():
    exp = qgzoo.Experiment(**EXPERIMENTS["euler"])
    assert type(exp.stepper).__name__ == "EulerSpec" and exp.stepper.dt == 1800.0
    assert exp.steps_per_sample == 2  # 3600 s between samples / 1800 s
    weighted = qgzoo.Experiment(**EXPERIMENTS["weighted"]).loss
    assert weighted.needs_rollout() and weighted.needs_forcing()


# ----------------------------------------------------------------------------
# Errors name the field


def errors_of(**fields):
    with pytest.raises(pydantic.ValidationError) as caught:
        qgzoo.Experiment(**fields)
    return caught.value.errors()


def test_unknown_kind_lists_the_installed_kinds():
    [error] = errors_of(coarsener={"kind": "operator3"})
    assert error["loc"] == ("coarsener",)
    assert error["type"] == "unknown_kind"
    assert "unknown coarsener kind 'operator3'" in error["msg"]
    assert "operator1" in error["msg"] and "operator2" in error["msg"]


def test_unknown_kind_inside_a_weighted_loss_has_the_nested_path():
    errors = errors_of(loss={"kind": "weighted", "terms": [{"loss": {"kind": "l7"}}]})
    [error] = [e for e in errors if e["type"] == "unknown_kind"]
    assert error["loc"] == ("loss", "terms", 0, "loss")
    assert "'l7'" in error["msg"] and "state_mse" in error["msg"]


def test_missing_kind_lists_the_installed_kinds():
    [error] = errors_of(network={"channels": [8, 8]})
    assert error["loc"] == ("network",)
    assert error["type"] == "missing_kind"
    assert "missing 'kind'" in error["msg"]
    assert all(kind in error["msg"] for kind in ("cnn", "mlp", "none"))


def test_a_component_must_be_a_dict_or_spec_of_its_category():
    [error] = errors_of(coarsener="operator1")
    assert error["loc"] == ("coarsener",) and error["type"] == "component_type"
    stepper = qgzoo.Experiment().stepper
    [error] = errors_of(coarsener=stepper)
    assert error["loc"] == ("coarsener",) and error["type"] == "wrong_category"
    assert "expected a coarsener spec, got a stepper spec" in error["msg"]


@pytest.mark.parametrize("fields, loc", [
    (dict(seed=3), ("seed",)),
    (dict(network={"kind": "cnn", "chanels": [8]}), ("network", "chanels")),
    (dict(training={"rollout_step": 3}), ("training", "rollout_step")),
    (dict(stepper={"kind": "ab3", "dt": 60.0, "order": 2}), ("stepper", "order")),
])
def test_extra_field_is_forbidden(fields, loc):
    [error] = errors_of(**fields)
    assert error["loc"] == loc
    assert error["type"] == "extra_forbidden"


@pytest.mark.parametrize("stepper", [{"kind": "ab3", "dt": 0}, {"kind": "euler", "dt": -60.0}])
def test_time_step_must_be_positive(stepper):
    [error] = errors_of(stepper=stepper)
    assert error["loc"] == ("stepper", "dt")
    assert error["type"] == "greater_than"
    assert error["msg"] == "Input should be greater than 0"


# The grid checks compare two fields, so they are errors of the reference as a
# whole; the message names the fields.
@pytest.mark.parametrize("reference, message", [
    ({"lores_nx": 31}, "lores_nx must be even, got 31"),
    ({"hires_nx": 65}, "hires_nx must be even, got 65"),
    ({"hires_nx": 64, "lores_nx": 64}, "lores_nx (64) must be smaller than hires_nx (64)"),
    ({"hires_nx": 64, "lores_nx": 128}, "lores_nx (128) must be smaller than hires_nx (64)"),
    ({"hires_nx": 128, "lores_nx": 48}, "lores_nx (48) must divide hires_nx (128)"),
    ({"physics": {"beta": 1e-11, "gamma": 2.0}}, "physics: unknown parameters ['gamma']"),
])
def test_bad_grid_or_physics_names_the_field(reference, message):
    [error] = errors_of(reference=reference)
    assert error["loc"] == ("reference",)
    assert error["type"] == "value_error"
    assert message in error["msg"]


def test_grid_bounds_are_field_constraints():
    [error] = errors_of(reference={"lores_nx": 4})
    assert error["loc"] == ("reference", "lores_nx") and error["type"] == "greater_than_equal"
    [error] = errors_of(reference={"hires_nx": 2048})
    assert error["loc"] == ("reference", "hires_nx") and error["type"] == "less_than_equal"


def test_negative_training_steps():
    [error] = errors_of(training={"steps": -1})
    assert error["loc"] == ("training", "steps")
    assert error["type"] == "greater_than_equal"
    assert error["msg"] == "Input should be greater than or equal to 0"


def test_rollout_loss_needs_rollout_steps():
    [error] = errors_of(loss={"kind": "state_mse"}, training={"rollout_steps": 0})
    assert error["loc"] == ()
    assert "training.rollout_steps" in error["msg"]
    assert "'state_mse' scores rollouts" in error["msg"]


def test_forcing_loss_needs_no_rollout_steps():
    [error] = errors_of(loss={"kind": "forcing_mse"}, training={"rollout_steps": 10})
    assert "training.rollout_steps" in error["msg"]
    assert "set rollout_steps to 0" in error["msg"]


def test_dt_must_divide_the_sample_spacing():
    [error] = errors_of(stepper={"kind": "ab3", "dt": 7000.0})
    assert "stepper.dt" in error["msg"] and "3600.0 s" in error["msg"]


def test_curriculum_cannot_start_above_its_end():
    with pytest.raises(pydantic.ValidationError) as caught:
        TrainingSpec(rollout_steps=4, curriculum_start=5)
    [error] = caught.value.errors()
    assert "curriculum_start (5) must not exceed rollout_steps (4)" in error["msg"]


# ----------------------------------------------------------------------------
# JSON Schema


def dangling_refs(node, defs):
    """Every ``$ref`` under ``node`` that names no entry of ``defs``."""
    if isinstance(node, dict):
        ref = node.get("$ref")
        missing = [ref] if ref is not None and ref.removeprefix("#/$defs/") not in defs else []
        return missing + [r for v in node.values() for r in dangling_refs(v, defs)]
    if isinstance(node, list):
        return [r for v in node for r in dangling_refs(v, defs)]
    return []


def test_schema_has_one_union_per_category_covering_the_registered_kinds():
    schema = qgzoo.schema()
    json.dumps(schema)  # serialisable as it is
    assert dangling_refs(schema, schema["$defs"]) == []
    defs = schema["$defs"]
    assert schema["properties"]["coarsener"]["$ref"] == "#/$defs/coarsener"
    assert schema["properties"]["stepper"]["$ref"] == "#/$defs/stepper"
    for category in plugins.CATEGORIES:
        union = defs[category]
        mapping = union["discriminator"]["mapping"]
        assert set(mapping) == set(plugins.registry().kinds[category])
        assert [member["$ref"] for member in union["oneOf"]] == list(mapping.values())
        for kind, ref in mapping.items():
            target = defs[ref.removeprefix("#/$defs/")]
            assert target["properties"]["kind"]["const"] == kind
    assert {"operator1", "operator2"} <= set(defs["coarsener"]["discriminator"]["mapping"])
    # The weighted loss's terms refer back to the loss union.
    assert defs["WeightedTerm"]["properties"]["loss"]["$ref"] == "#/$defs/loss"
    assert defs["AB3Spec"]["properties"]["dt"]["exclusiveMinimum"] == 0


class CNNSpec(qgzoo.NetworkSpec):
    """A plugin's network whose class name is also that of the built-in CNN's spec."""

    kind: Literal["test_other_cnn"] = "test_other_cnn"
    depth: int = 3

    def build(self, stats, *, key, target="q_forcing_total"):
        raise NotImplementedError("only its schema is tested")


class SameNamePlugin:
    @qgzoo.hookimpl
    def register_components(self, register):
        register(CNNSpec)


def test_schema_keeps_spec_classes_of_the_same_name_apart(monkeypatch):
    registry = plugins.load_registry(only=[])
    registry.add_plugin(SameNamePlugin(), "same_name")
    monkeypatch.setattr(plugins, "_current", registry)
    schema = qgzoo.schema()
    defs = schema["$defs"]
    assert dangling_refs(schema, defs) == []
    mapping = defs["network"]["discriminator"]["mapping"]
    assert mapping["cnn"] != mapping["test_other_cnn"]
    for kind in ("cnn", "test_other_cnn"):
        assert defs[mapping[kind].removeprefix("#/$defs/")]["properties"]["kind"]["const"] == kind


@pytest.fixture(scope="module")
def schema_validator():
    jsonschema = pytest.importorskip("jsonschema")
    schema = qgzoo.schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_dumped_experiments_are_valid_under_the_schema(schema_validator, experiment):
    errors = [e.message for e in schema_validator.iter_errors(experiment.model_dump(mode="json"))]
    assert errors == []


@pytest.mark.parametrize("change", [
    lambda d: d["coarsener"].update(kind="operator3"),
    lambda d: d["network"].update(chanels=[8]),
    lambda d: d["stepper"].update(dt=0),
    lambda d: d["loss"].update(kind="weighted", terms=[{"loss": {"kind": "l7"}}]),
    lambda d: d.update(seed=1),
])
def test_invalid_experiments_fail_the_schema(schema_validator, change):
    dumped = qgzoo.Experiment().model_dump(mode="json")
    assert schema_validator.is_valid(dumped)
    change(dumped)
    assert not schema_validator.is_valid(dumped)


# ----------------------------------------------------------------------------
# Frozen


def test_specs_are_frozen():
    exp = qgzoo.Experiment()
    for target, name, value in [(exp, "training", TrainingSpec()),
                                (exp.stepper, "dt", 60.0),
                                (exp.coarsener, "kind", "operator2"),
                                (exp.reference, "lores_nx", 16)]:
        with pytest.raises(pydantic.ValidationError) as caught:
            setattr(target, name, value)
        assert caught.value.errors()[0]["type"] == "frozen_instance"
    assert exp == qgzoo.Experiment()


def test_model_copy_is_how_to_change_a_spec():
    exp = qgzoo.Experiment()
    changed = exp.model_copy(update={"training": TrainingSpec(steps=3)})
    assert changed.training.steps == 3 and exp.training.steps == 500


# ----------------------------------------------------------------------------
# Curriculum


@pytest.mark.parametrize("step, rollout_steps", [
    # T(step) = 2 + floor((10 - 2) * step / 100), then 10 from step 100 on.
    (0, 2), (12, 2), (13, 3), (50, 6), (99, 9), (100, 10), (5000, 10),
])
def test_curriculum_grows_linearly(step, rollout_steps):
    training = TrainingSpec(rollout_steps=10, curriculum_start=2, curriculum_steps=100)
    assert training.rollout_steps_at(step) == rollout_steps


def test_without_curriculum_the_rollout_length_is_fixed():
    training = TrainingSpec(rollout_steps=7)
    assert [training.rollout_steps_at(s) for s in (0, 1, 10, 10_000)] == [7, 7, 7, 7]
    # A start but no growth period: full length at once.
    instant = TrainingSpec(rollout_steps=7, curriculum_start=1, curriculum_steps=0)
    assert instant.rollout_steps_at(0) == 7


def test_extra_fields_and_targets_refuse_bad_input():
    with pytest.raises(ValueError, match="must not repeat"):
        qgzoo.ReferenceSpec(extra_fields=["uq_subgrid_flux", "uq_subgrid_flux"])
    with pytest.raises(ValueError, match="uq_subgrid_flux"):
        qgzoo.ReferenceSpec(extra_fields=["nope"])
    with pytest.raises(qgzoo.UserError, match="predicts a q forcing"):
        SymbolicSpec(terms=["laplacian(q)"]).build(FieldStats.placeholder(),
                                                  key=jax.random.key(0), target="q_subgrid_flux")
