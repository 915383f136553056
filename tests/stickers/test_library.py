"""Adding and removing packs through the engine: new index versions, atomic switch, CLI."""

import csv
import io
import json
import subprocess

import pytest
from PIL import Image, ImageDraw

from conftest import MEMEUI, ROOT, memeui_env, memeui_main, write_pack
from engine import Engine, Settings
from engine.stickers.ingest import IngestError


def sticker_png(colour) -> bytes:
    image = Image.new("RGB", (64, 64), "white")
    ImageDraw.Draw(image).rectangle((10, 10, 54, 54), fill=colour)
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def food_folder(tmp_path):
    folder = tmp_path / "food"
    folder.mkdir()
    (folder / "pizza.png").write_bytes(sticker_png((230, 120, 30)))
    (folder / "storm.png").write_bytes(sticker_png((60, 60, 90)))
    with open(folder / "labels.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file", "label", "tags", "emotion"])
        writer.writerow(["pizza.png", "slice of pepperoni pizza", "food;cheese", ""])
        writer.writerow(["storm.png", "thunderstorm cloud", "weather", "anger"])
    return folder


@pytest.fixture(scope="module")
def small_engine(tmp_path_factory):
    """An engine over a three-sticker configured pack, so versions build in moments."""
    root = tmp_path_factory.mktemp("library")
    pack = write_pack(root / "base", "base", ["cat", "dog", "bird"])
    return Engine(Settings.from_env({}, data_dir=root / "data", packs=(pack,)))


def test_added_pack_is_searchable_and_only_new_stickers_are_embedded(small_engine, tmp_path):
    before = small_engine.live.get()
    encoder = small_engine.encoder.get()
    calls = []
    original = encoder.encode
    encoder.encode = lambda texts, **kw: calls.append(list(texts)) or original(texts, **kw)
    try:
        report = small_engine.add_pack(food_folder(tmp_path), "food", ocr=False)
    finally:
        encoder.encode = original
    assert len(report.added) == 2 and report.errors == []
    assert sorted(len(call) for call in calls) == [2]  # the two new stickers, nothing old
    top = small_engine.search("pizza with cheese", k=1)[0]
    assert top.label == "slice of pepperoni pizza" and top.pack == "food"
    storm = [r for r in small_engine.search("thunderstorm", k=5) if r.label.startswith("thunder")]
    assert storm[0].emotion == "anger"  # the label people gave beats the model's estimate
    # the version a request held before the switch still answers, without the new pack
    assert before is not small_engine.live.get()
    assert "food" not in before.library.packs
    assert before.index.index.ntotal == 3
    assert {p["name"]: p["stickers"] for p in small_engine.list_packs()} == {"base": 3, "food": 2}


def test_pack_names_cannot_be_reused_and_configured_packs_cannot_be_removed(small_engine, tmp_path):
    if "food" not in small_engine.added_pack_names():
        small_engine.add_pack(food_folder(tmp_path), "food", ocr=False)
    with pytest.raises(IngestError, match="exists already"):
        small_engine.add_pack(food_folder(tmp_path), "food", ocr=False)
    with pytest.raises(IngestError, match="MEMEUI_PACKS"):
        small_engine.remove_pack("base")
    with pytest.raises(IngestError, match="no pack named"):
        small_engine.remove_pack("nothing")


def test_removed_pack_leaves_search(small_engine, tmp_path):
    if "food" not in small_engine.added_pack_names():
        small_engine.add_pack(food_folder(tmp_path), "food", ocr=False)
    small_engine.remove_pack("food")
    assert small_engine.added_pack_names() == []
    assert all(r.pack == "base" for r in small_engine.search("pizza", k=3))


@pytest.mark.slow
def test_library_cli_add_list_remove(tmp_path):
    pack = write_pack(tmp_path / "base", "base", ["cat"])
    env = {**memeui_env(tmp_path / "data"), "MEMEUI_PACKS": str(pack)}

    def memeui(*args):
        return memeui_main(tmp_path / "data", "library", *args, env={"MEMEUI_PACKS": str(pack)})

    added = subprocess.run([str(MEMEUI), "library", "add", str(food_folder(tmp_path)), "--name",
                            "food", "--no-ocr", "--json"], cwd=ROOT, env=env, capture_output=True,
                           text=True, timeout=300)  # the library group as a user runs it
    assert added.returncode == 0, added.stderr
    assert json.loads(added.stdout)["added"] == 2
    assert "100%" in added.stderr  # the progress bar
    listed = json.loads(memeui("list", "--json").stdout)
    assert {"name": "food", "stickers": 2, "source": "added"} in listed
    assert memeui("remove", "food").returncode == 0
    assert [p["name"] for p in json.loads(memeui("list", "--json").stdout)] == ["base"]
    missing = memeui("add", str(tmp_path / "nowhere"))
    assert missing.returncode == 2 and "does not exist" in missing.stderr


