"""The config schema and the library agree (no Snakemake): Snakemake fills every schema default
into the config before the scripts see it, so a schema default that drifted from the library's
dataclass default would quietly change what the workflow trains."""

from __future__ import annotations

from dataclasses import MISSING, fields

import yaml

from colorize.models import ARCHITECTURES, LOSSES, ModelConfig
from colorize.train import TrainConfig
from conftest import REPO

SCHEMA = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())


def dataclass_defaults(cls) -> dict:
    return {f.name: f.default for f in fields(cls) if f.default is not MISSING}


def test_model_settings_defaults_are_the_librarys():
    model = SCHEMA["properties"]["models"]["additionalProperties"]["properties"]
    library = {**dataclass_defaults(ModelConfig), **dataclass_defaults(TrainConfig)}
    for key, spec in model.items():
        assert key in library, f"models.<name>.{key} is no ModelConfig or TrainConfig field"
        if "default" in spec:
            assert spec["default"] == library[key], key


def test_the_architecture_and_loss_choices_are_the_librarys():
    model = SCHEMA["properties"]["models"]["additionalProperties"]["properties"]
    assert tuple(model["arch"]["enum"]) == ARCHITECTURES
    assert tuple(model["loss"]["enum"]) == LOSSES


def test_runtime_knobs_are_training_fields_with_the_librarys_defaults():
    runtime = SCHEMA["properties"]["runtime"]["properties"]
    library = dataclass_defaults(TrainConfig)
    for key in ("num_workers", "in_memory", "log_interval"):
        assert runtime[key]["default"] == library[key], key
        assert (
            key not in SCHEMA["properties"]["models"]["additionalProperties"]["properties"]
        )  # one home
    per_model = runtime["models"]["additionalProperties"]["properties"]
    assert set(per_model) == {"num_workers", "in_memory", "log_interval"}


def test_every_key_is_described():
    def walk(node, path):
        if not isinstance(node, dict):
            return
        if (
            "type" in node and path and not path.endswith("<name>")
        ):  # a <name> entry: its parent says
            assert node.get("description"), path
        for name, child in node.get("properties", {}).items():
            walk(child, f"{path}.{name}" if path else name)
        if isinstance(node.get("additionalProperties"), dict):
            walk(node["additionalProperties"], f"{path}.<name>")

    walk(SCHEMA, "")
