"""Turn a folder, a zip or single files into a sticker pack on disk, safely.

Every file is checked on its own: a corrupt or oversized file is reported and the rest of the
pack still goes in. Archives may not write outside their target (``../``, absolute paths, links)
and may not expand beyond the size limits. Animated stickers (GIF, animated WebP, MP4/WebM) keep
their original file for display and four frames at the quartiles of their length (as PEPE did)
for OCR and image embeddings.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import shutil
import stat
import tempfile
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Callable, Iterator

from PIL import Image, ImageSequence

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".gif"}
VIDEO_SUFFIXES = {".mp4", ".webm"}
METADATA_SUFFIXES = {".csv", ".json"}
PEPE_FRAME_SEPARATOR = "[INTER_FRAME_SEP]"
NEAR_DUPLICATE_BITS = 6  # perceptual hashes this close (of 64 bits) look the same to people
PACK_NAME = re.compile(r"^[\w][\w .-]{0,63}$")


@dataclass(frozen=True)
class Limits:
    """What one sticker and one upload may weigh; beyond it the file is refused, not truncated."""

    max_file_bytes: int = 20 * 1024 * 1024
    max_pixels: int = 4096 * 4096
    max_frames: int = 2000
    max_decoded_pixels: int = 64 * 1024 * 1024  # pixels × frames decoded to read one sticker
    max_archive_files: int = 20_000
    max_archive_bytes: int = 1024 * 1024 * 1024


@dataclass
class Decoded:
    frames: list[Image.Image]  # 1 for a still, 4 quartile frames for an animation
    animated: bool
    width: int
    height: int


@dataclass
class IngestReport:
    """What happened to every file of an upload."""

    pack: str = ""
    added: list[str] = field(default_factory=list)  # sticker ids
    duplicates: list[tuple[str, str]] = field(default_factory=list)  # (file, id it repeats)
    near_duplicates: list[tuple[str, str, int]] = field(default_factory=list)  # (id, id, bits)
    errors: list[tuple[str, str]] = field(default_factory=list)  # (file, why)

    def summary(self) -> str:
        return (f"{self.pack}: {len(self.added)} added, {len(self.duplicates)} exact duplicates "
                f"merged, {len(self.near_duplicates)} near-duplicates, {len(self.errors)} refused")

    def to_dict(self) -> dict:
        return {"pack": self.pack, "added": len(self.added), "duplicates": self.duplicates,
                "near_duplicates": self.near_duplicates, "errors": self.errors}


class IngestError(ValueError):
    """The upload as a whole cannot be read (missing, not a pack, not a safe archive)."""


# ---------------------------------------------------------------- sources: folder, zip, files


def iter_sources(path: Path, limits: Limits) -> Iterator[tuple[str, Callable[[], bytes]]]:
    """(relative name, reader) for every file of a folder, a zip or a single file."""
    path = Path(path)
    if not path.exists():
        raise IngestError(f"{path} does not exist")
    if path.is_dir():
        yield from _folder_sources(path, limits)
    elif zipfile.is_zipfile(path):
        yield from _zip_sources(path, limits)
    else:
        yield path.name, lambda: _read_limited(path, limits)


def _folder_sources(folder: Path, limits: Limits):
    for file in sorted(folder.rglob("*")):
        if file.is_symlink():
            yield str(file.relative_to(folder)), _refuse("links are not followed")
        elif file.is_file():
            yield str(file.relative_to(folder)), lambda file=file: _read_limited(file, limits)


def _read_limited(file: Path, limits: Limits) -> bytes:
    size = file.stat().st_size
    if size > limits.max_file_bytes:
        raise ValueError(f"file is {size:,} bytes; the limit is {limits.max_file_bytes:,}")
    return file.read_bytes()


def read_frames(path: Path, limits: Limits = Limits()) -> list[Image.Image]:
    """The frames of one picture on disk, within the limits (ValueError says why not)."""
    path = Path(path)
    return decode(path.name, _read_limited(path, limits), limits).frames


def _refuse(reason: str) -> Callable[[], bytes]:
    def reader() -> bytes:
        raise ValueError(reason)
    return reader


def _zip_sources(archive_path: Path, limits: Limits):
    archive = zipfile.ZipFile(archive_path)  # stays open while its readers live
    members = [m for m in archive.infolist() if not m.is_dir()]
    if len(members) > limits.max_archive_files:
        raise IngestError(f"the archive holds {len(members):,} files; "
                          f"the limit is {limits.max_archive_files:,}")
    total = sum(member.file_size for member in members)
    if total > limits.max_archive_bytes:
        raise IngestError(f"the archive expands to {total:,} bytes; "
                          f"the limit is {limits.max_archive_bytes:,}")
    for member in members:
        problem = unsafe_member(member)
        if problem:
            yield member.filename, _refuse(problem)
        else:
            yield member.filename, lambda m=member: _read_member(archive, m, limits)


def unsafe_member(member: zipfile.ZipInfo) -> str | None:
    """Why an archive entry may not be unpacked, or None when it is safe."""
    name = member.filename.replace("\\", "/")
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        return "absolute paths are refused"
    if ".." in PurePosixPath(name).parts:
        return "paths leaving the archive (../) are refused"
    if stat.S_ISLNK(member.external_attr >> 16):
        return "links are refused"
    return None


def _read_member(archive: zipfile.ZipFile, member: zipfile.ZipInfo, limits: Limits) -> bytes:
    if member.file_size > limits.max_file_bytes:
        raise ValueError(f"file is {member.file_size:,} bytes; "
                         f"the limit is {limits.max_file_bytes:,}")
    with archive.open(member) as stream:  # the header may lie: never read past the limit
        data = stream.read(limits.max_file_bytes + 1)
    if len(data) > limits.max_file_bytes:
        raise ValueError(f"file expands past {limits.max_file_bytes:,} bytes")
    return data


# ---------------------------------------------------------------- decoding


def decode(name: str, data: bytes, limits: Limits) -> Decoded:
    """Frames of an image or video, within the limits; ValueError says why not."""
    suffix = PurePosixPath(name).suffix.lower()
    if suffix in VIDEO_SUFFIXES:
        return _decode_video(suffix, data, limits)
    return _decode_image(data, limits)


def _decode_image(data: bytes, limits: Limits) -> Decoded:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError:  # Pillow's own guard, far above ours
        raise ValueError(f"image has more than {2 * Image.MAX_IMAGE_PIXELS:,} pixels; the "
                         f"limit is {limits.max_pixels:,}") from None
    except Exception:
        raise ValueError("not an image this app can read (PNG, JPEG, WebP, GIF, MP4, WebM)") from None
    width, height = image.size
    if width * height > limits.max_pixels:  # checked before decoding any pixel
        raise ValueError(f"image is {width}×{height} pixels; the limit is {limits.max_pixels:,}")
    frame_count = _frame_count(image, width * height, limits)
    try:
        if frame_count == 1:
            frames = [image.convert("RGBA")]
        else:
            wanted = set(quartile_frames(frame_count))
            frames = [frame.convert("RGBA") for i, frame in enumerate(ImageSequence.Iterator(image))
                      if i in wanted]
    except Exception as error:
        raise ValueError(f"the image is corrupt ({error.__class__.__name__})") from None
    return Decoded(frames, frame_count > 1, width, height)


def _frame_count(image: Image.Image, canvas: int, limits: Limits) -> int:
    """The frames of an animation, counted without decoding more than the limits allow:
    Pillow composites every frame onto the whole canvas as it seeks, so a tiny file of
    thousands of one-pixel frames on a huge canvas costs canvas × frames."""
    if not getattr(image, "is_animated", False):
        return 1
    most = min(limits.max_frames, max(1, limits.max_decoded_pixels // max(canvas, 1)))
    try:
        image.seek(most)  # past the budget: the animation is too big to read
    except EOFError:
        return image.n_frames  # within the budget (the seek above counted them)
    except Exception as error:
        raise ValueError(f"the image is corrupt ({error.__class__.__name__})") from None
    if most == limits.max_frames:
        raise ValueError(f"animation has more than {limits.max_frames} frames; the limit is "
                         f"{limits.max_frames}")
    raise ValueError(f"animation has more than {most} frames of {canvas:,} pixels; the limit "
                     f"is {limits.max_decoded_pixels:,} pixels × frames")


def _decode_video(suffix: str, data: bytes, limits: Limits) -> Decoded:
    import imageio.v2 as imageio

    with tempfile.NamedTemporaryFile(suffix=suffix) as tmp:
        tmp.write(data)
        tmp.flush()
        try:
            reader = imageio.get_reader(tmp.name, format="ffmpeg")
            width, height = reader.get_meta_data()["size"]
            if width * height > limits.max_pixels:
                raise ValueError(f"video is {width}×{height} pixels; "
                                 f"the limit is {limits.max_pixels:,}")
            count = reader.count_frames()
            if count > limits.max_frames:
                raise ValueError(f"video has {count} frames; the limit is {limits.max_frames}")
            frames = [Image.fromarray(reader.get_data(i)).convert("RGBA")
                      for i in quartile_frames(count)]
            reader.close()
        except ValueError:
            raise
        except Exception as error:
            raise ValueError(f"the video cannot be read ({error.__class__.__name__})") from None
    return Decoded(frames, True, width, height)


def on_white(image: Image.Image, size: int | None = None) -> Image.Image:
    """An opaque RGB copy with transparency flattened onto white (OCR models and image towers
    expect opaque pictures), resized to size×size when asked."""
    background = Image.new("RGBA", image.size, (255, 255, 255, 255))
    flat = Image.alpha_composite(background, image.convert("RGBA")).convert("RGB")
    return flat.resize((size, size), Image.BILINEAR) if size else flat


def quartile_frames(count: int) -> list[int]:
    """Indices of the frames at 0, ¼, ½ and ¾ of an animation (fewer for short ones)."""
    return sorted({min(count - 1, (count * q) // 4) for q in range(4)}) if count > 0 else []


def perceptual_hash(image: Image.Image) -> int:
    """64-bit difference hash: robust to resizing and re-encoding, not to cropping."""
    pixels = list(image.convert("L").resize((9, 8), Image.LANCZOS).getdata())
    bits = 0
    for row in range(8):
        for col in range(8):
            bits = (bits << 1) | (pixels[row * 9 + col] > pixels[row * 9 + col + 1])
    return bits


# ---------------------------------------------------------------- metadata sidecars


def parse_metadata(name: str, data: bytes) -> dict[str, dict]:
    """Sidecar records keyed by file name (and stem), from any of the supported formats:
    a CSV/JSON with ``file, label, tags, caption, emotion``; MOD's meme catalogue
    ``{"<id>": {"ocr", "name"}}``; PEPE's GIF CSV ``gif_id, ocr_text, tags``."""
    text = data.decode("utf-8-sig")
    if name.lower().endswith(".json"):
        rows = _json_rows(json.loads(text))
    else:
        rows = list(csv.DictReader(io.StringIO(text)))
    records = {}
    for row in rows:
        record = _normalise_row(row)
        if record.get("file"):
            records[record["file"]] = record
    return records


