import os
import subprocess
import sys

import kubernetes_validate
import pytest
import yaml
from django.urls import resolve

from health import views as health_views
from tests.deploy.conftest import (
    K8S_DIR,
    REPO_ROOT,
    k8s_documents,
    k8s_resource,
    settings_env_names,
)

# The oldest Kubernetes the manifests support, and the newest whose schemas the package ships.
K8S_VERSIONS = ("1.31.0", kubernetes_validate.latest_version())
# What a production pod cannot do without, though the settings have development defaults.
PRODUCTION_ESSENTIALS = {
    "MAMBA_SECRET_KEY",
    "MAMBA_DATABASE_URL",
    "MAMBA_OPENAI__API_KEY",
    "REDIS_URL",
}
DOCUMENTS = k8s_documents()
RESOURCES = [(path, doc) for path, doc in DOCUMENTS if doc["kind"] != "Kustomization"]


def resource_id(item):
    path, doc = item
    return f"{path.name}:{doc['kind']}"


def pod_spec(kind, name):
    return k8s_resource(kind, name)["spec"]["template"]["spec"]


def main_container():
    return pod_spec("Deployment", "mamba")["containers"][0]


def config_map_data():
    return k8s_resource("ConfigMap", "mamba-config")["data"]


def secret_data():
    return k8s_resource("Secret", "mamba-secrets")["stringData"]


def env_var_names(container):
    return [entry["name"] for entry in container.get("env", [])]


def known_name(name, names):
    # A secret may also come from a file: MAMBA_SECRET_KEY_FILE (django-environ's FileAwareEnv).
    return name in names or name.removesuffix("_FILE") in names


# -- Parsing and schemas ---------------------------------------------------------------------


def test_k8s_every_file_parses_to_at_least_one_document():
    files = sorted(K8S_DIR.glob("*.yaml"))

    assert files
    for path in files:
        assert [doc for doc in yaml.safe_load_all(path.read_text()) if doc], path.name


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("item", RESOURCES, ids=resource_id)
def test_k8s_resource_is_valid_against_the_kubernetes_schema_offline(item, version):
    _path, doc = item

    kubernetes_validate.validate(doc, version, strict=True)


def test_k8s_schema_validation_rejects_an_invalid_deployment():
    broken = yaml.safe_load(yaml.safe_dump(k8s_resource("Deployment", "mamba")))
    broken["spec"]["replicas"] = "two"

    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSIONS[0], strict=True)


def test_kustomization_lists_every_manifest_but_the_secret_example():
    kustomization = k8s_resource("Kustomization")
    manifests = {path.name for path in K8S_DIR.glob("*.yaml")} - {"kustomization.yaml"}

    assert set(kustomization["resources"]) == manifests - {"secret.example.yaml"}


def test_k8s_manifests_have_no_unexpanded_placeholders():
    # The original's "${JWT_SECRET}" values reached the pods as those literal strings.
    for path in K8S_DIR.glob("*.yaml"):
        assert "${" not in path.read_text(), path.name


# -- Environment names -----------------------------------------------------------------------


def test_settings_env_names_are_derived_from_settings_py():
    names = settings_env_names()

    assert {"MAMBA_SECRET_KEY", "MAMBA_DATABASE_URL", "REDIS_URL", "OPENAI_API_KEY"} <= set(names)
    assert names["MAMBA_SECRET_KEY"].required
    assert not names["MAMBA_DEBUG"].required


def test_configmap_keys_are_env_names_the_settings_read():
    names = settings_env_names()

    unknown = [key for key in config_map_data() if not known_name(key, names)]

    assert unknown == []


@pytest.mark.parametrize(("kind", "name"), [("Deployment", "mamba"), ("Job", "mamba-migrate")])
def test_pod_env_names_are_env_names_the_settings_read(kind, name):
    names = settings_env_names()
    container = pod_spec(kind, name)["containers"][0]

    unknown = [env for env in env_var_names(container) if not known_name(env, names)]

    assert unknown == []


def test_secret_example_keys_are_env_names_the_settings_read():
    names = settings_env_names()

    assert [key for key in secret_data() if not known_name(key, names)] == []


def test_deployment_provides_every_required_and_essential_setting():
    required = {env.name for env in settings_env_names().values() if env.required}
    provided = set(env_var_names(main_container())) | set(config_map_data())

    assert (required | PRODUCTION_ESSENTIALS) - provided == set()


def test_deployment_wires_database_redis_and_keys_from_the_secret():
    secret_name = k8s_resource("Secret")["metadata"]["name"]
    env = {entry["name"]: entry.get("valueFrom", {}) for entry in main_container()["env"]}

    for name in PRODUCTION_ESSENTIALS:
        reference = env[name]["secretKeyRef"]
        assert reference["name"] == secret_name
        assert reference["key"] in secret_data()
    assert not PRODUCTION_ESSENTIALS & set(config_map_data())


