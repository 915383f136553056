"""State that outlives the disk: the label store's backup and restore, the push/restore cycle
against a folder standing in for the Hub, a push that fails, and a Space's persistent storage."""

from __future__ import annotations

import json
import logging
import signal
import urllib.request

import pytest

from annotations.store import Item, LabelError, LabelStore
from bench.chat import start_server
from bench.labels import call, fresh_data_dir
from conftest import ROOT, memeui_env
from memeui.spaces import apply_space_env
from memeui.state import FolderRepo, StateSync

EKMAN = ("anger", "disgust", "fear", "joy", "neutral", "sadness", "surprise")


def filled_store(path) -> LabelStore:
    store = LabelStore(path, EKMAN)
    store.put_items([Item(f"s{i}", "sticker_emotion") for i in range(3)])
    store.label("sticker_emotion", "s0", "joy", "ann", key="ann:1")
    store.label("sticker_emotion", "s1", "fear", "bob")
    store.undo("sticker_emotion", "bob")
    store.request_training("sticker_emotion", "ann", "by hand")
    return store


def test_a_backup_restores_into_an_empty_store_ids_undo_and_keys_included(tmp_path):
    store = filled_store(tmp_path / "a.duckdb")
    before = [(e.id, e.kind, e.label, e.undoes) for e in store.events()]
    store.backup(tmp_path / "backup")
    with pytest.raises(LabelError, match="not empty"):
        store.restore(tmp_path / "backup")
    store.close()
    restored = LabelStore(tmp_path / "b.duckdb", EKMAN)
    counts = restored.restore(tmp_path / "backup")
    assert counts["label_events"] == 3 and counts["items"] == 3 and counts["training_requests"] == 1
    assert [(e.id, e.kind, e.label, e.undoes) for e in restored.events()] == before
    assert [r["item"] for r in restored.current_labels("sticker_emotion")] == ["s0"]
    assert restored.label("sticker_emotion", "s0", "joy", "ann", key="ann:1") == before[0][0]
    assert restored.label("sticker_emotion", "s2", "anger", "ann") == 4  # ids go on after
    restored.close()


def data_dir_with_state(root):
    data = root / "data"
    store = filled_store(data / "labels.duckdb")
    version = data / "registry" / "selector" / "selector-1"
    version.mkdir(parents=True)
    (version / "version.json").write_text('{"id": "selector-1"}')
    pack = data / "packs" / "food"
    pack.mkdir(parents=True)
    (pack / "pack.json").write_text('{"name": "food", "stickers": []}')
    return data, store


def test_what_was_pushed_comes_back_on_a_fresh_disk(tmp_path):
    data, store = data_dir_with_state(tmp_path)
    repo = FolderRepo(tmp_path / "hub")
    assert StateSync(data, repo, 5).push(store)
    store.close()
    fresh = tmp_path / "fresh"  # the Space restarted: an empty disk
    restored = StateSync(fresh, repo, 5).restore()
    assert restored["labels"]["label_events"] == 3
    assert restored["registry"] == ["selector"] and restored["packs"] == ["food"]
    assert (fresh / "registry" / "selector" / "selector-1" / "version.json").is_file()
    again = LabelStore(fresh / "labels.duckdb", EKMAN)
    assert [r["label"] for r in again.current_labels("sticker_emotion")] == ["joy"]
    again.label("sticker_emotion", "s2", "anger", "ann")
    assert StateSync(fresh, repo, 5).push(again)  # and the cycle goes on
    again.close()
    assert StateSync(tmp_path / "third", repo, 5).restore()["labels"]["label_events"] == 4
    assert StateSync(tmp_path / "empty", FolderRepo(tmp_path / "no-hub"), 5).restore() == {}


class Flaky(FolderRepo):
    """A repo whose first push fails, as the Hub does when the network drops."""

    def __init__(self, path) -> None:
        super().__init__(path)
        self.calls = 0

    def push(self, folder) -> None:
        self.calls += 1
        if self.calls == 1:
            raise ConnectionError("the Hub is unreachable")
        super().push(folder)


def test_a_push_that_fails_is_logged_and_tried_again(tmp_path, caplog):
    data, store = data_dir_with_state(tmp_path)
    sync = StateSync(data, Flaky(tmp_path / "hub"), 5)
    with caplog.at_level(logging.ERROR):
        assert not sync.push(store)
    assert sync.failures == 1 and "pushing the state failed (1 in a row)" in caplog.text
    assert not (tmp_path / "hub").exists()  # nothing half pushed
    assert sync.push(store) and sync.failures == 0
    assert (tmp_path / "hub" / "labels" / "label_events.parquet").is_file()
    store.close()


def test_a_space_with_persistent_storage_keeps_its_data_there(tmp_path):
    config = tmp_path / "spaces.yaml"
    config.write_text("env:\n  MEMEUI_DATA_DIR: /tmp/memeui-data\n  MEMEUI_OCR: '0'\n")
    storage = tmp_path / "data"
    storage.mkdir()
    environ = {"SPACE_ID": "someone/memeui"}
    apply_space_env(config, environ, storage=storage)
    assert environ["MEMEUI_DATA_DIR"] == str(storage / "memeui") and environ["MEMEUI_OCR"] == "0"
    without = {"SPACE_ID": "someone/memeui"}
    apply_space_env(config, without, storage=tmp_path / "not-mounted")
    assert without["MEMEUI_DATA_DIR"] == "/tmp/memeui-data"
    local = {}
    apply_space_env(config, local, storage=storage)
    assert local == {}  # not on a Space: nothing changes


def test_labels_survive_a_restart_onto_a_fresh_disk_through_the_served_app(tmp_path, data_dir,
                                                                           warm_engine):
    hub = tmp_path / "hub"
    first = fresh_data_dir(data_dir, tmp_path / "first")
    env = {**memeui_env(first), "MEMEUI_STATE_REPO": str(hub), "MEMEUI_REPLY_BACKEND": "retrieval"}
    process, url = start_server(env, cwd=ROOT, timeout=300)
    try:
        connection = __import__("http.client").client.HTTPConnection(
            url.split("//")[1].split(":")[0], int(url.rsplit(":", 1)[1].strip("/")), timeout=120)
        item = call(connection, "next_item", "sticker_emotion", "ann", "library", "")
        call(connection, "label", "sticker_emotion", item["id"], "joy", "ann", "ann:restart")
    finally:
        process.send_signal(signal.SIGTERM)  # a Space restarting: the shutdown pushes
        process.wait(timeout=60)
    assert (hub / "labels" / "label_events.parquet").is_file()
    second = fresh_data_dir(data_dir, tmp_path / "second")
    env = {**memeui_env(second), "MEMEUI_STATE_REPO": str(hub), "MEMEUI_REPLY_BACKEND": "retrieval"}
    process, url = start_server(env, cwd=ROOT, timeout=300)
    try:
        body = json.dumps({"data": ["sticker_emotion", ""]}).encode()
        request = urllib.request.Request(url + "gradio_api/run/current_labels", body,
                                         {"Content-Type": "application/json"})
        rows = json.loads(urllib.request.urlopen(request, timeout=60).read())["data"][0]
        assert [(r["item"], r["label"], r["annotator"]) for r in rows] == [(item["id"], "joy", "ann")]
    finally:
        process.terminate()
        process.wait(timeout=60)
