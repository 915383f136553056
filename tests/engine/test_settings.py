from pathlib import Path

import pytest

from engine.paths import DEFAULT_PACK
from engine.settings import Settings


def test_defaults_serve_the_bundled_pack_offline():
    settings = Settings.from_env({})
    assert settings.packs == (DEFAULT_PACK,)
    assert settings.data_dir == Path("data")
    assert settings.offline is True


def test_environment_variables_override_defaults(tmp_path):
    settings = Settings.from_env({
        "MEMEUI_DATA_DIR": str(tmp_path),
        "MEMEUI_PACKS": f"{tmp_path / 'a'}:{tmp_path / 'b'}",
        "MEMEUI_MAX_NEW_TOKENS": "12",
        "MEMEUI_EMOTION_WEIGHT": "0.5",
        "MEMEUI_OFFLINE": "no",
    })
    assert settings.data_dir == tmp_path
    assert settings.packs == (tmp_path / "a", tmp_path / "b")
    assert settings.max_new_tokens == 12
    assert settings.emotion_weight == 0.5
    assert settings.offline is False


def test_a_malformed_value_names_the_variable():
    with pytest.raises(ValueError, match="MEMEUI_MAX_NEW_TOKENS"):
        Settings.from_env({"MEMEUI_MAX_NEW_TOKENS": "many"})