def test_deployment_adds_the_pod_ip_to_allowed_hosts_by_the_downward_api():
    env = {entry["name"]: entry.get("valueFrom", {}) for entry in main_container()["env"]}

    assert env["MAMBA_POD_IP"] == {"fieldRef": {"fieldPath": "status.podIP"}}


def test_k8s_settings_load_and_pass_the_deploy_checks():
    pod_env = {"MAMBA_POD_IP": "10.1.2.3", **config_map_data(), **secret_data()}
    env = {
        "PATH": os.environ["PATH"],
        "MAMBA_DOTENV": "",  # a pod has no .env, whatever the checkout has
        "DJANGO_SETTINGS_MODULE": "mamba_site.settings",
        **pod_env,
    }

    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "ERROR"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    allowed = subprocess.run(
        [
            sys.executable,
            "-c",
            "import django; django.setup(); from django.conf import settings; "
            "print(','.join(settings.ALLOWED_HOSTS))",
        ],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    assert "10.1.2.3" in allowed.stdout.strip().split(","), allowed.stderr


# -- Probes ----------------------------------------------------------------------------------


def probes():
    container = main_container()
    return {kind: container[kind] for kind in ("startupProbe", "livenessProbe", "readinessProbe")}


@pytest.mark.parametrize(
    ("kind", "view"),
    [
        ("startupProbe", health_views.live),
        ("livenessProbe", health_views.live),
        ("readinessProbe", health_views.ready),
    ],
)
def test_probe_path_resolves_to_its_health_view(kind, view):
    match = resolve(probes()[kind]["httpGet"]["path"])

    assert match.func is view


def test_probes_send_a_host_that_is_in_allowed_hosts():
    allowed = config_map_data()["MAMBA_ALLOWED_HOSTS"].split(",")

    for kind, probe in probes().items():
        headers = {h["name"].lower(): h["value"] for h in probe["httpGet"].get("httpHeaders", [])}
        assert headers.get("host") in allowed, kind


def test_probes_use_the_container_port():
    ports = {port["name"]: port["containerPort"] for port in main_container()["ports"]}

    for kind, probe in probes().items():
        assert probe["httpGet"]["port"] in ports, kind


def test_readiness_probe_waits_longer_than_each_health_check():
    check_timeout = float(config_map_data()["MAMBA_HEALTH__TIMEOUT_SECONDS"])

    assert probes()["readinessProbe"]["timeoutSeconds"] > check_timeout


def test_termination_grace_covers_prestop_and_the_drain():
    spec = pod_spec("Deployment", "mamba")
    prestop = main_container()["lifecycle"]["preStop"]["exec"]["command"]
    drain = float(config_map_data()["MAMBA_SERVER__SHUTDOWN_GRACE_SECONDS"])

    assert prestop[0] == "sleep"
    assert spec["terminationGracePeriodSeconds"] > float(prestop[1]) + drain


def test_deployment_runs_the_image_command_with_the_graceful_server():
    # No `command`/`args`: the image's CMD (python -m mamba_site.serve) runs.
    assert "command" not in main_container()
    assert "args" not in main_container()


# -- Availability and security ---------------------------------------------------------------


def test_deployment_rolls_out_without_losing_capacity():
    spec = k8s_resource("Deployment", "mamba")["spec"]

    assert spec["replicas"] >= 2
    assert spec["strategy"]["type"] == "RollingUpdate"
    assert spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


@pytest.mark.parametrize(("kind", "name"), [("Deployment", "mamba"), ("Job", "mamba-migrate")])
def test_pods_run_locked_down(kind, name):
    spec = pod_spec(kind, name)
    container = spec["containers"][0]
    security = container["securityContext"]
    mounts = {mount["mountPath"]: mount["name"] for mount in container["volumeMounts"]}
    volumes = {volume["name"]: volume for volume in spec["volumes"]}

    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] != 0
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert security["allowPrivilegeEscalation"] is False
    assert security["readOnlyRootFilesystem"] is True
    assert security["capabilities"]["drop"] == ["ALL"]
    assert "emptyDir" in volumes[mounts["/tmp"]]
    assert {"requests", "limits"} <= set(container["resources"])


def test_pdb_and_service_select_the_deployment_pods():
    labels = k8s_resource("Deployment", "mamba")["spec"]["template"]["metadata"]["labels"]
    pdb = k8s_resource("PodDisruptionBudget")["spec"]
    service = k8s_resource("Service")["spec"]

    assert pdb["selector"]["matchLabels"].items() <= labels.items()
    assert service["selector"].items() <= labels.items()
    assert service["ports"][0]["targetPort"] in {p["name"] for p in main_container()["ports"]}


def test_hpa_scales_the_deployment_and_keeps_two_pods():
    hpa = k8s_resource("HorizontalPodAutoscaler")

    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "mamba",
    }
    assert hpa["spec"]["minReplicas"] >= 2


def test_migration_job_runs_migrate():
    container = pod_spec("Job", "mamba-migrate")["containers"][0]

    assert container["command"] == ["python", "manage.py", "migrate", "--noinput"]
    assert pod_spec("Job", "mamba-migrate")["restartPolicy"] == "Never"
