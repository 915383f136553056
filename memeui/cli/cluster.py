"""`memeui cluster up|status|down|build`: the engine on Ray Serve (README, "Past one machine")."""

from __future__ import annotations

import os
from pathlib import Path

from memeui.cli.common import print_json


def add_commands(commands) -> None:
    """The cluster commands."""
    cluster = commands.add_parser("cluster", help="the engine on Ray Serve: a local head, the "
                                  "application, its status (needs pip install '.[cluster]')")
    actions = cluster.add_subparsers(required=True, metavar="ACTION")
    up = actions.add_parser("up", help="start a Ray head on loopback and deploy the engine; "
                            "prints RAY_ADDRESS for `memeui serve --engine ray`")
    up.add_argument("--config", type=Path, help="the settings file (default: "
                    "MEMEUI_CLUSTER_CONFIG or engine/cluster/cluster.toml)")
    up.add_argument("--port", type=int, default=None, help="the head's port (default 6380)")
    up.add_argument("--cpus", type=int, help="CPUs the head offers (default: every core)")
    up.add_argument("--address", help="deploy onto this running cluster instead of starting a head")
    up.set_defaults(run=run_up)
    status = actions.add_parser("status", help="deployments, replicas and their health (JSON)")
    status.add_argument("--config", type=Path)
    status.add_argument("--json", action="store_true", help="(the output is always JSON)")
    status.set_defaults(run=run_status)
    down = actions.add_parser("down", help="remove the application and stop the local head")
    down.set_defaults(run=run_down)
    build = actions.add_parser("build", help="write the Serve config (what a KubeRay RayService "
                               "takes) from the settings file; same as `serve build "
                               "engine.cluster.app:app`")
    build.add_argument("--config", type=Path)
    build.add_argument("-o", "--out", type=Path, required=True)
    build.set_defaults(run=run_build)


def run_up(args) -> int:
    from engine.cluster.config import ClusterConfig
    from engine.cluster.local import HEAD_PORT, deploy, start_head

    config = ClusterConfig.load(args.config)
    address = args.address or start_head(args.port or HEAD_PORT, args.cpus)
    state = deploy(address, config)
    print_json({"ray_address": address, **state})
    return 0


def run_status(args) -> int:
    from engine.cluster.client import connect
    from engine.cluster.config import ClusterConfig
    from engine.cluster.local import status

    connect()
    state = status(ClusterConfig.load(args.config).name)
    print_json(state)
    return 0 if state["status"] == "RUNNING" else 1


def run_down(args) -> int:
    from engine.cluster.local import stop_head

    try:
        from ray import serve

        from engine.cluster.client import connect

        connect()
        serve.shutdown()
    except Exception:  # noqa: BLE001 - nothing is running: stopping the head is all there is
        pass
    stop_head()
    return 0


def run_build(args) -> int:
    import subprocess
    import sys

    env = {**os.environ, **({"MEMEUI_CLUSTER_CONFIG": str(args.config.resolve())} if args.config else {})}
    serve = str(Path(sys.executable).with_name("serve"))
    return subprocess.run([serve, "build", "engine.cluster.app:app", "-o", str(args.out)],
                          env=env).returncode
