"""Hugging Face Spaces: build a ready-to-push Space folder from ``spaces.yaml``.

One source of truth: the README front matter, requirements.txt and the Space's environment all
come from ``spaces.yaml``; nothing about the deployment is written twice.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "spaces.yaml"
SDK_PACKAGES = {"gradio"}  # the Space's sdk installs these at the pinned sdk_version


def load_config(path: Path = CONFIG) -> dict:
    return yaml.safe_load(path.read_text("utf-8"))


def space_keys(config: dict) -> dict:
    """The README front matter: ``space``, plus the hardware and the reply model of the
    ``profile`` (listed under ``models`` and fetched at build time by ``preload_from_hub``;
    a profile without one answers with the default, the corpus replies)."""
    profile = config["profiles"][config.get("profile", "cpu")]
    model = {"models": [profile["reply_model"]], "preload_from_hub": [profile["reply_model"]]} \
        if "reply_model" in profile else {}
    return {**config["space"], "suggested_hardware": profile["suggested_hardware"], **model}


def space_env(config: dict) -> dict[str, str]:
    """The MEMEUI_* settings of the Space: ``env``, and the profile's reply model."""
    profile = (config.get("profiles") or {}).get(config.get("profile", "cpu")) or {}
    model = {"MEMEUI_REPLY_BACKEND": profile["reply_model"]} if "reply_model" in profile else {}
    return {**model, **{key: str(value) for key, value in (config.get("env") or {}).items()}}


def front_matter(config: dict) -> str:
    return "---\n" + yaml.safe_dump(space_keys(config), sort_keys=False, allow_unicode=True) + "---\n"


def requirements(config: dict, pyproject: Path = ROOT / "pyproject.toml") -> list[str]:
    """pyproject's dependencies pinned to the versions installed here (what the project is
    tested with), the sdk's own packages left to the sdk, plus spaces.yaml's extras."""
    declared = tomllib.loads(pyproject.read_text("utf-8"))["project"]["dependencies"]
    kept = [_pinned(req) for req in declared if _name(req) not in SDK_PACKAGES]
    return kept + list(config.get("extra_requirements", []))


def _pinned(requirement: str) -> str:
    """``name==installed version`` (with the requirement's extras and markers kept); the
    requirement as written when it is not installed here (another platform's marker)."""
    from importlib.metadata import PackageNotFoundError, version

    requirement = requirement.split("#")[0].strip()
    spec, _, marker = requirement.partition(";")
    name = re.split(r"[<>=!~ ]", spec, maxsplit=1)[0].strip()
    try:
        pinned = f"{name}=={version(_name(name))}"
    except PackageNotFoundError:
        return requirement
    return f"{pinned}; {marker.strip()}" if marker.strip() else pinned


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
    (out / "packages.txt").write_text("\n".join(config.get("packages", [])) + "\n")
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
    for key, value in space_env(load_config(config_path)).items():
        environ.setdefault(key, value)


# ---------------------------------------------------------------- checks

SLIM_IMAGE_LIBRARIES = {  # in every Debian slim image (libc, the C++ runtime, zlib)
    "ld-linux-x86-64.so.2", "ld-linux-aarch64.so.1", "libc.so.6", "libdl.so.2", "libm.so.6",
    "libpthread.so.0", "librt.so.1", "libutil.so.1", "libgcc_s.so.1", "libstdc++.so.6",
    "libz.so.1"}
GPU_STACK = {"nvidia", "cuda", "triton"}  # wheels whose system libraries only GPU images have
COLOURS = {"red", "yellow", "green", "blue", "indigo", "purple", "pink", "gray"}
SPACE_KEYS = {  # the Spaces configuration reference: key → type
    "title": str, "emoji": str, "colorFrom": str, "colorTo": str, "sdk": str,
    "sdk_version": str, "python_version": str, "app_file": str, "app_port": int,
    "base_path": str, "fullWidth": bool, "header": str, "short_description": str,
    "models": list, "datasets": list, "tags": list, "thumbnail": str, "pinned": bool,
    "hf_oauth": bool, "hf_oauth_scopes": list, "hf_oauth_expiration_minutes": int,
    "hf_oauth_authorized_org": (str, list), "disable_embedding": bool,
    "startup_duration_timeout": str, "custom_headers": dict, "preload_from_hub": list,
    "license": str, "suggested_hardware": str, "suggested_storage": str}
REPO_ID = re.compile(r"^[\w.-]+/[\w.-]+$")


