"""compute=cluster as Ray's own words: the cluster launcher's YAML (aws, gcp, azure and
Ray's fake multi-node provider) or, for kubernetes, a KubeRay ``RayCluster`` manifest.

One function per provider turns the group's keys into the launcher's fields, so the
provider's vocabulary (instance types, spot markets, zones) lives here and nowhere else.
The head node carries no CPUs for Ray: iterations run on the worker nodes, which the
autoscaler adds for waiting iterations (up to max_nodes) and gives back when idle, as an
AmlCompute cluster does. Nothing here imports Ray; ``engine.provision`` brings the
rendered config up.
"""

from __future__ import annotations

from typing import Any

from ..config.schema import ClusterCompute

# names of the two node types in every launcher config: Ray's own (the fake provider tags
# its head with this type; under another name the autoscaler counted the head as a
# surplus node of no type and terminated workers as soon as they came up)
HEAD_TYPE, WORKER_TYPE = "ray.head.default", "ray.worker.default"
# the Ray Client server's port on a provisioned head (a driver off the cluster joins there)
CLIENT_PORT = 10001
# a fake node's object store: small, several nodes share this machine's memory
FAKE_OBJECT_STORE_BYTES = 512 * 2**20
# the fake head's address: a loopback address Ray keeps (127.0.0.1 it swaps for this
# machine's outward IP), so a test cluster listens on nothing outside this machine
FAKE_HEAD_IP = "127.0.0.2"
# a kubernetes pod's memory per CPU, in GiB (the usual general-purpose machine ratio)
KUBERNETES_GIB_PER_CPU = 4

# each provider's machine type when compute.node_type is null: 4 vCPUs, like cpus_per_node's default
DEFAULT_NODE_TYPES = {
    "aws": "m5.xlarge",
    "gcp": "n2-standard-4",
    "azure": "Standard_D4s_v5",
}
DEFAULT_REGIONS = {"aws": "us-west-2", "gcp": "us-west1", "azure": "westus2"}
# GCP's boot image for the nodes: a Debian image with Python (the setup installs Ray)
GCP_IMAGE = "projects/deeplearning-platform-release/global/images/family/common-cpu"
# Azure's: Ubuntu 22.04 with conda
AZURE_IMAGE = {
    "imagePublisher": "microsoft-dsvm",
    "imageOffer": "ubuntu-2204",
    "imageSku": "2204-gen2",
    "imageVersion": "latest",
}


def render(c: ClusterCompute, ray_version: str, runner_version: str) -> dict[str, Any]:
    """The provider's config for `c`: a launcher config, or a RayCluster manifest."""
    if c.provider == "kubernetes":
        return kuberay_manifest(c, ray_version)
    config = _launcher_common(c, ray_version, runner_version)
    {"aws": _aws, "gcp": _gcp, "azure": _azure, "fake": _fake}[c.provider](c, config)
    return config


def _launcher_common(c: ClusterCompute, ray_version: str, runner_version: str) -> dict[str, Any]:
    """The fields every launcher config has; the provider's function fills in the rest."""
    head_start = (
        f"ray start --head --port={c.head_port} --num-cpus=0 --dashboard-host=0.0.0.0 "
        f"--ray-client-server-port={CLIENT_PORT} --autoscaling-config=~/ray_bootstrap_config.yaml"
    )
    return {
        "cluster_name": c.cluster_name,
        "max_workers": c.max_nodes,
        "upscaling_speed": 1.0,
        "idle_timeout_minutes": c.idle_timeout_minutes,
        "provider": {"type": c.provider},
        "auth": {"ssh_user": "ubuntu"},
        "docker": {},
        "available_node_types": {
            HEAD_TYPE: {"resources": {"CPU": 0}, "node_config": {}, "max_workers": 0},
            WORKER_TYPE: {
                "resources": {"CPU": c.cpus_per_node},
                "node_config": {},
                "min_workers": c.min_nodes,
                "max_workers": c.max_nodes,
            },
        },
        "head_node_type": HEAD_TYPE,
        "file_mounts": {},
        "cluster_synced_files": [],
        "file_mounts_sync_continuously": False,
        "rsync_exclude": [],
        "rsync_filter": [],
        "initialization_commands": [],
        # the nodes run the driver's Ray and the runner (its workers unpickle its tasks)
        "setup_commands": [
            f"pip install -U 'ray[default]=={ray_version}' 'automl-runner=={runner_version}'"
        ],
        "head_setup_commands": [],
        "worker_setup_commands": [],
        "head_start_ray_commands": ["ray stop", f"ulimit -n 65536; {head_start}"],
        "worker_start_ray_commands": [
            "ray stop",
            f"ulimit -n 65536; ray start --address=$RAY_HEAD_IP:{c.head_port}",
        ],
    }


