"""The cluster's settings file: how each deployment is sized (replicas or autoscaling, CPUs,
fractional GPUs, batching) and what the replicas are told. One TOML file, read here only; Ray
Serve's own option names, so a deployment table reads as Serve's docs do."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from engine.settings import thread_environment

DEFAULT_CONFIG = Path(__file__).with_name("cluster.toml")
DEPLOYMENTS = ("Encoder", "Stickers", "Emotion", "Reply", "ChatTurn")
SERVE_OPTIONS = ("num_replicas", "max_ongoing_requests", "health_check_period_s",
                 "health_check_timeout_s", "graceful_shutdown_timeout_s")
ACTOR_OPTIONS = ("num_cpus", "num_gpus", "memory")
AUTOSCALING = ("min_replicas", "max_replicas", "initial_replicas", "target_ongoing_requests",
               "upscale_delay_s", "downscale_delay_s")
BATCHING = ("max_batch_size", "batch_wait_timeout_s")


@dataclass(frozen=True)
class ClusterConfig:
    name: str = "memeui"
    refresh_s: float = 2.0
    timeout_s: float = 30.0
    threads: int = 1
    environment: dict[str, str] = field(default_factory=dict)
    deployments: dict[str, dict] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path | str | None = None) -> "ClusterConfig":
        """The file at ``path``, else ``MEMEUI_CLUSTER_CONFIG``, else the bundled one; a
        wrong name or value is told with the file and table it is in."""
        path = Path(path or os.environ.get("MEMEUI_CLUSTER_CONFIG") or DEFAULT_CONFIG)
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as error:
            raise ValueError(f"the cluster settings {path} cannot be read: {error}") from None
        application = raw.get("application", {})
        deployments = raw.get("deployments", {})
        unknown = set(deployments) - set(DEPLOYMENTS)
        if unknown:
            raise ValueError(f"{path}: unknown deployment {sorted(unknown)[0]!r}; known: "
                             f"{', '.join(DEPLOYMENTS)}")
        for name, table in deployments.items():
            _check_table(path, name, table)
        return cls(name=str(application.get("name", "memeui")),
                   refresh_s=float(application.get("refresh_s", 2.0)),
                   timeout_s=float(application.get("timeout_s", 30.0)),
                   threads=int(application.get("threads", 1)),
                   environment={k: str(v) for k, v in raw.get("environment", {}).items()},
                   deployments={name: dict(deployments.get(name, {})) for name in DEPLOYMENTS})

    def replica_environment(self, environ: dict[str, str] | None = None) -> dict[str, str]:
        """What every replica's process is started with: the file's settings, then the
        deploying process's own ``MEMEUI_*`` (a relative data dir made absolute: replicas run
        elsewhere), and the thread count."""
        environ = os.environ if environ is None else environ
        settings = {**self.environment,
                    **{k: v for k, v in environ.items() if k.startswith("MEMEUI_")}}
        if "MEMEUI_DATA_DIR" in settings:
            settings["MEMEUI_DATA_DIR"] = str(Path(settings["MEMEUI_DATA_DIR"]).resolve())
        settings.pop("MEMEUI_ENGINE", None)  # replicas hold the models themselves
        return {**thread_environment(self.threads), **settings}

    def options(self, name: str, environ: dict[str, str] | None = None) -> dict:
        """``Deployment.options(...)`` for deployment ``name``."""
        table = self.deployments.get(name, {})
        options = {key: table[key] for key in SERVE_OPTIONS if key in table}
        if "autoscaling" in table and "num_replicas" not in table:
            options["autoscaling_config"] = dict(table["autoscaling"])
        actor = {key: table[key] for key in ACTOR_OPTIONS if key in table}
        actor["runtime_env"] = {"env_vars": self.replica_environment(environ)}
        options["ray_actor_options"] = actor
        return options

    def batching(self, name: str) -> dict:
        table = self.deployments.get(name, {})
        return {key: table[key] for key in BATCHING if key in table}


def _check_table(path: Path, name: str, table: dict) -> None:
    known = {*SERVE_OPTIONS, *ACTOR_OPTIONS, *BATCHING, "autoscaling"}
    for key in table:
        if key not in known:
            raise ValueError(f"{path}, [deployments.{name}]: unknown setting {key!r}; known: "
                             f"{', '.join(sorted(known))}")
    for key in table.get("autoscaling", {}):
        if key not in AUTOSCALING:
            raise ValueError(f"{path}, [deployments.{name}].autoscaling: unknown setting {key!r}; "
                             f"known: {', '.join(AUTOSCALING)}")
