import hashlib
import json

import pytest

from engine.paths import DEFAULT_PACK
from engine.stickers.library import StickerLibrary, load_pack
from conftest import write_pack


def test_bundled_pack_covers_the_emotion_and_people_groups():
    stickers = load_pack(DEFAULT_PACK)
    groups = {sticker.group for sticker in stickers}
    assert {"smileys-emotion", "people-body"} <= groups
    assert len(stickers) > 1500
    assert len({sticker.id for sticker in stickers}) == len(stickers)


def test_bundled_sticker_ids_are_content_hashes_of_existing_files():
    for sticker in load_pack(DEFAULT_PACK)[::97]:
        assert sticker.path.is_file()
        assert hashlib.sha256(sticker.path.read_bytes()).hexdigest()[:16] == sticker.id


def test_bundled_stickers_carry_english_and_chinese_labels():
    by_emoji = {sticker.emoji: sticker for sticker in load_pack(DEFAULT_PACK)}
    crying = by_emoji["😭"]
    assert crying.label == "loudly crying face"
    assert crying.label_zh  # emojibase's zh locale
    assert "sob" in crying.tags


def test_library_merges_the_same_image_in_two_packs(tmp_path):
    first = write_pack(tmp_path / "first", "first", ["cat", "dog"])
    second = write_pack(tmp_path / "second", "second", ["cat again", "dog again", "bird"])
    library = StickerLibrary.load([first, second])
    assert library.packs == ["first", "second"]
    assert len(library) == 3  # images 0 and 1 are byte-identical across the packs
    assert library.stickers[0].label == "cat"


def test_fingerprint_follows_sticker_text(tmp_path):
    pack = write_pack(tmp_path / "p", "p", ["cat"])
    before = StickerLibrary.load([pack]).fingerprint()
    manifest = json.loads((pack / "pack.json").read_text())
    manifest["stickers"][0]["label"] = "tiger"
    (pack / "pack.json").write_text(json.dumps(manifest))
    assert StickerLibrary.load([pack]).fingerprint() != before


def test_a_folder_without_manifest_is_refused_clearly(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a sticker pack"):
        StickerLibrary.load([tmp_path])


def test_a_manifest_naming_files_outside_its_pack_is_refused(tmp_path):
    pack = write_pack(tmp_path / "p", "p", ["cat"])
    manifest = json.loads((pack / "pack.json").read_text())
    manifest["stickers"][0]["file"] = "../../etc/passwd"
    (pack / "pack.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="outside the pack"):
        load_pack(pack)