def _json_rows(value) -> list[dict]:
    if isinstance(value, list):
        return [row for row in value if isinstance(row, dict)]
    if isinstance(value, dict):  # MOD: {"<id>": {"ocr", "name"}}, or {"<file>": {...}}
        return [{"file": key, **row} if "name" not in row else {"mod_id": key, **row}
                for key, row in value.items() if isinstance(row, dict)]
    raise ValueError("metadata JSON must be a list of objects or an object of objects")


def _normalise_row(row: dict) -> dict:
    row = {str(k).strip().lower(): v for k, v in row.items() if k is not None}
    file = row.get("file") or row.get("name") or row.get("gif_id") or ""
    if row.get("gif_id") and not PurePosixPath(str(file)).suffix:
        file = f"{file}.gif"  # PEPE names GIFs by id
    ocr = str(row.get("ocr") or row.get("ocr_text") or "")
    ocr = " / ".join(part.strip() for part in ocr.split(PEPE_FRAME_SEPARATOR) if part.strip())
    label = str(row.get("label") or "") or PurePosixPath(str(file)).stem
    return {
        "file": str(file),
        "label": label,
        "tags": _split_tags(row.get("tags")),
        "caption": str(row.get("caption") or ""),
        "emotion": str(row.get("emotion") or ""),
        "ocr": ocr,
    }


