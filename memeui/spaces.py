"""Hugging Face Spaces: build a ready-to-push Space folder from ``spaces.yaml``.

One source of truth: the README front matter, requirements.txt and the Space's environment all
come from ``spaces.yaml``; nothing about the deployment is written twice.
"""

from __future__ import annotations

import os
import re
import shutil
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "spaces.yaml"
SDK_PACKAGES = {"gradio"}  # the Space's sdk installs these at the pinned sdk_version


def load_config(path: Path = CONFIG) -> dict:
    return yaml.safe_load(path.read_text("utf-8"))


def front_matter(config: dict) -> str:
    return "---\n" + yaml.safe_dump(config["space"], sort_keys=False, allow_unicode=True) + "---\n"


def requirements(config: dict, pyproject: Path = ROOT / "pyproject.toml") -> list[str]:
    declared = tomllib.loads(pyproject.read_text("utf-8"))["project"]["dependencies"]
    kept = [req for req in declared if _name(req) not in SDK_PACKAGES]
    return kept + list(config.get("extra_requirements", []))


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def build(out: Path, config_path: Path = CONFIG) -> Path:
    """Write the Space into ``out`` (replacing what is there) and return it."""
    config = load_config(config_path)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    for name in config["files"]:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, out / name,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        elif source.exists():
            shutil.copy2(source, out / name)
    shutil.copy2(config_path, out / "spaces.yaml")
    (out / "requirements.txt").write_text("\n".join(requirements(config)) + "\n")
    body = (ROOT / "README.md").read_text("utf-8") if (ROOT / "README.md").exists() else ""
    (out / "README.md").write_text(front_matter(config) + "\n" + body, "utf-8")
    return out


PERSISTENT_STORAGE = Path("/data")  # where a Space with persistent storage mounts it


def apply_space_env(config_path: Path = CONFIG, environ=os.environ,
                    storage: Path = PERSISTENT_STORAGE) -> None:
    """On a Space (SPACE_ID is set), default the MEMEUI_* settings from spaces.yaml; a Space
    with persistent storage keeps its data dir there (variables set in the Space's settings
    page win over both)."""
    if "SPACE_ID" not in environ or not config_path.exists():
        return
    if storage.is_dir() and os.access(storage, os.W_OK):
        environ.setdefault("MEMEUI_DATA_DIR", str(storage / "memeui"))
    for key, value in (load_config(config_path).get("env") or {}).items():
        environ.setdefault(key, str(value))
