"""The engine on Ray Serve: one local Ray head and the application for the module (`memeui
cluster up`, as a user starts it), over a data dir of its own. The cluster answers as one
process does; its status, its Serve config, a promotion reaching the replicas, and a replica
killed mid-use (replaced, the calls it lost told "busy")."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from bench.labels import fresh_data_dir
from engine import Dialogue, Engine, Settings
from engine.cluster.client import ClusterBusy, ClusterEngine
from engine.paths import DEFAULT_PRERECOGNIZER
from engine.training.registry import Registry

pytestmark = [pytest.mark.cluster, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
MEMEUI = Path(sys.executable).parent / "memeui"
QUERIES = ("I failed my exam", "we won the final!!", "a: hi\nb: my bike was stolen, I'm furious",
           "气死我了")
DEPLOYMENTS = {"Encoder", "Stickers", "Emotion", "Reply", "ChatTurn"}


def memeui(env: dict, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([str(MEMEUI), *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def cluster_env(warm_engine, tmp_path_factory):
    """`memeui cluster up` on a data dir of its own (the session's index and caches hard-linked
    in), the retrieval reply backend; yields the environment an app process is started with."""
    data = fresh_data_dir(warm_engine.settings.data_dir, tmp_path_factory.mktemp("cluster-data"))
    env = {**os.environ, "MEMEUI_DATA_DIR": str(data), "MEMEUI_REPLY_BACKEND": "retrieval",
           "MEMEUI_LOG_LEVEL": "WARNING", "RAY_AUTH_MODE": "token"}
    from annotations.local_postgres import free_port

    up = memeui(env, "cluster", "up", "--cpus", "2", "--port", str(free_port()))
    if up.returncode != 0:
        memeui(env, "cluster", "down", timeout=120)
        pytest.fail(f"memeui cluster up failed:\n{up.stderr[-4000:]}")
    env["RAY_ADDRESS"] = json.loads(up.stdout)["ray_address"]
    os.environ["RAY_ADDRESS"], os.environ["RAY_AUTH_MODE"] = env["RAY_ADDRESS"], "token"
    yield env
    import ray

    ray.shutdown()  # connect() turned Ray's auto-connect off: nothing joins Ray again
    os.environ.pop("RAY_ADDRESS", None)
    memeui(env, "cluster", "down", timeout=120)


@pytest.fixture(scope="module")
def settings(cluster_env) -> Settings:
    return Settings.from_env({}, data_dir=Path(cluster_env["MEMEUI_DATA_DIR"]), reply_backend="retrieval")


@pytest.fixture(scope="module")
def through_cluster(settings) -> ClusterEngine:
    engine = ClusterEngine(replace(settings, engine="ray"))
    deadline = time.monotonic() + 180
    while True:  # the replicas load their models after they report healthy
        try:
            engine.search("hello", 1)
            return engine
        except ClusterBusy:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


@pytest.fixture(scope="module")
def in_process(settings) -> Engine:
    return Engine(settings)


def test_the_cluster_answers_as_one_process_does(through_cluster, in_process):
    for query in QUERIES:
        here, there = in_process.search(query, 5), through_cluster.search(query, 5)
        assert [r.id for r in there] == [r.id for r in here], query
        assert [r.score for r in there] == pytest.approx([r.score for r in here], abs=1e-4)
        assert [r.emotion for r in there] == [r.emotion for r in here]
    dialogue = Dialogue.from_transcript(QUERIES[2])
    here, there = in_process.read_emotion(dialogue), through_cluster.read_emotion(dialogue)
    assert there.next_speaker == here.next_speaker
    assert list(there.forecast.values()) == pytest.approx(list(here.forecast.values()), abs=1e-4)
    here, there = in_process.chat(dialogue), through_cluster.chat(dialogue)
    assert (there.text, there.source) == (here.text, "retrieval")
    assert getattr(there.sticker, "id", None) == getattr(here.sticker, "id", None)
    assert [a.id for a in there.alternatives] == [a.id for a in here.alternatives]
    assert there.mood == pytest.approx(here.mood, abs=1e-4)


def test_a_chinese_turn_through_the_cluster_is_read_as_in_process(through_cluster, in_process):
    """Each step's deployment reads the message's language (the ChatTurn replica builds no
    reader of its own): mood, corpus reply, sticker and send threshold as in one process."""
    dialogue = Dialogue.from_transcript("user: 我考试没及格，好难过")
    here, there = in_process.chat(dialogue), through_cluster.chat(dialogue)
    assert (there.text, there.source) == (here.text, "retrieval")
    assert getattr(there.sticker, "id", None) == getattr(here.sticker, "id", None)
    assert there.mood == pytest.approx(here.mood, abs=1e-4)
    assert through_cluster.send_threshold(dialogue) == pytest.approx(in_process.send_threshold(dialogue))


def test_a_chat_turn_streams_through_the_cluster(through_cluster):
    steps = list(through_cluster.chat_stream(Dialogue.from_transcript("user: I got the job!!")))
    assert all(isinstance(step, str) for step in steps[:-1]) and steps[-1].text
    assert steps[-1].timings_ms["total"] > 0


def test_bad_input_is_refused_by_the_replica_as_it_is_in_process(through_cluster):
    with pytest.raises(ValueError, match="unknown emotion 'ecstatic'"):
        through_cluster.search("hello", 3, emotion="ecstatic")
    with pytest.raises(ValueError, match="empty"):
        through_cluster.search("   ", 3)


def test_cluster_status_shows_every_deployment_and_its_replicas(cluster_env, through_cluster):
    status = memeui(cluster_env, "cluster", "status", timeout=120)
    assert status.returncode == 0, status.stderr[-2000:]
    state = json.loads(status.stdout)
    assert state["status"] == "RUNNING" and set(state["deployments"]) == DEPLOYMENTS
    for deployment in state["deployments"].values():
        assert deployment["status"] == "HEALTHY" and deployment["replicas"].get("RUNNING", 0) >= 1


def test_a_promotion_reaches_the_replicas_without_a_restart(settings, through_cluster):
    registry = Registry(settings.data_dir / "registry")
    version = registry.add("prerecognizer", DEFAULT_PRERECOGNIZER, parent=None, snapshot="test",
                           metrics={}, trigger="test")
    before = through_cluster.search(QUERIES[0], 3)
    registry.promote("prerecognizer", version.id, "as `memeui models promote` does")
    deadline = time.monotonic() + 60
    served = {}
    while time.monotonic() < deadline:
        served = {name: through_cluster.versions(name)["prerecognizer"] for name in ("Stickers", "Emotion")}
        if set(served.values()) == {version.id}:
            break
        time.sleep(0.5)
    assert set(served.values()) == {version.id}, served
    assert [r.id for r in through_cluster.search(QUERIES[0], 3)] == [r.id for r in before]  # same weights


def test_a_pack_added_by_an_app_process_reaches_the_replicas(through_cluster, tmp_path):
    """The pack is written into the shared data dir by the app process; the Stickers replicas
    index it within their refresh interval, with no restart, and remove it again."""
    from conftest import write_pack

    source = write_pack(tmp_path / "source", "volcano", ["zorblax quintessence", "lava flow"])
    before = through_cluster.versions("Stickers")["index"]
    through_cluster.add_pack(source, "volcano", ocr=False)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and "volcano" not in {p["name"] for p in through_cluster.list_packs()}:
        time.sleep(0.5)
    assert "volcano" in {p["name"] for p in through_cluster.list_packs()}
    assert through_cluster.versions("Stickers")["index"] != before  # a new index version
    assert "volcano" in {r["pack"] for r in through_cluster.sticker_readings()}  # served there
    assert "volcano" in {s.pack for s in through_cluster.library().stickers}  # read here too
    through_cluster.remove_pack("volcano")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and "volcano" in {p["name"] for p in through_cluster.list_packs()}:
        time.sleep(0.5)
    assert "volcano" not in {p["name"] for p in through_cluster.list_packs()}


def test_a_killed_replica_is_replaced_and_its_lost_calls_are_told_busy(through_cluster):
    pid = through_cluster.versions("Stickers")["pid"]
    os.kill(pid, signal.SIGKILL)
    killed, answered, busy = time.monotonic(), None, []
    while time.monotonic() - killed < 60:
        try:
            through_cluster.search(QUERIES[1], 3)
            if through_cluster.versions("Stickers")["pid"] != pid:
                answered = time.monotonic() - killed
                break
        except ClusterBusy as error:
            busy.append(str(error))
        time.sleep(0.2)
    assert answered is not None and answered <= 30, busy[-3:]
    assert all("Stickers" in message and "try again" in message for message in busy)


def test_serve_build_writes_the_settings_files_sizes(tmp_path):
    config = tmp_path / "cluster.toml"
    source = (ROOT / "engine/cluster/cluster.toml").read_text()
    config.write_text(source.replace("num_gpus = 0          # fractional", "num_gpus = 0.25      # fractional")
                      .replace("autoscaling = { min_replicas = 1, max_replicas = 2, target_ongoing_requests = 8 }",
                               "autoscaling = { min_replicas = 2, max_replicas = 6, target_ongoing_requests = 4 }", 1))
    out = tmp_path / "serve.yaml"
    built = memeui({**os.environ, "MEMEUI_DATA_DIR": str(tmp_path / "data")}, "cluster", "build",
                   "--config", str(config), "-o", str(out), timeout=300)
    assert built.returncode == 0, built.stderr[-3000:]
    import yaml

    application = yaml.safe_load(out.read_text())["applications"][0]
    assert application["import_path"] == "engine.cluster.app:app"
    deployments = {d["name"]: d for d in application["deployments"]}
    assert set(deployments) == DEPLOYMENTS
    assert deployments["Encoder"]["ray_actor_options"]["num_gpus"] == 0.25
    assert deployments["Stickers"]["autoscaling_config"]["max_replicas"] == 6
    env = deployments["Stickers"]["ray_actor_options"]["runtime_env"]["env_vars"]
    assert env["MEMEUI_DATA_DIR"] == str(tmp_path / "data") and env["OMP_NUM_THREADS"] == "1"


def test_a_wrong_setting_in_the_cluster_file_is_named(tmp_path):
    from engine.cluster.config import ClusterConfig

    (tmp_path / "c.toml").write_text("[deployments.Stickers]\nnum_replica = 2\n")
    with pytest.raises(ValueError, match=r"\[deployments.Stickers\]: unknown setting 'num_replica'"):
        ClusterConfig.load(tmp_path / "c.toml")
    (tmp_path / "c.toml").write_text("[deployments.Ranker]\n")
    with pytest.raises(ValueError, match="unknown deployment 'Ranker'"):
        ClusterConfig.load(tmp_path / "c.toml")
    assert np.isfinite(ClusterConfig.load().refresh_s)


# ---------------------------------------------------------------- app processes behind a balancer

NGINX = """
worker_processes 1;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body; proxy_temp_path {dir}/proxy; fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi; scgi_temp_path {dir}/scgi;
    map $http_upgrade $connection_upgrade {{ default upgrade; '' close; }}
{upstream}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://memeui;
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_set_header Host $host;
            proxy_buffering off;
            proxy_read_timeout 300s;
            proxy_next_upstream error timeout non_idempotent;
            add_header X-Memeui-Upstream $upstream_addr always;
        }}
    }}
}}
"""


def nginx_upstream(ports: list[int]) -> str:
    """The README's sticky upstream: one client address, one app process (Gradio keeps a
    session's state in the process that opened it)."""
    servers = "".join(f"        server 127.0.0.1:{port} max_fails=1 fail_timeout=30s;\n" for port in ports)
    return f"    upstream memeui {{\n        hash $remote_addr consistent;\n{servers}    }}"


