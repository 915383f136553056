"""memeui: the Gradio app, CLI and wiring around the shared engine. No ML code here."""

import os

# The app makes no network calls of its own (README, "Settings"): Gradio's usage analytics and
# version check, and the Hub client's telemetry, stay off unless a user turns them on.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
