"""The Space bundle is generated from spaces.yaml alone."""

import subprocess
import sys

import pytest
import yaml

from memeui.spaces import (apply_space_env, build, link_requirements, load_config,
                           requirement_closure, space_keys)


def test_bundle_has_front_matter_requirements_and_app_files(tmp_path):
    out = build(tmp_path / "space")
    readme = (out / "README.md").read_text("utf-8")
    assert readme.startswith("---\n")
    front = yaml.safe_load(readme.split("---\n")[1])
    config = load_config()
    assert front == {**config["space"], **space_keys(config)}
    assert "reply_model" not in config["profiles"][config["profile"]]  # corpus replies, as here
    assert "models" not in front and "preload_from_hub" not in front
    gpu = space_keys({**config, "profile": "gpu"})
    assert gpu["preload_from_hub"] == gpu["models"] == [config["profiles"]["gpu"]["reply_model"]]
    assert front["sdk"] == "gradio" and front["app_file"] == "app.py"
    requirements = (out / "requirements.txt").read_text().splitlines()
    assert not any(req.startswith("llm") for req in requirements)  # the model comes from the Hub
    assert any(req.startswith("torch==") for req in requirements)  # pinned as tested
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


def test_the_gpu_helper_is_a_no_op_without_zerogpu_and_applies_spaces_gpu_with_it(monkeypatch):
    import sys
    import types

    from engine.gpu import gpu_task

    def turn(text: str) -> str:
        return text.upper()

    monkeypatch.delitem(sys.modules, "spaces", raising=False)
    monkeypatch.setattr("builtins.__import__", _refusing("spaces"))
    assert gpu_task(30)(turn) is turn
    monkeypatch.undo()
    applied = []
    fake = types.ModuleType("spaces")
    fake.GPU = lambda duration: (lambda function: applied.append(duration) or function)
    monkeypatch.setitem(sys.modules, "spaces", fake)
    assert gpu_task(90)(turn)("hi") == "HI" and applied == [90]


def _refusing(name: str):
    import builtins

    real = builtins.__import__

    def importer(module, *args, **kwargs):
        if module == name:
            raise ImportError(module)
        return real(module, *args, **kwargs)
    return importer


def test_the_front_matter_is_checked_against_the_spaces_reference(tmp_path):
    import gradio

    from memeui.spaces import front_matter_problems

    bundle = build(tmp_path / "space")
    space = space_keys(load_config())
    assert front_matter_problems(space, bundle, gradio.__version__) == []
    config = load_config()
    for profile in config["profiles"]:  # cpu, gpu, ZeroGPU
        assert front_matter_problems(space_keys({**config, "profile": profile}), bundle,
                                     gradio.__version__) == []
    wrong = {**space, "colour": "red", "colorFrom": "mauve", "sdk_version": "5.0.0",
             "suggested_hardware": "a-supercomputer",
             "app_file": "main.py", "hf_oauth": "yes", "models": ["not a repo"],
             "preload_from_hub": ["HuggingFaceTB/SmolLM2-360M-Instruct model.safetensors"]}
    problems = front_matter_problems(wrong, bundle, gradio.__version__)
    assert "unknown key 'colour'" in problems
    assert "colorFrom 'mauve' is not a Spaces colour" in problems
    assert any(p.startswith("sdk_version 5.0.0 is not the gradio") for p in problems)
    assert "app_file 'main.py' is not in the bundle" in problems
    assert "suggested_hardware 'a-supercomputer' is not a Spaces hardware flavour" in problems
    assert any(p.startswith("hf_oauth should be") for p in problems)
    assert "models: 'not a repo' is not a repo id" in problems
    assert not any("preload_from_hub" in p for p in problems)  # that one is well formed


def test_system_libraries_the_wheels_need_are_named_in_packages_txt(tmp_path):
    import shutil

    import gradio
    import pytest

    from memeui.spaces import missing_system_packages, space_distributions

    if not (shutil.which("readelf") and shutil.which("dpkg")):
        pytest.skip("needs readelf and dpkg (Debian binutils)")
    site = gradio.__file__.rsplit("/gradio/", 1)[0]
    config = load_config()
    packages = list(config.get("packages", []))
    bundle = build(tmp_path / "space")
    space = space_distributions(bundle, config)  # what the Space installs, not the cluster extra
    assert missing_system_packages(site, packages, space) == []
    assert (bundle / "packages.txt").read_text().split() == packages
    without = [p for p in packages if p != "libgl1"]
    missing = missing_system_packages(site, without, space)
    assert len(missing) == 1 and missing[0].startswith("libGL.so.1 (Debian libgl1), needed by")


@pytest.mark.slow
def test_the_space_bundle_starts_on_its_own_in_a_fresh_venv(tmp_path):
    """What `make spaces-check` does: only the bundle's requirements.txt (and the sdk's gradio)
    in a fresh venv, app.py started with the Spaces variables, /search and /chat answered. The
    venv's distributions are linked from this one (pip would unpack the same 5 GB for minutes)."""
    from memeui.spaces import check, start_check

    assert check(tmp_path / "space") == []
    seen = start_check(tmp_path / "space", install="link")
    assert len(seen["search"]) == 3 and seen["reply"].strip()


def test_the_linked_venv_holds_the_requirements_closure_and_nothing_else(tmp_path):
    names = {d.metadata["Name"].lower().replace("_", "-") for d in requirement_closure(["gradio-client"])}
    assert {"gradio-client", "httpx", "huggingface-hub"} <= names and "torch" not in names
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp_path / "venv")],
                   check=True)
    site = next((tmp_path / "venv/lib").glob("python*/site-packages"))
    assert link_requirements(["gradio-client"], site) > 0
    python = str(tmp_path / "venv/bin/python")
    assert subprocess.run([python, "-c", "import gradio_client"]).returncode == 0
    refused = subprocess.run([python, "-c", "import numpy"], capture_output=True, text=True)
    assert "No module named 'numpy'" in refused.stderr
    with pytest.raises(LookupError, match="not installed here"):
        requirement_closure(["no-such-distribution-anywhere"])
