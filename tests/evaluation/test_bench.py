"""Every `memeui bench …` command at tiny size, so a change that breaks one fails here (the
figures themselves are the benchmarks' business, not the tests')."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from conftest import memeui_main

TESTS = Path(__file__).resolve().parents[1]


def bench_names() -> list[str]:
    from memeui.cli import build_parser

    bench = build_parser()._subparsers._group_actions[0].choices["bench"]
    return list(next(a for a in bench._actions if a.dest == "name").choices)


def test_every_bench_command_has_a_smoke_test():
    sources = "\n".join(path.read_text(encoding="utf-8") for path in TESTS.rglob("test_*.py"))
    for name in bench_names():
        called = re.search(rf'"bench", "{name}"', sources) or \
            re.search(rf"from bench\.{name} import (run|\w+, run)\b", sources)
        assert called, f"`memeui bench {name}` has no smoke test"


@pytest.mark.slow
def test_bench_chat_at_tiny_size(data_dir, warm_engine):
    done = memeui_main(data_dir, "bench", "chat", "--json", "--queries", "4")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["turns"] == 4 and result["clients"] == 16
    assert 0 < result["retrieval_turn_p50_ms"] <= result["retrieval_turn_p95_ms"]
    assert result["smollm2_turn_p50_ms"] > 0 and result["concurrency_speedup"] > 0
    assert result["smollm2_turns"] == 4 and result["smollm2_ms_per_token"] > 0


@pytest.mark.slow
def test_bench_load_at_tiny_size(data_dir, warm_engine, monkeypatch):
    from bench.load import run

    monkeypatch.setenv("MEMEUI_DATA_DIR", str(data_dir))
    monkeypatch.setenv("MEMEUI_LOG_LEVEL", "WARNING")
    result = run(kills=1, seconds_between=(1.0, 2.0))  # one kill, a second or two apart
    assert result["kills"] == 1 and result["acked"] > 0
    assert result["lost"] == 0 and result["duplicates"] == 0 and result["jobs_left_running"] == 0


@pytest.mark.slow
def test_bench_soak_at_tiny_size(data_dir, warm_engine):
    done = memeui_main(data_dir, "bench", "soak", "--json", "--seconds", "5")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["requests"] > 10 and result["rounds"] >= 2
    assert 0 < result["rss_mb_after_start"] <= result["rss_mb_peak"]
    assert result["rss_mb_after_warmup"] > 0 and result["rss_mb_end"] > 0
    assert {"growth_pct", "growth_mb_per_100_requests"} <= set(result)
