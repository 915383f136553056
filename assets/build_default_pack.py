"""Build the default sticker pack from two MIT-licensed npm packages.

Images come from ``@lobehub/fluent-emoji-3d`` (Microsoft's Fluent Emoji, 3D style), English and
Chinese labels, tags, group and subgroup from ``emojibase-data``. The result is committed under
``assets/stickers/fluent-emoji-3d`` so that running the app needs neither npm nor the network.

    python assets/build_default_pack.py            # fetches the packages with `npm pack`
    python assets/build_default_pack.py --npm-dir DIR   # DIR holds the two unpacked packages

Skin-tone variants are left out on purpose: they would fill search results with five copies of
the same gesture.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

from PIL import Image

IMAGES_PACKAGE = "@lobehub/fluent-emoji-3d@1.1.0"
LABELS_PACKAGE = "emojibase-data@17.0.0"
PACK_DIR = Path(__file__).resolve().parent / "stickers" / "fluent-emoji-3d"


def fetch_npm_packages(workdir: Path) -> Path:
    """`npm pack` both packages into workdir and unpack them; returns workdir."""
    for spec in (IMAGES_PACKAGE, LABELS_PACKAGE):
        subprocess.run(["npm", "pack", spec, "--silent"], cwd=workdir, check=True,
                       stdout=subprocess.DEVNULL)
    for tgz in workdir.glob("*.tgz"):
        target = workdir / ("images" if "fluent" in tgz.name else "labels")
        with tarfile.open(tgz) as archive:
            archive.extractall(target, filter="data")
    return workdir


def normalise_hexcode(hexcode: str) -> str:
    """Emojibase drops the FE0F variation selector where the image file names keep it."""
    return "-".join(part for part in hexcode.upper().split("-") if part != "FE0F")


def load_labels(labels_dir: Path, locale: str) -> dict[str, dict]:
    entries = json.loads((labels_dir / "package" / locale / "data.json").read_text("utf-8"))
    return {normalise_hexcode(entry["hexcode"]): entry for entry in entries}


def encode_sticker(source: Path, size: int, quality: int) -> bytes:
    image = Image.open(source).convert("RGBA").resize((size, size), Image.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, "WEBP", quality=quality, method=6)
    return buffer.getvalue()


def build(npm_dir: Path, out_dir: Path, size: int, quality: int) -> list[dict]:
    """Write images/ and pack.json into out_dir; returns the sticker entries."""
    groups = json.loads((npm_dir / "labels/package/meta/groups.json").read_text("utf-8"))
    english, chinese = load_labels(npm_dir / "labels", "en"), load_labels(npm_dir / "labels", "zh")
    if out_dir.exists():
        shutil.rmtree(out_dir)
    (out_dir / "images").mkdir(parents=True)
    stickers: dict[str, dict] = {}
    for source in sorted((npm_dir / "images/package/assets").glob("*.webp")):
        key = normalise_hexcode(source.stem)
        entry = english.get(key)
        if entry is None or "group" not in entry:
            continue  # skin-tone variants and components have no entry of their own
        data = encode_sticker(source, size, quality)
        sticker_id = hashlib.sha256(data).hexdigest()[:16]
        if sticker_id in stickers:  # the same picture under two names: one sticker, both names
            stickers[sticker_id]["tags"] += [entry["label"], *entry.get("tags", [])]
            continue
        file_name = f"{source.stem}.webp"
        (out_dir / "images" / file_name).write_bytes(data)
        zh = chinese.get(key, {})
        stickers[sticker_id] = {
            "id": sticker_id,
            "file": f"images/{file_name}",
            "emoji": entry["emoji"],
            "label": entry["label"],
            "tags": entry.get("tags", []),
            "label_zh": zh.get("label", ""),
            "tags_zh": zh.get("tags", []),
            "group": groups["groups"][str(entry["group"])],
            "subgroup": groups["subgroups"][str(entry["subgroup"])],
        }
    manifest = {
        "name": "fluent-emoji-3d",
        "sources": [IMAGES_PACKAGE, LABELS_PACKAGE],
        "licence": "MIT (see LICENSE.md)",
        "image_size": size,
        "stickers": list(stickers.values()),
    }
    (out_dir / "pack.json").write_text(json.dumps(manifest, ensure_ascii=False, indent=1), "utf-8")
    return list(stickers.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--npm-dir", type=Path, help="folder with unpacked images/ and labels/")
    parser.add_argument("--out", type=Path, default=PACK_DIR)
    parser.add_argument("--size", type=int, default=160)
    parser.add_argument("--quality", type=int, default=80)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        npm_dir = args.npm_dir or fetch_npm_packages(Path(tmp))
        stickers = build(npm_dir, args.out, args.size, args.quality)
    print(f"{len(stickers)} stickers written to {args.out}")


if __name__ == "__main__":
    main()
