"""A Ray head on this machine with the Serve application on it (`memeui cluster up|status|
down`); on Kubernetes, KubeRay's RayService runs the config `serve build` writes.

Ray binds its head to the machine's address, not loopback (it resolves 127.0.0.1 away on
purpose); Ray 2.60 turns token authentication on for it, so only a process holding the token
(``~/.ray/auth_token``, written by ``ray start``) can join or call it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from engine.cluster.config import ClusterConfig

HEAD_PORT = 6380  # not Redis's 6379, which a developer machine may run
ADDRESS_FILE = Path("/tmp/ray/ray_current_cluster")  # where `ray start` says where it is


def ray_command(*args: str) -> list[str]:
    return [str(Path(sys.executable).with_name("ray")), *args]


def start_head(port: int = HEAD_PORT, cpus: int | None = None) -> str:
    """``ray start --head`` (no dashboard, no usage report, token authentication); returns
    its address. A machine without a token gets one first (``~/.ray/auth_token``): Ray 2.60
    refuses to start a head with token authentication and none."""
    token = subprocess.run(ray_command("get-auth-token", "--generate"), capture_output=True,
                           text=True, timeout=120)
    if token.returncode != 0:
        raise RuntimeError(f"could not make a Ray token: {token.stderr.strip()[-2000:]}")
    done = subprocess.run(ray_command(
        "start", "--head", f"--port={port}",
        f"--num-cpus={cpus or os.cpu_count() or 1}", "--include-dashboard=false",
        "--disable-usage-stats"), capture_output=True, text=True, timeout=180,
        env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"})
    if done.returncode != 0:
        raise RuntimeError(f"ray start failed: {done.stderr.strip()[-2000:] or done.stdout.strip()[-2000:]}")
    return ADDRESS_FILE.read_text().strip()


def deploy(address: str, config: ClusterConfig, wait_s: float = 600) -> dict:
    """The application of ``config`` on the cluster at ``address``, with no HTTP proxy (app
    processes call it through handles); returns ``status`` once every deployment is healthy."""
    from engine.cluster.client import connect

    connect(address)  # first: it says how Ray authenticates before Ray loads
    from ray import serve

    from engine.cluster.deployments import build_app

    serve.start(http_options={"location": "NoServer"})
    serve.run(build_app(config), name=config.name, route_prefix=None, blocking=False)
    deadline = time.monotonic() + wait_s
    while True:
        state = status(config.name)
        if state["status"] == "RUNNING":
            return state
        if state["status"] in ("DEPLOY_FAILED", "UNHEALTHY") or time.monotonic() > deadline:
            raise RuntimeError(f"the application did not start: {json.dumps(state)}")
        time.sleep(1)


def status(name: str = "memeui") -> dict:
    """The application's status, each deployment's and its replicas' (by state)."""
    from ray import serve

    application = serve.status().applications.get(name)
    if application is None:
        return {"application": name, "status": "NOT_DEPLOYED", "deployments": {}}
    return {"application": name, "status": str(application.status.value
                                                  if hasattr(application.status, "value") else application.status),
            "deployments": {
                deployment: {"status": str(getattr(d.status, "value", d.status)),
                             "replicas": {str(getattr(k, "value", k)): n for k, n in d.replica_states.items()},
                             "message": d.message}
                for deployment, d in application.deployments.items()}}


def stop_head() -> None:
    subprocess.run(ray_command("stop", "--force"), capture_output=True, timeout=120)