def front_matter_problems(space: dict, bundle: Path, gradio_version: str) -> list[str]:
    """What the Spaces configuration reference would refuse in ``space`` (empty: nothing)."""
    problems = [f"unknown key {key!r}" for key in space if key not in SPACE_KEYS]
    for key, value in space.items():
        if key in SPACE_KEYS and not isinstance(value, SPACE_KEYS[key]):
            problems.append(f"{key} should be {SPACE_KEYS[key]}, not {type(value).__name__}")
    problems += [f"{key} {space[key]!r} is not a Spaces colour" for key in ("colorFrom", "colorTo")
                 if key in space and space[key] not in COLOURS]
    if space.get("sdk") != "gradio":
        problems.append("sdk should be gradio")
    if space.get("sdk_version") != gradio_version:
        problems.append(f"sdk_version {space.get('sdk_version')} is not the gradio the project "
                        f"tests with ({gradio_version})")
    if not (bundle / space.get("app_file", "")).is_file():
        problems.append(f"app_file {space.get('app_file')!r} is not in the bundle")
    if len(space.get("short_description", "")) > 60:
        problems.append("short_description is longer than 60 characters")
    if "suggested_hardware" in space:
        from huggingface_hub import SpaceHardware

        if space["suggested_hardware"] not in {flavour.value for flavour in SpaceHardware}:
            problems.append(f"suggested_hardware {space['suggested_hardware']!r} is not a "
                            "Spaces hardware flavour")
    problems += [f"models: {m!r} is not a repo id" for m in space.get("models", [])
                 if not REPO_ID.match(str(m))]
    problems += [f"preload_from_hub: {entry!r} should be 'repo_id [files] [revision]'"
                 for entry in space.get("preload_from_hub", [])
                 if not REPO_ID.match(str(entry).split()[0] if str(entry).split() else "")]
    return problems


def system_libraries(site_packages: Path, distributions: list | None = None) -> dict[str, set[str]]:
    """Shared libraries the installed wheels link against directly (readelf's NEEDED) that no
    wheel brings: soname → the top-level packages that need it. ``distributions``: only
    theirs (what a Space's requirements.txt installs), not every wheel of this venv (the
    cluster extra's are not in a Space)."""
    site_packages = Path(site_packages).resolve()
    if distributions is None:
        files = [p for p in site_packages.rglob("*.so*") if p.is_file()]
    else:
        files = [Path(d.locate_file(f)).resolve() for d in distributions for f in d.files or []
                 if ".so" in f.name and f.parts[0] != ".."]
        files = [p for p in files if p.is_file() and p.is_relative_to(site_packages)]
    bundled = {p.name for p in files}
    needed: dict[str, set[str]] = {}
    for path in files:
        dynamic = subprocess.run(["readelf", "-d", str(path)], capture_output=True,
                                 text=True).stdout
        for soname in re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", dynamic):
            if soname not in bundled:
                needed.setdefault(soname, set()).add(path.relative_to(site_packages).parts[0])
    return needed


def debian_package(soname: str) -> str | None:
    """The Debian package that installed ``soname`` on this machine, if any."""
    for line in subprocess.run(["ldconfig", "-p"], capture_output=True, text=True).stdout.splitlines():
        match = re.match(rf"\s*{re.escape(soname)} \(.*\) => (\S+)", line)
        if match:
            found = subprocess.run(["dpkg", "-S", os.path.realpath(match.group(1))],
                                   capture_output=True, text=True).stdout
            return found.split(":")[0] or None
    return None


def missing_system_packages(site_packages: Path, packages: list[str],
                            distributions: list | None = None) -> list[str]:
    """What a slim Debian image lacks for the installed wheels (``distributions``' only, if
    given) and ``packages`` (a Space's packages.txt) does not name, one line each; GPU driver
    libraries are left to GPU images."""
    missing = []
    for soname, users in sorted(system_libraries(site_packages, distributions).items()):
        if soname in SLIM_IMAGE_LIBRARIES or soname.startswith("libcuda") or users <= GPU_STACK:
            continue
        package = debian_package(soname)
        if package not in packages:
            missing.append(f"{soname} (Debian {package or 'unknown'}), needed by "
                           f"{', '.join(sorted(users))}: add it to packages in spaces.yaml")
    return missing


def check(out: Path, config_path: Path = CONFIG) -> list[str]:
    """Build the Space into ``out`` and list what would keep it from starting: front matter
    the Spaces reference refuses, system libraries packages.txt lacks."""
    import gradio

    config = load_config(config_path)
    bundle = build(out, config_path)
    site_packages = Path(gradio.__file__).resolve().parent.parent
    return (front_matter_problems(space_keys(config), bundle, gradio.__version__)
            + missing_system_packages(site_packages, list(config.get("packages", [])),
                                      space_distributions(bundle, config)))


def space_distributions(bundle: Path, config: dict) -> list:
    """The installed distributions a Space of ``bundle`` gets: its requirements.txt and the
    gradio of its sdk_version."""
    return requirement_closure([*(Path(bundle) / "requirements.txt").read_text("utf-8").splitlines(),
                                f"gradio=={config['space']['sdk_version']}"])


