"""The bad-input corpus: every case a fixture written here, pushed through its door (ingest,
chat, search, emotion, labelling, import, the reply backend). Each gets a clear message or a
sane answer, leaves nothing half-written (no pack, no staging folder, no label), and the next
request right after it is served. The API's own doors (wrong types, missing values, roles)
are in test_hostile.py."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest
from PIL import Image

from annotations.store import LabelError, LabelStore
from conftest import small_engine
from engine import Engine
from engine.dialogue import Dialogue, Turn
from engine.stickers.ingest import IngestError, Limits
from engine.chat.backends import ReplyBackend, ReplyError
from memeui.studio import Studio
from test_hostile import gif_bomb, png_header

pytestmark = pytest.mark.bad_input


def image_bytes(kind: str = "PNG", size: int = 32, colour="red") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), colour).save(buffer, kind)
    return buffer.getvalue()


def zip_of(entries: dict[str, bytes], links: tuple[str, ...] = ()) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
        for name in links:
            info = zipfile.ZipInfo(name)
            info.external_attr = (0o120777 << 16)  # a symbolic link
            archive.writestr(info, "/etc/passwd")
    return buffer.getvalue()


def many_frames_gif(frames: int) -> bytes:
    pictures = [Image.new("RGB", (4, 4), (i % 256, 0, 0)) for i in range(frames)]
    buffer = io.BytesIO()
    pictures[0].save(buffer, "GIF", save_all=True, append_images=pictures[1:], duration=10)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """An engine over a three-sticker pack (retrieval replies), and its studio."""
    root = tmp_path_factory.mktemp("bad-input")
    engine = small_engine(root)
    studio = Studio(engine, LabelStore(root / "data" / "labels.duckdb", engine.scheme.labels))
    studio.ensure_items()
    yield engine, studio, root
    studio.store.close()


def still_served(engine: Engine) -> None:
    assert engine.search("a cat", 1)[0].label  # the next request is served


# ---------------------------------------------------------------- ingest: pictures and archives

TRUNCATED = image_bytes("PNG")[:60]
UPLOADS = {
    "truncated PNG": ("a.png", TRUNCATED, "corrupt|cannot read|not an image"),
    "truncated JPEG": ("a.jpg", image_bytes("JPEG")[:100], "corrupt|not an image"),
    "truncated GIF": ("a.gif", many_frames_gif(3)[:40], "corrupt|not an image"),
    "random bytes as WebP": ("a.webp", bytes(range(256)) * 4, "not an image"),
    "empty PNG": ("empty.png", b"", "not an image"),
    "decompression bomb": ("bomb.png", png_header(20_000, 20_000), "pixels; the limit"),
    "too many pixels": ("big.png", png_header(5000, 5000), "5000×5000 pixels"),
    "GIF bomb": ("bomb.gif", gif_bomb(), "pixels × frames"),
    "too many frames": ("long.gif", many_frames_gif(2001), "more than 2000 frames"),
    "SVG": ("face.svg", b"<svg xmlns='http://www.w3.org/2000/svg'><script>alert(1)</script></svg>",
            "not a sticker format"),
    "HTML as PNG": ("page.png", b"<html><body><script>alert(1)</script></body></html>",
                    "not an image"),
    "script as GIF": ("run.gif", b"#!/bin/sh\nrm -rf /\n", "not an image"),
    "JavaScript": ("app.js", b"alert(1)", "not a sticker format"),
    "corrupt MP4": ("clip.mp4", b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 50, "video cannot be read"),
    "random WebM": ("clip.webm", bytes(range(200)), "video cannot be read"),
    "zip with ../": ("up.zip", zip_of({"../evil.png": image_bytes()}), "leaving the archive"),
    "zip with an absolute path": ("abs.zip", zip_of({"/tmp/evil.png": image_bytes()}),
                                  "absolute paths"),
    "zip with a link": ("link.zip", zip_of({}, links=("passwd.png",)), "links are refused"),
    "zip bomb": ("bomb.zip", zip_of({"zeros.png": b"\0" * (21 * 1024 * 1024)}),
                 "bytes; the limit is|expands past"),
    "not a zip": ("broken.zip", b"PK\x03\x04 this is not really an archive", "zip|archive"),
    "zip of nothing usable": ("notes.zip", zip_of({"readme.txt": b"hi"}), "no pack"),
    "metadata that is not JSON": ("only.json", b"{not json", "no pack|metadata"),
}


@pytest.mark.parametrize("case", list(UPLOADS))
def test_a_bad_upload_is_refused_and_leaves_nothing_behind(small, tmp_path, case):
    engine, _, _ = small
    name, data, reason = UPLOADS[case]
    source = tmp_path / name
    source.write_bytes(data)
    before = engine.added_pack_names()
    with pytest.raises(IngestError) as refused:
        engine.add_pack(source, "upload", ocr=False)
    message = str(refused.value)
    assert __import__("re").search(reason, message), message
    assert "Traceback" not in message and "0x" not in message
    assert engine.added_pack_names() == before
    assert not [p for p in engine.user_packs_dir.glob(".*")]  # no staging folder left
    still_served(engine)


def test_an_archive_of_too_many_files_is_refused_before_it_is_read(small, tmp_path):
    engine, _, _ = small
    source = tmp_path / "many.zip"
    source.write_bytes(zip_of({f"{i}.txt": b"" for i in range(30)}))
    with pytest.raises(IngestError, match="30 files; the limit is 20"):
        engine.add_pack(source, "many", ocr=False, limits=Limits(max_archive_files=20))
    still_served(engine)


def test_a_good_sticker_beside_bad_ones_is_added_and_the_bad_ones_named(small, tmp_path):
    engine, _, _ = small
    source = tmp_path / "mixed.zip"
    source.write_bytes(zip_of({"good.png": image_bytes(colour="blue"), "bad.png": TRUNCATED,
                               "../evil.png": image_bytes()}))
    report = engine.add_pack(source, "mixed", ocr=False)
    assert len(report.added) == 1
    assert {name for name, _ in report.errors} == {"bad.png", "../evil.png"}
    engine.remove_pack("mixed")


# ---------------------------------------------------------------- chat, search, emotion

REFUSED_MESSAGES = {
    "empty": ("", "empty"),
    "whitespace only": ("  \n\t  ", "empty"),
    "control characters only": ("\x00\x01\x02\x1b", "empty"),
    "a megabyte": ("a" * 1_000_000, "the limit is 2000"),
    "not text": (12345, "must be text"),
}
ANSWERED_MESSAGES = {
    "right-to-left": "مرحبا، كيف حالك اليوم؟",
    "emoji only": "😂😂😂",
    "control characters inside": "hello\x00 there\x07",
    "Chinese": "今天好开心",
    "one character": "?",
}


@pytest.mark.parametrize("case", list(REFUSED_MESSAGES))
def test_a_message_the_chat_cannot_take_is_refused_with_a_reason(small, case):
    engine, _, _ = small
    from engine.dialogue import check_message

    text, reason = REFUSED_MESSAGES[case]
    with pytest.raises(ValueError, match=reason):
        check_message(text)
    with pytest.raises(ValueError, match=reason):
        engine.search(text, 3)
    still_served(engine)


@pytest.mark.parametrize("case", list(ANSWERED_MESSAGES))
def test_an_odd_but_valid_message_gets_a_reply_and_stickers(small, case):
    engine, _, _ = small
    from engine.dialogue import check_message

    text = check_message(ANSWERED_MESSAGES[case])
    assert "\x00" not in text
    reply = engine.chat(Dialogue((Turn("user", text),)))
    assert reply.text.strip()
    assert engine.search(text, 3)


TRANSCRIPTS = {
    "no speakers": ("just a line\nand another", None),
    "empty": ("", "empty"),
    "only names": ("Ann:\nBob:", None),
    "too long": ("A: " + "x" * 30_000, "the limit is 20000"),
    "unknown scheme": ("A: hi\nB: hey", "scheme"),
}


@pytest.mark.parametrize("case", list(TRANSCRIPTS))
def test_a_transcript_is_read_or_refused_with_a_reason(small, case):
    engine, _, _ = small
    text, reason = TRANSCRIPTS[case]
    scheme = "klingon" if case == "unknown scheme" else None
    if reason is None:
        reading = engine.read_emotion(Dialogue.from_transcript(text), None, scheme)
        assert reading.turns and sum(reading.forecast.values()) == pytest.approx(1, abs=1e-3)
    else:
        with pytest.raises(ValueError, match=reason):
            engine.read_emotion(Dialogue.from_transcript(text), None, scheme)
    still_served(engine)


def test_an_unknown_emotion_filter_is_refused(small):
    engine, _, _ = small
    with pytest.raises(ValueError, match="unknown emotion 'glee'"):
        engine.search("a cat", 3, emotion="glee")


# ---------------------------------------------------------------- labels

LABELS = {
    "unknown label": ("sticker_emotion", "<first>", "ecstatic", "ann", "unknown label"),
    "unknown item": ("sticker_emotion", "no-such-sticker", "joy", "ann", "unknown item"),
    "unknown task": ("sticker_mood", "<first>", "joy", "ann", "unknown task"),
    "empty label": ("sticker_emotion", "<first>", "  ", "ann", "empty"),
    "enormous label": ("sticker_text", "<first>", "x" * 5000, "ann", "the limit is 4000"),
    "label of the wrong type": ("sticker_emotion", "<first>", 7, "ann", "empty|label"),
    "annotator with control characters": ("sticker_emotion", "<first>", "joy", "ann\x1b[31m",
                                          "name"),
    "annotator name too long": ("sticker_emotion", "<first>", "joy", "a" * 500, "name"),
    "best sticker that is none": ("best_sticker", "<question>", "not-a-sticker", "ann",
                                  "no sticker of the library"),
}


@pytest.mark.parametrize("case", list(LABELS))
def test_a_bad_label_is_refused_and_nothing_is_written(small, case):
    engine, studio, _ = small
    task, item, label, annotator, reason = LABELS[case]
    first = engine.live.get().library.stickers[0].id
    if item == "<question>":
        studio.add_dialogues([Dialogue((Turn("a", "hello"),))], "bad-input")
        item = "bad-input:0/next"
    item = first if item == "<first>" else item
    before = len(studio.store.events())
    with pytest.raises((LabelError, ValueError), match=reason):
        studio.store.label(task, item, label, annotator)
    assert len(studio.store.events()) == before
    studio.store.label("sticker_emotion", first, "joy", "ann")  # the next label is taken


# ---------------------------------------------------------------- imports

MELD_HEADER = "Sr No.,Utterance,Speaker,Emotion,Sentiment,Dialogue_ID,Utterance_ID\n"
IMPORTS = {
    "MELD without its columns": ("meld.csv", "Utterance,Speaker\nhi,Ann\n", "utterance_emotion"),
    "MELD with an unknown emotion": ("dev_sent_emo.csv", MELD_HEADER + "1,hi,Ann,elated,positive,0,0\n",
                                     "utterance_emotion"),
    "MOD JSON cut short": ("mod.json", '{"dialogue 1": [{"speaker_id": "[speaker1]", "txt": "hi"',
                           "utterance_emotion"),
    "sticker CSV with an unknown emotion": ("stickers.csv", "id,emotion\n<first>,ecstatic\n",
                                            "sticker_emotion"),
    "sticker CSV with an unknown sticker": ("stickers.csv", "id,emotion\nnope,joy\n",
                                            "sticker_emotion"),
    "export row with an unknown label": ("export.jsonl", json.dumps(
        {"task": "sticker_emotion", "item": "<first>", "annotator": "ann", "label": "ecstatic"}),
        "sticker_emotion"),
    "JSONL with a broken line": ("export.jsonl", '{"task": "sticker_emotion", "item"\n',
                                 "sticker_emotion"),
    "Parquet that is not Parquet": ("export.parquet", "PAR1 not really", "sticker_emotion"),
    "an empty file": ("empty.csv", "", "sticker_emotion"),
}


@pytest.mark.parametrize("case", list(IMPORTS))
def test_a_malformed_import_is_refused_and_adds_nothing(small, tmp_path, case):
    engine, studio, _ = small
    name, text, task = IMPORTS[case]
    first = engine.live.get().library.stickers[0].id
    path = tmp_path / name
    path.write_text(text.replace("<first>", first), "utf-8")
    events, items = len(studio.store.events()), len(studio.store.items("utterance_emotion"))
    with pytest.raises((LabelError, ValueError)) as refused:
        studio.import_file(path, task)
    assert str(refused.value) and "Traceback" not in str(refused.value)
    assert len(studio.store.events()) == events
    assert len(studio.store.items("utterance_emotion")) == items
    still_served(engine)


# ---------------------------------------------------------------- the reply backend

class Misbehaving(ReplyBackend):
    name = "misbehaving"

    def __init__(self, behaviour: str) -> None:
        super().__init__(workers=1, wait_seconds=0.1)
        self.behaviour = behaviour

    def _generate(self, dialogue, mood):
        if self.behaviour == "times out":
            raise ReplyError("The reply backend did not answer within 30 s: try again.")
        if self.behaviour == "fails":
            raise ConnectionResetError("connection reset by peer")
        yield "\x00\x01 <|> \x07"  # garbage: no word in it

    def stream(self, dialogue, mood):
        yield from self._generate(dialogue, mood)


@pytest.mark.parametrize("behaviour, reason", [
    ("times out", "did not answer within"),
    ("fails", r"reply backend failed \(ConnectionResetError\)"),
    ("garbage", "returned nothing"),
])
def test_a_misbehaving_reply_backend_gets_a_clear_message_and_the_next_turn_works(small, behaviour,
                                                                                   reason):
    engine, _, _ = small
    served = engine.reply_backend.get()
    engine.reply_backend.replace(Misbehaving(behaviour))
    try:
        with pytest.raises(ReplyError, match=reason):
            engine.chat(Dialogue((Turn("user", "hello"),)))
    finally:
        engine.reply_backend.replace(served)
    assert engine.chat(Dialogue((Turn("user", "hello"),))).text


def test_the_corpus_has_at_least_sixty_cases():
    cases = (len(UPLOADS) + 2 + len(REFUSED_MESSAGES) + len(ANSWERED_MESSAGES) + len(TRANSCRIPTS)
             + 1 + len(LABELS) + len(IMPORTS) + 3)
    assert cases >= 60, cases
    assert np.all([isinstance(v[1], (bytes, str)) for v in UPLOADS.values()])


def test_a_good_meld_csv_is_read_as_conversations(small, tmp_path):
    _, studio, _ = small
    path = tmp_path / "train_sent_emo.csv"
    path.write_text(MELD_HEADER + "1,I won!,Ann,joy,positive,7,0\n2,No way!,Bob,surprise,positive,7,1\n")
    assert studio.import_file(path, "utterance_emotion") == {"utterance_items": 2,
                                                             "best_sticker_items": 1}


def test_a_pack_half_written_when_the_app_was_killed_is_never_served_and_is_cleared(small, tmp_path):
    import os
    import time

    engine, _, _ = small
    engine.user_packs_dir.mkdir(parents=True, exist_ok=True)
    staging = engine.user_packs_dir / ".food-killed"  # as build_pack leaves it mid-write
    (staging / "files").mkdir(parents=True)
    (staging / "pack.json").write_text('{"name": "food", "stickers": []}')
    assert staging not in engine.pack_dirs()
    old = time.time() - 3600
    os.utime(staging, (old, old))
    source = tmp_path / "one.png"
    source.write_bytes(image_bytes(colour="green"))
    engine.add_pack(source, "fresh", ocr=False)
    assert not staging.exists() and "fresh" in engine.added_pack_names()
    engine.remove_pack("fresh")
