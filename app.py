"""Entry point for Hugging Face Spaces and `python app.py`: one Engine, the Blocks app, launch.

Host and port come from Gradio's own GRADIO_SERVER_NAME / GRADIO_SERVER_PORT (Spaces sets them)
or from MEMEUI_HOST / MEMEUI_PORT.
"""

import os

try:  # ZeroGPU's `spaces` must be imported before torch touches CUDA (a no-op elsewhere)
    import spaces  # noqa: F401
except ImportError:
    pass

from engine import Engine, Settings
from memeui.app import build_app, launch, open_studio, start
from memeui.trainer import Trainer
from memeui.spaces import apply_space_env
from memeui.state import state_sync

apply_space_env()
sync = state_sync(Settings.from_env())
if sync is not None:
    sync.restore()  # a Space's fresh disk gets its labels, model versions and packs back
engine = Engine()
studio = open_studio(engine)
trainer = Trainer(studio)
demo = build_app(engine, studio, trainer=trainer)
start(engine, studio, trainer, sync)

if __name__ == "__main__":
    port = os.environ.get("MEMEUI_PORT")
    launch(demo, engine, host=os.environ.get("MEMEUI_HOST"), port=int(port) if port else None)