def requirement_closure(wanted: list[str]) -> list:
    """The installed distributions that ``wanted`` (requirement lines) needs, transitively,
    markers and extras evaluated for this machine. Raises LookupError naming a requirement
    this environment does not satisfy (then only a real install can tell)."""
    from importlib.metadata import PackageNotFoundError, distribution

    from packaging.requirements import Requirement

    found: dict[str, object] = {}
    pending = [(Requirement(line.split("#")[0]), "") for line in wanted
               if line.split("#")[0].strip()]
    while pending:
        requirement, extra = pending.pop()
        if requirement.marker and not requirement.marker.evaluate({"extra": extra}):
            continue
        try:
            dist = distribution(requirement.name)
        except PackageNotFoundError:
            raise LookupError(f"{requirement} is not installed here") from None
        if not requirement.specifier.contains(dist.version, prereleases=True):
            raise LookupError(f"{requirement} is not satisfied by {dist.version} here")
        key = _name(dist.metadata["Name"])
        extras = sorted(requirement.extras)
        if key in found and not extras:
            continue
        found[key] = dist
        for line in dist.requires or []:
            pending += [(Requirement(line), e) for e in ["", *extras]]
    return list(found.values())


def link_requirements(wanted: list[str], site_packages: Path) -> int:
    """Fill a fresh venv's ``site_packages`` with symlinks to exactly the installed files of
    ``wanted``'s closure: the same "only what requirements.txt brings" a pip install gives,
    in seconds instead of minutes of unpacking (the suite's way; ``make spaces-check`` pips).
    Returns the number of files linked."""
    linked = 0
    for dist in requirement_closure(wanted):
        for file in dist.files or []:
            source = Path(dist.locate_file(file)).resolve()
            if file.parts[0] == ".." or "__pycache__" in file.parts or not source.is_file():
                continue  # console scripts, caches
            target = Path(site_packages) / file
            target.parent.mkdir(parents=True, exist_ok=True)
            if not target.exists():
                target.symlink_to(source)
                linked += 1
    return linked


def _site_packages(venv: Path) -> Path:
    return next((Path(venv) / "lib").glob("python*/site-packages"))


def start_check(bundle: Path, timeout: float = 900, install: str = "pip") -> dict:
    """Run the built Space as Spaces would: a fresh venv with only its requirements.txt and the
    gradio of ``sdk_version``, ``app.py`` started with the Spaces variables, then ``/search``
    and ``/chat`` through ``gradio_client``. The reply backend is ``retrieval`` here: the
    profile's model comes from the Hub, which this check must not reach. ``install``: ``pip``
    installs from the index as Spaces does; ``link`` links the same distributions from this
    environment (see ``link_requirements``). Returns what it saw; raises RuntimeError with the
    app's output when it does not start or answer."""
    import socket
    import sys
    import time

    from gradio_client import Client

    bundle = Path(bundle).resolve()
    config = load_config(bundle / "spaces.yaml")
    venv = bundle.parent / f"{bundle.name}-venv"
    wanted = [*(bundle / "requirements.txt").read_text("utf-8").splitlines(),
              f"gradio=={config['space']['sdk_version']}"]  # space_distributions' lines
    if not (venv / "bin" / "python").exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        if install == "link":
            link_requirements(wanted, _site_packages(venv))
        else:
            subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", *wanted], check=True)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    environ = {**{k: v for k, v in os.environ.items() if not k.startswith("MEMEUI_")},
               "SPACE_ID": "memeui/check", "GRADIO_SERVER_NAME": "127.0.0.1",
               "GRADIO_SERVER_PORT": str(port), "MEMEUI_REPLY_BACKEND": "retrieval",
               "MEMEUI_RETRIEVAL_CONVERSATIONS": "50", "MEMEUI_DATA_DIR": str(bundle / "data"),
               "HF_HUB_OFFLINE": "1"}
    log = bundle.parent / f"{bundle.name}.log"
    with log.open("w") as output:
        process = subprocess.Popen([str(venv / "bin" / "python"), "app.py"], cwd=bundle,
                                   env=environ, stdout=output, stderr=subprocess.STDOUT)
    try:
        url, deadline = f"http://127.0.0.1:{port}/", time.monotonic() + timeout
        while True:
            try:
                client = Client(url, verbose=False)
                break
            except Exception:  # noqa: BLE001 - not up yet
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the Space did not start:\n{log.read_text()[-4000:]}") from None
                time.sleep(2)
        _, results = client.predict("I am so happy today", 3, "any", api_name="/search")
        reply = client.predict("I just failed my exam", [], api_name="/chat")
        return {"search": [r["label"] for r in results], "reply": reply["text"],
                "sticker": (reply.get("sticker") or {}).get("label")}
    finally:
        process.terminate()
        process.wait(timeout=60)