def _split_tags(value) -> list[str]:
    if isinstance(value, list):
        return [str(tag).strip() for tag in value if str(tag).strip()]
    return [tag.strip() for tag in re.split(r"[|;,]", str(value or "")) if tag.strip()]


def lookup_metadata(records: dict[str, dict], name: str) -> dict:
    path = PurePosixPath(name.replace("\\", "/"))
    for key in (name, path.name, path.stem):
        if key in records:
            return records[key]
    return {}


# ---------------------------------------------------------------- building a pack


def check_pack_name(name: str) -> str:
    name = (name or "").strip()
    if not PACK_NAME.match(name):
        raise IngestError(f"pack name {name!r} must be 1-64 letters, digits, spaces, '.', '_' "
                          "or '-', starting with a letter or digit")
    return name


def build_pack(
    source: Path,
    target: Path,
    name: str,
    limits: Limits = Limits(),
    ocr: Callable[[list[Image.Image]], str] | None = None,
    known_ids: set[str] = frozenset(),
    progress: Callable[[float, str], None] = lambda fraction, message: None,
) -> IngestReport:
    """Write the pack ``name`` from ``source`` into the folder ``target`` (pack.json + files).

    ``known_ids`` are stickers already in the library: the same image again is merged, not
    added twice. ``ocr`` reads text from a sticker's frames; None skips OCR.
    """
    name = check_pack_name(name)
    sources = list(iter_sources(source, limits))
    report = IngestReport(pack=name)
    metadata = _read_sidecars(sources, report)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=target.parent))
    (staging / "files").mkdir()
    entries: dict[str, dict] = {}
    hashes: dict[str, int] = {}
    media = [(n, read) for n, read in sources if _is_media(n)]
    for done, (file_name, read) in enumerate(media):
        progress(done / max(len(media), 1), file_name)
        try:
            entry, phash = _ingest_one(file_name, read(), limits, metadata, ocr)
        except Exception as error:  # one bad file never stops the pack
            report.errors.append((file_name, str(error) or error.__class__.__name__))
            continue
        if entry["id"] in entries or entry["id"] in known_ids:
            report.duplicates.append((file_name, entry["id"]))
            continue
        for other_id, other_hash in hashes.items():
            distance = bin(phash ^ other_hash).count("1")
            if distance <= NEAR_DUPLICATE_BITS:
                report.near_duplicates.append((other_id, entry["id"], distance))
        hashes[entry["id"]] = phash
        (staging / entry["file"]).write_bytes(entry.pop("_data"))
        entries[entry["id"]] = entry
        report.added.append(entry["id"])
    for file_name, _ in sources:
        if not _is_media(file_name) and not _is_sidecar(file_name):
            report.errors.append((file_name, "not a sticker format (PNG, JPEG, WebP, GIF, "
                                             "MP4, WebM) nor metadata (CSV, JSON)"))
    if not entries:
        shutil.rmtree(staging)
        reasons = [f"{file}: {why}" for file, why in report.errors[:5]]
        if report.duplicates:
            reasons.append(f"{len(report.duplicates)} already in the library")
        raise IngestError(f"nothing new was added, so no pack {name!r} was made ("
                          + ("; ".join(reasons) or "the upload has no stickers") + ")")
    manifest = {"name": name, "sources": [Path(source).name],  # never a server path
                "stickers": list(entries.values())}
    (staging / "pack.json").write_text(json.dumps(manifest, ensure_ascii=False, indent=1), "utf-8")
    if target.exists():
        shutil.rmtree(target)
    staging.rename(target)
    progress(1.0, report.summary())
    return report


