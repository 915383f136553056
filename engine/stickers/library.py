"""A sticker and the library of sticker packs the engine serves."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Sticker:
    """One sticker: an image file plus what people and models know about it."""

    id: str  # content hash of the image file
    path: Path
    label: str
    pack: str
    tags: tuple[str, ...] = ()
    emoji: str = ""
    label_zh: str = ""
    tags_zh: tuple[str, ...] = ()
    group: str = ""
    subgroup: str = ""
    ocr: str = ""  # text written in the sticker, all frames
    caption: str = ""
    emotion: str = ""  # a label people gave it, if any
    animated: bool = False

    def text(self, chinese: bool = False) -> str:
        """What the engine reads of the sticker: it stands in for the image in a dialogue.
        ``chinese``: its Chinese label and tags too (for a multilingual text encoder)."""
        tags = ", ".join(tag for tag in self.tags if tag not in self.label)
        parts = [f"{self.label} ({tags})" if tags else self.label]
        if chinese and self.label_zh:
            tags_zh = "，".join(tag for tag in self.tags_zh if tag not in self.label_zh)
            parts.append(f"{self.label_zh}（{tags_zh}）" if tags_zh else self.label_zh)
        parts += [f'"{self.ocr}"' if self.ocr else "", self.caption]
        return ". ".join(part for part in parts if part)

    def signature(self) -> str:
        """Changes when what the index holds of the sticker changes (its text or emotion)."""
        return hashlib.sha256(f"{self.text()}\t{self.emotion}".encode()).hexdigest()[:12]

    def corrected(self, override: dict) -> "Sticker":
        """The sticker with what people corrected (label, tags, OCR text, emotion)."""
        known = {k: v for k, v in override.items() if k in OVERRIDABLE}
        if "tags" in known:
            known["tags"] = tuple(known["tags"])
        return dataclasses.replace(self, **known)


OVERRIDABLE = ("label", "tags", "ocr", "emotion")


@dataclass
class StickerLibrary:
    """All stickers of the configured packs, in a stable order (the order of index rows)."""

    stickers: list[Sticker]
    packs: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.by_id = {sticker.id: sticker for sticker in self.stickers}

    def __len__(self) -> int:
        return len(self.stickers)

    @classmethod
    def load(cls, pack_dirs: tuple[Path, ...] | list[Path],
             overrides: dict[str, dict] | None = None) -> "StickerLibrary":
        """The packs' stickers, with people's corrections (id → fields) applied."""
        stickers: list[Sticker] = []
        names: list[str] = []
        seen: set[str] = set()
        for pack_dir in pack_dirs:
            pack = load_pack(Path(pack_dir))
            names.append(pack[0].pack if pack else Path(pack_dir).name)
            for sticker in pack:
                if sticker.id not in seen:  # the same image in two packs is one sticker
                    seen.add(sticker.id)
                    override = (overrides or {}).get(sticker.id)
                    stickers.append(sticker.corrected(override) if override else sticker)
        return cls(stickers, names)

    def fingerprint(self) -> str:
        """Changes whenever a sticker or its text changes: the key of cached embeddings."""
        digest = hashlib.sha256()
        for sticker in self.stickers:
            digest.update(f"{sticker.id}\t{sticker.signature()}\n".encode())
        return digest.hexdigest()[:16]


def load_pack(pack_dir: Path) -> list[Sticker]:
    """Read a pack folder: ``pack.json`` (written by ``assets/build_default_pack.py`` or by
    ``engine.stickers.ingest``) and the files it names, which must lie inside the folder."""
    manifest_path = pack_dir / "pack.json"
    if not manifest_path.is_file():
        raise FileNotFoundError(f"{pack_dir} is not a sticker pack: no pack.json")
    manifest = json.loads(manifest_path.read_text("utf-8"))
    root = pack_dir.resolve()
    stickers = []
    for entry in manifest["stickers"]:
        path = (root / entry["file"]).resolve()
        if not path.is_relative_to(root):
            raise ValueError(f"{manifest_path}: {entry['file']!r} lies outside the pack")
        stickers.append(Sticker(
            id=entry["id"],
            path=path,
            label=entry["label"],
            pack=manifest["name"],
            tags=tuple(entry.get("tags", ())),
            emoji=entry.get("emoji", ""),
            label_zh=entry.get("label_zh", ""),
            tags_zh=tuple(entry.get("tags_zh", ())),
            group=entry.get("group", ""),
            subgroup=entry.get("subgroup", ""),
            ocr=entry.get("ocr", ""),
            caption=entry.get("caption", ""),
            emotion=entry.get("emotion", ""),
            animated=bool(entry.get("animated", False)),
        ))
    return stickers
