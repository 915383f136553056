"""Ingest of every format, every refusal, sidecar metadata and OCR; fixtures written here."""

import csv
import io
import json
import zipfile

import imageio.v2 as imageio
import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from engine.stickers.ingest import (IngestError, Limits, build_pack, decode, parse_metadata,
                           perceptual_hash, quartile_frames)
from engine.stickers.ocr import StickerOCR
from engine.stickers.library import load_pack

COLOURS = [(230, 30, 30), (30, 200, 30), (30, 30, 230), (230, 200, 30),
           (200, 30, 200), (30, 200, 200), (120, 120, 120), (0, 0, 0)]


def still(colour=(230, 30, 30), size=64, text="") -> Image.Image:
    image = Image.new("RGB", (size, size), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    draw.ellipse((8, 8, size - 8, size - 8), fill=colour)
    if text:
        draw.text((10, size // 3), text, fill=(0, 0, 0), font=ImageFont.load_default(size=40))
    return image


def encoded(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def animated_gif(frames: int = 8) -> bytes:
    images = [still(COLOURS[i % len(COLOURS)]) for i in range(frames)]
    buffer = io.BytesIO()
    images[0].save(buffer, "GIF", save_all=True, append_images=images[1:], duration=80, loop=0)
    return buffer.getvalue()


def video(tmp_path, suffix: str, frames: int = 8) -> bytes:
    path = tmp_path / f"clip{suffix}"
    arrays = [np.asarray(still(COLOURS[i % len(COLOURS)], size=64)) for i in range(frames)]
    codec = "libvpx-vp9" if suffix == ".webm" else "libx264"
    imageio.mimwrite(path, arrays, fps=8, format="ffmpeg", codec=codec, macro_block_size=16)
    return path.read_bytes()


@pytest.fixture
def target(tmp_path):
    (tmp_path / "packs").mkdir()
    return tmp_path / "packs" / "test"


def test_every_format_goes_in_and_animations_keep_quartile_frames(tmp_path, target):
    source = tmp_path / "src"
    source.mkdir()
    (source / "red.png").write_bytes(encoded(still((230, 30, 30)), "PNG"))
    (source / "green.jpg").write_bytes(encoded(still((30, 200, 30)), "JPEG"))
    (source / "blue.webp").write_bytes(encoded(still((30, 30, 230)), "WEBP"))
    (source / "party.gif").write_bytes(animated_gif())
    (source / "clip.mp4").write_bytes(video(tmp_path, ".mp4"))
    (source / "clip.webm").write_bytes(video(tmp_path, ".webm"))
    report = build_pack(source, target, "test")
    assert report.errors == []
    assert len(report.added) == 6
    loaded = load_pack(target)
    assert sorted(s.label for s in loaded) == ["blue", "clip", "clip", "green", "party", "red"]
    stickers = {s.label: s for s in loaded}
    assert stickers["party"].animated and not stickers["red"].animated
    assert stickers["party"].path.read_bytes() == (source / "party.gif").read_bytes()  # still animated
    decoded = decode("party.gif", animated_gif(), Limits())
    assert len(decoded.frames) == 4
    centres = [f.convert("RGB").getpixel((32, 32)) for f in decoded.frames]
    assert [max(range(3), key=c.__getitem__) for c in centres[:2]] == [0, 2]  # frames 0 and 2
    assert quartile_frames(8) == [0, 2, 4, 6]
    assert quartile_frames(2) == [0, 1]
    mp4 = decode("clip.mp4", (source / "clip.mp4").read_bytes(), Limits())
    assert mp4.animated and len(mp4.frames) == 4 and mp4.width == 64


def test_ids_are_content_hashes_and_exact_duplicates_merge(tmp_path, target):
    source = tmp_path / "src"
    source.mkdir()
    data = encoded(still(), "PNG")
    (source / "a.png").write_bytes(data)
    (source / "copy of a.png").write_bytes(data)
    report = build_pack(source, target, "test")
    assert len(report.added) == 1
    assert report.duplicates == [("copy of a.png", report.added[0])]
    with pytest.raises(IngestError, match="2 already in the library"):  # no empty pack
        build_pack(source, tmp_path / "packs" / "again", "again", known_ids=set(report.added))
    assert not (tmp_path / "packs" / "again").exists()


def test_near_duplicates_are_reported_not_merged(tmp_path, target):
    source = tmp_path / "src"
    source.mkdir()
    (source / "a.png").write_bytes(encoded(still(), "PNG"))
    (source / "a small.jpg").write_bytes(encoded(still(size=48).resize((64, 64)), "JPEG", quality=60))
    (source / "other.png").write_bytes(encoded(still((30, 30, 230), text="X"), "PNG"))
    report = build_pack(source, target, "test")
    assert len(report.added) == 3
    pairs = {frozenset(pair[:2]) for pair in report.near_duplicates}
    assert len(pairs) == 1
    assert perceptual_hash(still()) == perceptual_hash(still().resize((128, 128)))


def write_zip(path, entries: dict[str, bytes], links: dict[str, str] = {}):
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
        for name, target in links.items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (0o120777 << 16)  # a symlink entry
            archive.writestr(info, target)
    return path


def test_zip_entries_leaving_the_target_are_refused_and_the_rest_goes_in(tmp_path, target):
    png = encoded(still(), "PNG")
    archive = write_zip(tmp_path / "pack.zip", {
        "good/ok.png": png,
        "../evil.png": encoded(still((1, 2, 3)), "PNG"),
        "/abs.png": encoded(still((4, 5, 6)), "PNG"),
        "a/../../up.png": encoded(still((7, 8, 9)), "PNG"),
    }, links={"link.png": "/etc/passwd"})
    report = build_pack(archive, target, "test")
    assert len(report.added) == 1
    reasons = dict(report.errors)
    assert "../" in reasons["../evil.png"] and "../" in reasons["a/../../up.png"]
    assert "absolute" in reasons["/abs.png"]
    assert "links" in reasons["link.png"]
    assert not (tmp_path / "evil.png").exists() and not (tmp_path / "packs" / "evil.png").exists()


def test_archive_limits_refuse_the_whole_upload(tmp_path, target):
    archive = write_zip(tmp_path / "many.zip", {f"{i}.png": b"x" for i in range(5)})
    with pytest.raises(IngestError, match="limit is 3"):
        build_pack(archive, target, "test", Limits(max_archive_files=3))
    with pytest.raises(IngestError, match="expands to"):
        build_pack(archive, target, "test", Limits(max_archive_bytes=2))


def test_bad_files_are_reported_one_by_one(tmp_path, target):
    source = tmp_path / "src"
    source.mkdir()
    (source / "fine.png").write_bytes(encoded(still(), "PNG"))
    (source / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    (source / "truncated.jpg").write_bytes(encoded(still(), "JPEG")[:200])
    (source / "huge.png").write_bytes(encoded(Image.new("RGB", (300, 300)), "PNG"))
    (source / "long.gif").write_bytes(animated_gif(8))
    (source / "big.webp").write_bytes(encoded(still(), "WEBP") + b"\0" * 5000)
    (source / "notes.txt").write_text("hello")
    (source / "link.png").symlink_to(source / "fine.png")
    limits = Limits(max_pixels=200 * 200, max_frames=5, max_file_bytes=4000)
    report = build_pack(source, target, "test", limits)
    reasons = dict(report.errors)
    assert len(report.added) == 1, reasons
    assert "pixels" in reasons["huge.png"]
    assert "frames" in reasons["long.gif"]
    assert "bytes" in reasons["big.webp"]
    assert "corrupt" in reasons["truncated.jpg"] or "read" in reasons["truncated.jpg"]
    assert "corrupt.png" in reasons
    assert "not a sticker format" in reasons["notes.txt"]
    assert "links" in reasons["link.png"]


def test_csv_and_json_sidecars_label_the_stickers(tmp_path, target):
    source = tmp_path / "src"
    source.mkdir()
    (source / "a.png").write_bytes(encoded(still((230, 30, 30)), "PNG"))
    (source / "b.png").write_bytes(encoded(still((30, 30, 230)), "PNG"))
    with open(source / "meta.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file", "label", "tags", "caption", "emotion"])
        writer.writerow(["a.png", "angry tomato", "red;mad", "a tomato fuming", "anger"])
    (source / "more.json").write_text(json.dumps(
        [{"file": "b.png", "label": "calm sea", "tags": ["blue", "calm"]}]))
    build_pack(source, target, "test")
    stickers = {s.label: s for s in load_pack(target)}
    assert stickers["angry tomato"].tags == ("red", "mad")
    assert stickers["angry tomato"].caption == "a tomato fuming"
    assert stickers["angry tomato"].emotion == "anger"
    assert stickers["calm sea"].tags == ("blue", "calm")
    assert "a tomato fuming" in stickers["angry tomato"].text()


def test_mod_catalogue_and_pepe_csv_formats():
    mod = parse_metadata("meme_ocr.json", json.dumps(
        {"0": {"ocr": "我不管", "name": "我不管.gif"}, "4": {"ocr": "走了 拜拜", "name": "拜拜.jpg"}},
        ensure_ascii=False).encode())
    assert mod["我不管.gif"]["ocr"] == "我不管" and mod["拜拜.jpg"]["label"] == "拜拜"
    pepe = parse_metadata("gifs.csv", (
        "gif_id,ocr_text,tags\n"
        "g42,OH NO[INTER_FRAME_SEP]NOT AGAIN,sad;facepalm\n").encode())
    assert pepe["g42.gif"]["ocr"] == "OH NO / NOT AGAIN"
    assert pepe["g42.gif"]["tags"] == ["sad", "facepalm"]


def test_pack_names_are_checked(tmp_path, target):
    with pytest.raises(IngestError, match="pack name"):
        build_pack(tmp_path, target, "../escape")
    with pytest.raises(IngestError, match="does not exist"):
        build_pack(tmp_path / "nothing", target, "ok")


def test_ocr_reads_text_written_in_a_sticker():
    text = StickerOCR()([still((255, 255, 255), size=200, text="HELLO")])
    assert "HELLO" in text.upper()
