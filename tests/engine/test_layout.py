"""The layout's promises: light faces, the arrows import-linter keeps, commands without models."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "gradio", "transformers", "sentence_transformers")


def loaded_after(code: str, env: dict | None = None) -> dict:
    """Run ``code`` in a fresh interpreter; which heavy packages it loaded, and what it printed."""
    probe = (f"import sys\n{code}\n"
             f"print('LOADED=' + ','.join(m for m in {HEAVY!r} if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          cwd=ROOT, env=env or os.environ.copy(), timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.strip().splitlines()
    return {"loaded": [m for m in lines[-1].removeprefix("LOADED=").split(",") if m],
            "stdout": "\n".join(lines[:-1])}


def test_settings_and_the_label_store_load_no_model_library():
    probe = loaded_after("from engine import Settings\nimport annotations\n"
                         "import annotations.store, annotations.exchange, annotations.agreement\n"
                         "import engine.stickers, engine.emotion, engine.chat, engine.training\n"
                         "Settings.from_env({})")
    assert probe["loaded"] == []


def test_the_engine_face_still_gives_every_name_it_exports():
    import engine
    import engine.chat
    import engine.emotion
    import engine.stickers
    import engine.training

    for package in (engine, engine.stickers, engine.emotion, engine.chat, engine.training):
        for name in package.__all__:
            assert getattr(package, name) is not None, (package.__name__, name)
    assert engine.Settings.__module__ == "engine.settings"
    try:
        engine.NoSuchThing
    except AttributeError as error:
        assert "NoSuchThing" in str(error)
    else:
        raise AssertionError("an unknown name must be an AttributeError")


def test_label_commands_on_a_warm_data_dir_load_no_model(tmp_path):
    """A label written to an item the store knows needs no engine; a command that only reads
    the store, the users file, the jobs or the registry loads none either."""
    from annotations.store import Item
    from memeui.studio import open_store
    from engine import Settings

    store = open_store(Settings.from_env({}, data_dir=tmp_path))
    store.put_items([Item("s1", "sticker_emotion", {"label": "cat"}, "base", 0, "joy", 0.5, "m")])
    store.close()
    env = {**os.environ, "MEMEUI_DATA_DIR": str(tmp_path), "MEMEUI_LOG_LEVEL": "WARNING"}
    probe = loaded_after(
        "from memeui.cli import main\n"
        "assert main(['labels', 'add', '--task', 'sticker_emotion', '--item', 's1', '--label', 'anger',"
        " '--annotator', 'ann']) == 0\n"
        "assert main(['labels', 'add', '--task', 'sticker_emotion', '--item', 'gone', '--label', 'anger',"
        " '--annotator', 'ann']) == 2\n"
        "for command in (['labels', 'stats', '--json'], ['users', 'list'], ['jobs', 'list', '--json'],"
        " ['models', 'list', '--json'], ['labels', 'agreement', '--task', 'sticker_emotion']):\n"
        "    assert main(command) == 0, command\n", env)
    assert probe["loaded"] == []
    event = json.loads(probe["stdout"].split("\n}")[0] + "\n}")
    assert event["event"] == 1


def test_import_linter_keeps_the_arrows():
    lint = Path(sys.executable).parent / "lint-imports"
    done = subprocess.run([str(lint), "--config", str(ROOT / ".importlinter")], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:]
    assert "0 broken" in done.stdout
