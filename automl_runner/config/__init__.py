"""The config: typed schemas (``schema``), their registration with Hydra (``store``),
composition (``compose``), the typed settings below the experiment's setup
(``settings``) and the semantic checks (``validate``).

Importing this package imports only the schemas (no Hydra, no OmegaConf).
"""

from .schema import (
    AutoMLConfig,
    BuiltinData,
    ClusterCompute,
    ComponentSpec,
    ComputeConfig,
    DataConfig,
    ExplainConfig,
    FileData,
    LocalCompute,
    ParamSpec,
    RayCompute,
    RunnerConfig,
    ScriptData,
    SearchSpaceConfig,
    TrackingConfig,
)

__all__ = [
    "AutoMLConfig",
    "BuiltinData",
    "ClusterCompute",
    "ComponentSpec",
    "ComputeConfig",
    "DataConfig",
    "ExplainConfig",
    "FileData",
    "LocalCompute",
    "ParamSpec",
    "RayCompute",
    "RunnerConfig",
    "ScriptData",
    "SearchSpaceConfig",
    "TrackingConfig",
]