def _is_media(name: str) -> bool:
    return PurePosixPath(name).suffix.lower() in IMAGE_SUFFIXES | VIDEO_SUFFIXES


def _is_sidecar(name: str) -> bool:
    return PurePosixPath(name).suffix.lower() in METADATA_SUFFIXES


def _read_sidecars(sources, report: IngestReport) -> dict[str, dict]:
    records: dict[str, dict] = {}
    for file_name, read in sources:
        if _is_sidecar(file_name):
            try:
                records.update(parse_metadata(file_name, read()))
            except Exception as error:
                report.errors.append((file_name, f"metadata unreadable: {error}"))
    return records


def _ingest_one(file_name, data, limits, metadata, ocr) -> tuple[dict, int]:
    decoded = decode(file_name, data, limits)
    sticker_id = hashlib.sha256(data).hexdigest()[:16]
    meta = lookup_metadata(metadata, file_name)
    ocr_text = meta.get("ocr") or (ocr(decoded.frames) if ocr else "")
    suffix = PurePosixPath(file_name).suffix.lower()
    entry = {
        "id": sticker_id,
        "file": f"files/{sticker_id}{suffix}",
        "label": meta.get("label") or PurePosixPath(file_name).stem.replace("_", " "),
        "tags": meta.get("tags", []),
        "caption": meta.get("caption", ""),
        "emotion": meta.get("emotion", ""),
        "ocr": ocr_text,
        "source_file": file_name,
        "animated": decoded.animated,
        "width": decoded.width,
        "height": decoded.height,
        "_data": data,
    }
    return entry, perceptual_hash(decoded.frames[0])