def label_from(address: str, port: int, key: str, sticker: str, annotator: str) -> tuple[int, str]:
    """``/label`` from the client address ``address``: (event id, the app process that answered)."""
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60, source_address=(address, 0))
    body = json.dumps({"data": ["sticker_emotion", sticker, "joy", annotator, key]})
    connection.request("POST", "/gradio_api/run/label", body, {"Content-Type": "application/json"})
    answer = connection.getresponse()
    payload = answer.read()
    assert answer.status == 200, payload[:300]
    return json.loads(payload)["data"][0]["event"], answer.getheader("X-Memeui-Upstream")


def test_two_app_processes_behind_a_sticky_balancer(cluster_env, through_cluster, postgres_server,
                                                    tmp_path):
    """Two `memeui serve --engine ray` on one Postgres store behind nginx (the README's
    setting): each client address stays with one process, both serve, a Gradio session works
    through it, and when one process dies its clients' next calls go to the other, with no
    acknowledged label lost or written twice."""
    from annotations.local_postgres import free_port
    from annotations.store import LabelStore
    from bench.chat import start_server

    nginx = Path("/usr/sbin/nginx")
    assert nginx.is_file(), "nginx is not installed: `make test` installs it (the cluster-deps target)"
    env = {**cluster_env, "MEMEUI_ENGINE": "ray", "MEMEUI_STORE": postgres_server.create_database("balanced"),
           "MEMEUI_TRAIN_EVERY": "0", "MEMEUI_LABELS_PER_MINUTE": "0"}
    apps = [start_server(env, cwd=ROOT, timeout=300) for _ in range(2)]
    port = free_port()
    ports = [int(url.rstrip("/").rsplit(":", 1)[1]) for _, url in apps]
    (tmp_path / "nginx.conf").write_text(NGINX.format(dir=tmp_path, port=port, upstream=nginx_upstream(ports)))
    balancer = subprocess.Popen([str(nginx), "-c", str(tmp_path / "nginx.conf"), "-p", str(tmp_path)],
                                stderr=subprocess.PIPE, text=True)
    try:
        _wait_for_port(port)
        stickers = [s["id"] for s in through_cluster.sticker_readings()][:16]
        clients = [f"127.0.0.{n}" for n in range(2, 18)]
        acked, served_by = {}, {}
        for round_ in range(3):
            for n, address in enumerate(clients):
                key = f"{address}:{round_}"
                acked[key], upstream = label_from(address, port, key, stickers[n], f"ann-{n}")
                served_by.setdefault(address, set()).add(upstream)
        assert all(len(upstreams) == 1 for upstreams in served_by.values()), served_by  # sticky
        assert len({next(iter(u)) for u in served_by.values()}) == 2  # both processes serve

        from gradio_client import Client

        reply = Client(f"http://127.0.0.1:{port}/", verbose=False).predict("I got the job!!", [],
                                                                           api_name="/chat")
        assert reply["text"]  # a session through the balancer (Gradio's queue, streamed)

        dead = apps[1][0]
        dead.send_signal(signal.SIGKILL)
        dead.wait(timeout=30)
        for n, address in enumerate(clients):
            key = f"{address}:after"
            acked[key], upstream = label_from(address, port, key, stickers[n], f"ann-{n}")
            assert upstream.split(", ")[-1] == f"127.0.0.1:{ports[0]}"  # the live one answered
        store = LabelStore(env["MEMEUI_STORE"])
        keys = [row[0] for row in store._sql("SELECT request_key FROM label_events")]
        assert sorted(keys) == sorted(acked)  # every acknowledged label, once
        store.close()
    finally:
        balancer.terminate()
        balancer.wait(timeout=30)
        for process, _ in apps:
            process.kill()
            process.wait(timeout=30)


def _wait_for_port(port: int, timeout_s: float = 30) -> None:
    import socket

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise RuntimeError(f"nothing listens on {port}")


def test_bench_cluster_at_a_tiny_size(cluster_env, through_cluster):
    """The benchmark's smoke test, on the module's cluster (its last test: it kills a
    replica and an app process): its keys, and nothing acknowledged lost or doubled."""
    from bench.cluster import run

    result = run(annotators=2, chatters=1, seconds=6, address=cluster_env["RAY_ADDRESS"],
                 data_dir=Path(cluster_env["MEMEUI_DATA_DIR"]))
    assert result["app_processes"] == 2 and result["labels_acked"] > 0 and result["chat_served"] > 0
    assert result["lost"] == 0 and result["duplicates"] == 0
    assert 0 < result["replica_recovery_s"] < 120
    assert {"cluster", "in_process"} == set(result["search_p50_ms"]) == set(result["chat_turn_p50_ms"])
