"""The app phones nobody: Gradio's analytics and version check and the Hub's telemetry are off
unless a user turns them on."""

import os
import subprocess
import sys

PROBE = ("import memeui.app, gradio.analytics as a, huggingface_hub.constants as h; "
         "print(a.analytics_enabled(), h.HF_HUB_DISABLE_TELEMETRY)")


def probe(**environ: str) -> str:
    env = {k: v for k, v in os.environ.items()
           if k not in ("GRADIO_ANALYTICS_ENABLED", "HF_HUB_DISABLE_TELEMETRY")}
    done = subprocess.run([sys.executable, "-c", PROBE], env={**env, **environ},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_analytics_and_telemetry_are_off_by_default_and_a_user_may_turn_them_on():
    assert probe() == "False True"
    assert probe(GRADIO_ANALYTICS_ENABLED="True", HF_HUB_DISABLE_TELEMETRY="0") == "True False"
