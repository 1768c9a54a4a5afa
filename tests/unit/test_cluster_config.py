"""compute=cluster rendered as Ray's own configs: each provider's rendering pinned against a
fixture under tests/fixtures/clusters/, the cloud ones passed through Ray's own launcher
checks, the KubeRay manifest held to the RayCluster fields it uses; and the group's bad
values refused in one line naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

import automl_runner
from automl_runner.config.schema import ClusterCompute
from automl_runner.config.settings import settings
from automl_runner.config.validate import validate
from automl_runner.engine.launcher_config import render
from automl_runner.errors import ConfigError

FIXTURES = Path(__file__).parents[1] / "fixtures" / "clusters"
# the versions the fixtures were rendered with (the setup commands and images name them)
RAY, RUNNER = "2.60.0", "0.1.0"

# the README's cluster section shows these, one per provider
EXAMPLES = {
    "aws": [
        "compute.provider=aws",
        "compute.node_type=m5.2xlarge",
        "compute.cpus_per_node=8",
        "compute.max_nodes=6",
        "compute.priority=spot",
        "compute.region=eu-west-1",
    ],
    "gcp": [
        "compute.provider=gcp",
        "compute.project=my-gcp-project",
        "compute.region=europe-west4",
        "compute.max_nodes=6",
    ],
    "azure": [
        "compute.provider=azure",
        "compute.project=automl-rg",
        "compute.node_type=Standard_D8s_v5",
        "compute.cpus_per_node=8",
        "compute.priority=spot",
        "compute.region=westeurope",
        "compute.max_nodes=6",
    ],
    "kubernetes": [
        "compute.provider=kubernetes",
        "compute.min_nodes=1",
        "compute.max_nodes=6",
        "compute.node_type=n2-standard-4",
    ],
    "fake": [
        "compute.provider=fake",
        "compute.cpus_per_node=1",
        "compute.max_nodes=3",
        "compute.idle_timeout_minutes=0.1",
        "compute.head_port=6390",
    ],
}


def cluster(overrides: list[str]) -> ClusterCompute:
    cfg = settings(automl_runner.compose(["compute=cluster", *overrides]))
    validate(cfg)
    assert isinstance(cfg.compute, ClusterCompute)
    return cfg.compute


def rendered(provider: str) -> dict:
    return render(cluster(EXAMPLES[provider]), RAY, RUNNER)


@pytest.mark.parametrize("provider", sorted(EXAMPLES))
def test_each_provider_renders_as_its_fixture(provider):
    name = "raycluster" if provider == "kubernetes" else "launcher"
    fixture = FIXTURES / f"{provider}-{name}.yaml"
    assert rendered(provider) == yaml.safe_load(fixture.read_text())


def test_the_fake_config_passes_rays_schema_check():
    # prepare_config would read the fake provider's example.yaml, which the wheel lacks;
    # the system test (tests/system/test_cluster.py) brings this config up for real
    from ray.autoscaler._private.util import validate_config

    validate_config(rendered("fake"))


@pytest.mark.parametrize("provider", ["aws", "gcp", "azure"])
def test_cloud_launcher_configs_pass_rays_own_checks(provider):
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = rendered(provider)
    validate_config(config)
    # what `ray up` does before it calls the cloud: the provider's defaults filled in,
    # node types and commands merged, and checked again
    prepared = prepare_config(config)
    validate_config(prepared)
    workers = prepared["available_node_types"]["ray.worker.default"]
    assert (workers["min_workers"], workers["max_workers"]) == (0, prepared["max_workers"])
    assert prepared["available_node_types"]["ray.head.default"]["resources"] == {"CPU": 0}


def test_a_bad_launcher_config_fails_rays_check():
    # the check above can fail: a node type without resources is refused
    from ray.autoscaler._private.util import validate_config

    config = rendered("aws")
    del config["available_node_types"]["ray.worker.default"]["resources"]
    with pytest.raises(Exception, match="resources"):
        validate_config(config)


def test_spot_and_node_types_reach_the_clouds_fields():
    aws, gcp, azure = rendered("aws"), rendered("gcp"), rendered("azure")
    worker = "ray.worker.default"
    aws_node = aws["available_node_types"][worker]["node_config"]
    assert aws_node == {
        "InstanceType": "m5.2xlarge",
        "InstanceMarketOptions": {"MarketType": "spot"},
    }
    assert aws["provider"]["region"] == "eu-west-1"
    assert gcp["provider"]["project_id"] == "my-gcp-project"
    assert "scheduling" not in gcp["available_node_types"][worker]["node_config"]
    arm = azure["available_node_types"][worker]["node_config"]["azure_arm_parameters"]
    assert (arm["vmSize"], arm["priority"]) == ("Standard_D8s_v5", "Spot")
    assert azure["provider"]["resource_group"] == "automl-rg"


# every field path the RayCluster manifest uses, with its type, as KubeRay's ray.io/v1
# RayCluster CRD defines it ([] marks a list's items)
RAYCLUSTER_FIELDS = {
    "apiVersion": str,
    "kind": str,
    "metadata": dict,
    "metadata.name": str,
    "spec": dict,
    "spec.rayVersion": str,
    "spec.enableInTreeAutoscaling": bool,
    "spec.autoscalerOptions": dict,
    "spec.autoscalerOptions.idleTimeoutSeconds": int,
    "spec.autoscalerOptions.upscalingMode": str,
    "spec.headGroupSpec": dict,
    "spec.headGroupSpec.rayStartParams": dict,
    "spec.headGroupSpec.template": dict,
    "spec.workerGroupSpecs": list,
    "spec.workerGroupSpecs[]": dict,
    "spec.workerGroupSpecs[].groupName": str,
    "spec.workerGroupSpecs[].replicas": int,
    "spec.workerGroupSpecs[].minReplicas": int,
    "spec.workerGroupSpecs[].maxReplicas": int,
    "spec.workerGroupSpecs[].rayStartParams": dict,
    "spec.workerGroupSpecs[].template": dict,
}
# a pod template is a Kubernetes PodTemplateSpec: these are the parts it uses
POD_FIELDS = {
    "spec": dict,
    "spec.containers": list,
    "spec.containers[]": dict,
    "spec.containers[].name": str,
    "spec.containers[].image": str,
    "spec.containers[].ports": list,
    "spec.containers[].ports[]": dict,
    "spec.containers[].ports[].containerPort": int,
    "spec.containers[].ports[].name": str,
    "spec.containers[].resources": dict,
    "spec.containers[].resources.limits": dict,
    "spec.containers[].resources.requests": dict,
    "spec.nodeSelector": dict,
}
# maps whose keys are free (KubeRay passes rayStartParams to `ray start` as strings)
FREE_MAPS = ("rayStartParams", "limits", "requests", "nodeSelector")


def _paths(value, prefix, known, out):
    """Every field path in `value` checked against `known`; templates against POD_FIELDS."""
    if isinstance(value, dict):
        for key, item in value.items():
            path = f"{prefix}.{key}" if prefix else key
            out.append((path, item, known))
            if prefix.endswith("template") or key == "template":
                _paths(item, "", POD_FIELDS, out)
            elif key not in FREE_MAPS:
                _paths(item, path, known, out)
            else:
                assert all(isinstance(v, str) for v in item.values()), path
    elif isinstance(value, list):
        for item in value:
            out.append((f"{prefix}[]", item, known))
            _paths(item, f"{prefix}[]", known, out)


def test_the_kuberay_manifest_uses_only_raycluster_fields():
    manifest = rendered("kubernetes")
    found: list = []
    _paths(manifest, "", RAYCLUSTER_FIELDS, found)
    unknown = [path for path, _, known in found if path not in known]
    assert not unknown
    wrong = [path for path, v, known in found if not isinstance(v, known[path])]
    assert not wrong
    assert manifest["spec"]["enableInTreeAutoscaling"] is True
    group = manifest["spec"]["workerGroupSpecs"][0]
    assert (group["minReplicas"], group["maxReplicas"]) == (1, 6)
    assert group["rayStartParams"] == {"num-cpus": "4"}


def test_the_field_check_finds_a_field_raycluster_does_not_have():
    manifest = rendered("kubernetes")
    manifest["spec"]["workerGroupSpecs"][0]["maxNodes"] = 6
    found: list = []
    _paths(manifest, "", RAYCLUSTER_FIELDS, found)
    assert [p for p, _, known in found if p not in known] == ["spec.workerGroupSpecs[].maxNodes"]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["compute.provider=ibm"],
            "compute.provider=ibm: allowed: aws, gcp, azure, kubernetes, fake",
        ),
        (["compute.priority=low"], "compute.priority=low: allowed: dedicated, spot"),
        (["compute.max_nodes=0"], "compute.max_nodes=0: must be >= 1"),
        (
            ["compute.min_nodes=4", "compute.max_nodes=2"],
            "compute.max_nodes=2: must be >= 1 and >= compute.min_nodes (4)",
        ),
        (["compute.min_nodes=-1"], "compute.min_nodes=-1: must be >= 0"),
        (["compute.cpus_per_node=0"], "compute.cpus_per_node=0: must be >= 1"),
        (
            ["compute.cpus_per_node=2", "compute.cpus_per_iteration=4"],
            "compute.cpus_per_iteration=4.0: must be <= compute.cpus_per_node (2)",
        ),
        (["compute.idle_timeout_minutes=0"], "compute.idle_timeout_minutes=0.0: must be > 0"),
        (["compute.timeout_minutes=-1"], "compute.timeout_minutes=-1.0: must be > 0"),
        (["compute.head_port=70000"], "compute.head_port=70000: must be a port from 1 to 65535"),
        (["compute.cluster_name=my_cluster"], "compute.cluster_name=my_cluster: contains _"),
        (["compute.provider=gcp"], "compute.project=None: provider=gcp needs the GCP project id"),
        (
            ["compute.provider=azure"],
            "compute.project=None: provider=azure needs the Azure resource group",
        ),
        (
            ["compute.provider=kubernetes", "compute.cluster_name=Automl"],
            "compute.cluster_name=Automl: provider=kubernetes names",
        ),
        (["compute.priority=spot"], "compute.priority=spot: provider=fake takes dedicated only"),
        (["compute.address=nowhere"], "compute.address=nowhere: expected HOST:PORT"),
    ],
)
def test_bad_cluster_values_are_one_line_naming_the_key(overrides, message):
    cfg = settings(automl_runner.compose(["compute=cluster", *overrides]))
    with pytest.raises(ConfigError) as caught:
        validate(cfg)
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)


def test_a_fake_head_port_in_use_is_one_line_and_starts_nothing(tmp_path):
    import socket

    from automl_runner.engine import provision
    from automl_runner.errors import ComputeError

    with socket.socket() as taken:
        taken.bind(("127.0.0.2", 0))
        taken.listen()
        port = taken.getsockname()[1]
        c = cluster([f"compute.head_port={port}", f"compute.state_dir={tmp_path}"])
        with pytest.raises(ComputeError, match=f"compute.head_port={port}: something listens"):
            provision.up(c)
    assert not (tmp_path / "automl-cluster" / "state.json").exists()


def test_automl_ctl_cluster_on_a_cluster_that_is_not_up_or_not_a_cluster(tmp_path, capsys):
    from automl_runner.entry import ctl

    with pytest.raises(SystemExit) as exit_:
        ctl.main(["cluster", "status", "compute=cluster", f"compute.state_dir={tmp_path}"])
    assert exit_.value.code == 1
    assert capsys.readouterr().out.startswith("cluster automl-cluster: not up (automl-ctl")
    with pytest.raises(SystemExit) as exit_:
        ctl.main(["cluster", "down", "compute=cluster", f"compute.state_dir={tmp_path}"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out == "cluster automl-cluster: was not up\n"
    with pytest.raises(SystemExit) as exit_:
        ctl.main(["cluster", "up", "compute=local"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert (
        err
        == "automl-ctl: error: compute=local: automl-ctl cluster needs compute=cluster and its keys\n"
    )