def _types(config: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    nodes = config["available_node_types"]
    return nodes[HEAD_TYPE], nodes[WORKER_TYPE]


def _aws(c: ClusterCompute, config: dict[str, Any]) -> None:
    region = c.region or DEFAULT_REGIONS["aws"]
    config["provider"].update(region=region, cache_stopped_nodes=False)
    instance = c.node_type or DEFAULT_NODE_TYPES["aws"]
    head, worker = _types(config)
    head["node_config"] = {"InstanceType": instance}
    worker["node_config"] = {"InstanceType": instance}
    if c.priority == "spot":
        worker["node_config"]["InstanceMarketOptions"] = {"MarketType": "spot"}
    # the autoscaler on the head calls EC2: boto3 there
    config["head_setup_commands"] = ["pip install 'boto3>=1.4.8'"]


def _gcp(c: ClusterCompute, config: dict[str, Any]) -> None:
    region = c.region or DEFAULT_REGIONS["gcp"]
    config["provider"].update(
        region=region, availability_zone=f"{region}-a", project_id=str(c.project)
    )
    head, worker = _types(config)
    for node in (head, worker):
        node["node_config"] = {
            "machineType": c.node_type or DEFAULT_NODE_TYPES["gcp"],
            "disks": [
                {
                    "boot": True,
                    "autoDelete": True,
                    "type": "PERSISTENT",
                    "initializeParams": {"diskSizeGb": 50, "sourceImage": GCP_IMAGE},
                }
            ],
        }
    if c.priority == "spot":
        worker["node_config"]["scheduling"] = [{"preemptible": True}]
    config["head_setup_commands"] = ["pip install google-api-python-client"]


def _azure(c: ClusterCompute, config: dict[str, Any]) -> None:
    config["provider"].update(
        location=c.region or DEFAULT_REGIONS["azure"], resource_group=str(c.project)
    )
    # Ray's Azure nodes authenticate with a key pair the launcher reads from these paths
    config["auth"].update(
        ssh_private_key="~/.ssh/id_rsa",
        ssh_public_key="~/.ssh/id_rsa.pub",
    )
    head, worker = _types(config)
    for node in (head, worker):
        node["node_config"] = {
            "azure_arm_parameters": {"vmSize": c.node_type or DEFAULT_NODE_TYPES["azure"]}
            | AZURE_IMAGE
        }
    if c.priority == "spot":
        worker["node_config"]["azure_arm_parameters"]["priority"] = "Spot"
    config["file_mounts"] = {"~/.ssh/id_rsa.pub": "~/.ssh/id_rsa.pub"}
    config["head_setup_commands"] = [
        "pip install azure-identity azure-mgmt-compute azure-mgmt-network azure-mgmt-resource"
    ]


def _fake(c: ClusterCompute, config: dict[str, Any]) -> None:
    """Ray's fake multi-node provider: the head's autoscaler starts each node as processes
    on this machine. Told the head's address, the nodes join a head on any port (without
    it they look for 127.0.0.1:6379 only)."""
    config["provider"] = {
        "type": "fake_multinode",
        "use_node_id_as_ip": True,
        "disable_node_updaters": True,
        "disable_launch_config_check": True,
        "gcs_address": f"{FAKE_HEAD_IP}:{c.head_port}",
    }
    config["auth"] = {}
    head, worker = _types(config)
    worker["resources"]["object_store_memory"] = FAKE_OBJECT_STORE_BYTES
    for key in ("setup_commands", "head_setup_commands", "head_start_ray_commands"):
        config[key] = []
    config["worker_start_ray_commands"] = []


def kuberay_manifest(c: ClusterCompute, ray_version: str) -> dict[str, Any]:
    """A KubeRay RayCluster (ray.io/v1) with Ray's autoscaler on (enableInTreeAutoscaling):
    a head pod with no CPUs for Ray, one worker group of min_nodes..max_nodes pods of
    cpus_per_node CPUs; node_type, if set, pins the pods to that instance type."""
    image = f"rayproject/ray:{ray_version}-py311"
    cpu = str(c.cpus_per_node)
    memory = f"{c.cpus_per_node * KUBERNETES_GIB_PER_CPU}Gi"
    worker_pod: dict[str, Any] = {
        "containers": [
            {
                "name": "ray-worker",
                "image": image,
                "resources": {
                    "limits": {"cpu": cpu, "memory": memory},
                    "requests": {"cpu": cpu, "memory": memory},
                },
            }
        ]
    }
    if c.node_type:
        worker_pod["nodeSelector"] = {"node.kubernetes.io/instance-type": c.node_type}
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayCluster",
        "metadata": {"name": c.cluster_name},
        "spec": {
            "rayVersion": ray_version,
            "enableInTreeAutoscaling": True,
            "autoscalerOptions": {
                "idleTimeoutSeconds": int(round(c.idle_timeout_minutes * 60)),
                "upscalingMode": "Default",
            },
            "headGroupSpec": {
                "rayStartParams": {
                    "num-cpus": "0",
                    "port": str(c.head_port),
                    "dashboard-host": "0.0.0.0",
                },
                "template": {
                    "spec": {
                        "containers": [
                            {
                                "name": "ray-head",
                                "image": image,
                                "ports": [
                                    {"containerPort": c.head_port, "name": "gcs-server"},
                                    {"containerPort": 8265, "name": "dashboard"},
                                    {"containerPort": CLIENT_PORT, "name": "client"},
                                ],
                                "resources": {
                                    "limits": {"cpu": "2", "memory": "8Gi"},
                                    "requests": {"cpu": "2", "memory": "8Gi"},
                                },
                            }
                        ]
                    }
                },
            },
            "workerGroupSpecs": [
                {
                    "groupName": "workers",
                    "replicas": c.min_nodes,
                    "minReplicas": c.min_nodes,
                    "maxReplicas": c.max_nodes,
                    "rayStartParams": {"num-cpus": cpu},
                    "template": {"spec": worker_pod},
                }
            ],
        },
    }
