"""`memeui` as a user runs it: stdout is JSON only, logs on stderr, bad input exits 2."""

import json
import subprocess

import pytest

from conftest import MEMEUI, ROOT, free_port, memeui_env, memeui_main, run_memeui
from engine.settings import THREAD_VARIABLES


@pytest.mark.slow
def test_search_json(data_dir, engine):
    engine.live.get()  # share the built index with the subprocess
    done = run_memeui(data_dir, "search", "I am so happy today", "-k", "5", "--json")
    assert done.returncode == 0, done.stderr
    results = json.loads(done.stdout)
    assert len(results) == 5
    for result in results:
        assert {"id", "label", "score", "path", "emotion"} <= set(result)
    assert results[0]["emotion"] == "joy"


def test_chat_json(data_dir, engine):
    engine.live.get()
    done = memeui_main(data_dir, "chat", "--json", "I just failed my exam")
    assert done.returncode == 0, done.stderr
    reply = json.loads(done.stdout)
    assert {"text", "sticker", "mood", "alternatives", "timings_ms"} <= set(reply)
    assert reply["text"].strip()
    assert {"id", "label", "score", "path", "emotion"} <= set(reply["sticker"])
    assert abs(sum(reply["mood"].values()) - 1) < 1e-3
    assert all({"id", "label", "score"} <= set(alt) for alt in reply["alternatives"])


def test_bad_input_exits_2_with_a_message(data_dir):
    done = memeui_main(data_dir, "search", "   ", "--json")
    assert done.returncode == 2
    assert "empty" in done.stderr
    assert done.stdout == ""
    done = memeui_main(data_dir, "search", "hello", "-k", "0")
    assert done.returncode == 2 and "-k" in done.stderr


def test_bench_search_prints_latency_json(data_dir, engine):
    engine.live.get()
    done = memeui_main(data_dir, "bench", "search", "--json", "--queries", "20",
                      "--knn-vectors", "20000", "--ingest-stickers", "10")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["queries"] == 20
    assert 0 < result["query_p50_ms"] <= result["query_p95_ms"]
    assert result["knn_1m_vectors"] == 20000 and result["knn_1m_index"] == "HNSW32,Flat"
    assert 0.5 < result["knn_1m_recall_at_10"] <= 1.0
    assert result["ingest_per_s"] > 0 and result["ingest_ocr_per_s"] > 0


def test_bench_emotion_prints_forecast_latency_json(data_dir, engine):
    done = memeui_main(data_dir, "bench", "emotion", "--json", "--queries", "12")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["forecasts"] == 12 and result["turns"] == 20
    assert 0 < result["forecast_p50_ms"] <= result["forecast_p95_ms"]
    assert result["forecast_new_turn_p50_ms"] > 0 and result["forecast_cold_p50_ms"] > 0
    assert isinstance(result["fit_seconds"], dict)


def test_chat_json_with_the_retrieval_backend_and_a_clear_error_from_openai(data_dir, warm_engine,
                                                                          tmp_path):
    corpus = tmp_path / "chats.txt"
    corpus.write_text("A: I failed my exam today\nB: Oh no, you will ace the next one!\n\n"
                      "A: We adopted a puppy!\nB: Aww, what is its name?\n")
    env = {"MEMEUI_RETRIEVAL_CORPUS": str(corpus)}
    done = memeui_main(data_dir, "chat", "--json", "my exam went badly", "--backend", "retrieval",
                       env=env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["text"] == "Oh no, you will ace the next one!"
    chat = memeui_main(data_dir, "chat", "--backend", "retrieval", env=env,
                       input_text="we got a puppy today!\n\n")
    assert chat.returncode == 0, chat.stderr
    assert "bot: Aww, what is its name?" in chat.stdout and "mood:" in chat.stdout
    port = free_port()
    env = {"MEMEUI_OPENAI_BASE_URL": f"http://127.0.0.1:{port}/v1", "MEMEUI_REPLY_TIMEOUT": "2"}
    done = memeui_main(data_dir, "chat", "--json", "hello", "--backend", "openai", env=env)
    assert done.returncode == 2 and "Could not reach the reply server" in done.stderr
    assert done.stdout == ""


def test_serve_limits_each_operation_to_one_thread_before_the_libraries_load(tmp_path):
    """BLAS reads its thread count once, when numpy loads: set after that, the server ran a
    spinning BLAS thread that took a second core from the requests."""
    probe = (
        "import os, sys\n"
        "import memeui.cli.app as cli\n"
        "from memeui.cli import main\n"
        "def report(**overrides):\n"
        "    from threadpoolctl import threadpool_info\n"
        "    print(sorted({pool['num_threads'] for pool in threadpool_info()}))\n"
        "    sys.exit(0)\n"
        "cli.make_engine = report\n"
        "main(['serve'])\n"
    )
    env = {k: v for k, v in memeui_env(tmp_path).items()
           if k not in (*THREAD_VARIABLES, "MEMEUI_THREADS")}
    done = subprocess.run([str(MEMEUI.parent / "python"), "-c", probe], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[1]"