def test_old_index_versions_are_pruned_but_kept_ones_and_spares_stay(tmp_path):
    import os
    import time

    from engine.stickers.index import prune

    for age, name in enumerate(["v-live", "v-old", "v-a", "v-b", "v-c"]):
        (tmp_path / name).mkdir()
        (tmp_path / name / "manifest.json").write_text("{}")
        stamp = time.time() - 100 * age
        os.utime(tmp_path / name / "manifest.json", (stamp, stamp))
    (tmp_path / ".v-d-crashed").mkdir()
    os.utime(tmp_path / ".v-d-crashed", (time.time() - 7200,) * 2)
    (tmp_path / ".v-e-building").mkdir()  # a build in progress right now
    removed = prune(tmp_path, keep={"v-live", "v-c"}, spare=2)
    assert sorted(removed) == [".v-d-crashed", "v-b"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".v-e-building", "v-a", "v-c",
                                                          "v-live", "v-old"]


def test_switching_versions_prunes_the_index_folder(small_engine, tmp_path):
    for round_ in range(4):  # four different libraries: five versions with the base one
        folder = tmp_path / f"extra{round_}"
        folder.mkdir()
        (folder / f"thing {round_}.png").write_bytes(sticker_png((50 * round_, 100, 30)))
        small_engine.add_pack(folder, f"extra{round_}", ocr=False)
        small_engine.remove_pack(f"extra{round_}")
    versions = [p for p in (small_engine.settings.data_dir / "index").iterdir()
                if not p.name.startswith(".")]
    assert len(versions) <= 4  # the live one, the one before it, two spares
    assert small_engine.search("cat", k=1)[0].label == "cat"


@pytest.mark.parametrize("spec", ["HNSW32,Flat", "IVF8,Flat"])
def test_appending_stickers_grows_the_previous_index_instead_of_rebuilding(tmp_path, monkeypatch,
                                                                           spec):
    import numpy as np

    from engine.stickers import index as versions
    from engine.stickers.library import Sticker

    monkeypatch.setattr(versions, "index_spec", lambda n, dim: spec)  # as for a big library
    rng = np.random.default_rng(0)
    table = rng.normal(size=(600, 16)).astype(np.float32)
    table /= np.linalg.norm(table, axis=1, keepdims=True)
    stickers = [Sticker(id=f"s{i}", pack="p", path=tmp_path / f"{i}.png", label=f"{i}")
                for i in range(600)]
    encode = lambda texts: table[[int(t) for t in texts]]  # noqa: E731
    emotions = lambda stickers, vectors: (["joy"], np.ones((len(stickers), 1), np.float32))  # noqa: E731
    first = versions.open_or_build(tmp_path, "v1", stickers[:500], encode, emotions)
    second = versions.open_or_build(tmp_path, "v2", stickers, encode, emotions, previous=first)
    manifest = json.loads((tmp_path / "v2" / "manifest.json").read_text())
    assert manifest["grown_from"] == "v1" and second.index.ntotal == 600
    scores, rows = second.search(table[550:560], 1)
    assert (rows[:, 0] == np.arange(550, 560)).all()  # the added stickers are found
    if spec.startswith("IVF"):  # the centroids were kept, not trained again
        centroids = lambda index: versions.faiss.extract_index_ivf(index).quantizer.reconstruct_n(0, 8)  # noqa: E731
        assert np.array_equal(centroids(first.index), centroids(second.index))
    shuffled = versions.open_or_build(tmp_path, "v3", stickers[100:] + stickers[:100], encode,
                                      emotions, previous=second)
    assert json.loads((tmp_path / "v3" / "manifest.json").read_text())["grown_from"] is None
    assert shuffled.index.ntotal == 600  # a reordered library is built anew


def test_a_new_version_reuses_what_did_not_change(tmp_path):
    """Text vectors follow a sticker's signature, pictures its id, emotions its signature and
    the emotion reader: a corrected label is embedded again, a new reader reads every sticker
    again, and nothing else is recomputed."""
    import dataclasses

    import numpy as np

    from engine.stickers import index as versions
    from engine.stickers.library import Sticker

    stickers = [Sticker(id=f"s{i}", pack="p", path=tmp_path / f"{i}.png", label=f"sticker {i}")
                for i in range(5)]
    seen = {"texts": [], "pictures": [], "read": []}

    def encode(texts):
        seen["texts"] += texts
        return np.eye(8, dtype=np.float32)[[len(t) % 8 for t in texts]]

    def pictures(stickers):
        seen["pictures"] += [s.id for s in stickers]
        return np.ones((len(stickers), 4), np.float32)

    def reader(name):
        def read(stickers, vectors):
            seen["read"] += [(name, s.id) for s in stickers]
            assert len(vectors) == len(stickers)
            return ["joy", "anger"], np.tile([[0.9, 0.1]], (len(stickers), 1)).astype(np.float32)
        return read

    first = versions.open_or_build(tmp_path, "v1", stickers, encode, reader("a"), None, pictures)
    for kind in seen.values():
        kind.clear()
    corrected = [dataclasses.replace(stickers[0], label="a corrected label"), *stickers[1:]]
    second = versions.open_or_build(tmp_path, "v2", corrected, encode, reader("a"), first, pictures)
    assert seen == {"texts": ["a corrected label"], "pictures": [], "read": [("a", "s0")]}
    for kind in seen.values():
        kind.clear()
    versions.open_or_build(tmp_path, "v3", corrected, encode, reader("b"), second, pictures,
                           reader="b")
    assert seen["texts"] == [] and seen["pictures"] == []
    assert sorted(seen["read"]) == [("b", f"s{i}") for i in range(5)]
