"""Reading deploy/ for tests/test_deploy.py: Kubernetes manifests into the official client's models,
strictly; the compose file; checkov's reports; a usable container engine.

`unknown_fields` walks a manifest along the models' `openapi_types` and names every key the model
does not have (the client's own deserializer silently drops them, so a misspelt `readinessprobe`
would pass unnoticed); `to_model` then builds the model with the client's deserializer, whose
constructors refuse a missing required field.
"""

from __future__ import annotations

import inspect
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kubernetes.client
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
KUBERNETES = DEPLOY / "kubernetes"
BIN = Path(sys.executable).parent
PRIMITIVES: dict[str, tuple[type, ...]] = {
    "str": (str,),
    "int": (int,),
    "float": (int, float),
    "bool": (bool,),
    "datetime": (str,),
    "date": (str,),
}


@dataclass(frozen=True)
class Manifest:
    """One YAML document of deploy/kubernetes: its file, kind, name and content."""

    file: str
    kind: str
    name: str
    doc: dict[str, Any]


def model_name(doc: dict[str, Any]) -> str:
    """The client's model class name of a manifest, e.g. `V1CronJob` for batch/v1 CronJob."""
    version = doc["apiVersion"].rsplit("/", 1)[-1]
    return f"{version[0].upper()}{version[1:]}{doc['kind']}"


def unknown_fields(value: Any, type_name: str, path: str = "") -> list[str]:
    """The dotted paths of `value` that the model `type_name` does not know, or of the wrong type.

    Type names as the client spells them: `V1Container`, `List[...]`, `Dict[str, ...]` (older
    clients: `list[...]`, `dict(str, ...)`), primitives, and `object` (int-or-string, quantities).
    """
    if type_name == "object" or value is None:
        return []
    if type_name in PRIMITIVES:
        ok = isinstance(value, PRIMITIVES[type_name]) and not (
            type_name != "bool" and isinstance(value, bool)
        )
        return [] if ok else [f"{path}: {value!r} is not {type_name}"]
    if inner := re.fullmatch(r"[Ll]ist\[(.+)\]", type_name):
        if not isinstance(value, list):
            return [f"{path}: not a list"]
        return [p for i, v in enumerate(value) for p in unknown_fields(v, inner[1], f"{path}[{i}]")]
    if inner := re.fullmatch(r"(?:dict\(str, (.+)\)|Dict\[str, (.+)\])", type_name):
        if not isinstance(value, dict):
            return [f"{path}: not a mapping"]
        item_type = inner[1] or inner[2]
        return [p for k, v in value.items() for p in unknown_fields(v, item_type, f"{path}.{k}")]
    model = getattr(kubernetes.client, type_name)
    if not isinstance(value, dict):
        return [f"{path}: not a mapping ({type_name})"]
    by_key = {key: attr for attr, key in model.attribute_map.items()}
    problems = []
    for key, item in value.items():
        where = f"{path}.{key}" if path else key
        if key not in by_key:
            problems.append(f"{where}: unknown field of {type_name}")
        else:
            problems += unknown_fields(item, model.openapi_types[by_key[key]], where)
    return problems


@dataclass
class _Response:
    """What `ApiClient.deserialize` of clients before v35 reads: an HTTP response's body."""

    data: str


def to_model(doc: dict[str, Any]) -> Any:
    """The manifest as the client's model object (ValueError when a required field is missing)."""
    client = kubernetes.client.ApiClient()
    text, name = json.dumps(doc), model_name(doc)
    try:
        if "content_type" in inspect.signature(client.deserialize).parameters:
            return client.deserialize(text, name, "application/json")
        return client.deserialize(_Response(text), name)
    finally:
        client.close()


def kustomization() -> dict[str, Any]:
    """deploy/kubernetes/kustomization.yaml."""
    data: dict[str, Any] = yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text())
    return data


def manifests() -> list[Manifest]:
    """Every document of every resource file the kustomization lists, in order."""
    found = []
    for file in kustomization()["resources"]:
        for doc in yaml.safe_load_all((KUBERNETES / file).read_text(encoding="utf-8")):
            if doc:
                found.append(Manifest(file, doc["kind"], doc["metadata"]["name"], doc))
    return found


def pod_specs() -> dict[str, dict[str, Any]]:
    """Pod spec per workload (`CronJob/cdmetrics-sync`, `Deployment/cdmetrics-serve`, ...)."""
    specs = {}
    for m in manifests():
        if m.kind == "CronJob":
            specs[f"{m.kind}/{m.name}"] = m.doc["spec"]["jobTemplate"]["spec"]["template"]
        elif m.kind == "Deployment":
            specs[f"{m.kind}/{m.name}"] = m.doc["spec"]["template"]
    return specs


def secret_env(container: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """The container's variables filled from Secrets: name -> (secret, key)."""
    return {
        env["name"]: (ref["name"], ref["key"])
        for env in container.get("env", [])
        if (ref := env.get("valueFrom", {}).get("secretKeyRef"))
    }


def only_environment(monkeypatch: pytest.MonkeyPatch, names: set[str]) -> None:
    """Empty the environment, then set each of `names` (to a placeholder)."""
    for name in list(os.environ):
        monkeypatch.delenv(name)
    for name in names:
        monkeypatch.setenv(name, "placeholder")


def checkov(target: list[str]) -> list[dict[str, Any]]:
    """checkov's JSON reports (one per framework that found files) for a directory or file."""
    frameworks = ["kubernetes", "kustomize", "dockerfile", "secrets"]
    result = subprocess.run(
        [
            str(BIN / "checkov"),
            *target,
            "--framework",
            *frameworks,
            "--skip-download",
            "--quiet",
            "-o",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    assert result.returncode in (0, 1), result.stderr[-2000:]
    reports = json.loads(result.stdout)
    reports = reports if isinstance(reports, list) else [reports]
    assert any(r.get("check_type") in ("kubernetes", "dockerfile") for r in reports), result.stdout[
        :500
    ]
    return [r for r in reports if "results" in r]


def compose() -> dict[str, Any]:
    """deploy/compose.yaml, YAML merge keys resolved (as docker compose reads it)."""
    data: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text(encoding="utf-8"))
    return data


def container_engine() -> str | None:
    """podman, or docker with a daemon that answers; None when neither is usable."""
    for tool in ("podman", "docker"):
        path = shutil.which(tool)
        if path and subprocess.run([path, "info"], capture_output=True, timeout=60).returncode == 0:
            return path
    return None
