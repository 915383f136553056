"""The label store on Postgres, where several app processes share it: keys honoured across
processes, migrations run once when processes open a new store together, a server restarted
under load loses nothing acknowledged, and a server that is down is named, not hung on."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from annotations.local_postgres import LocalPostgres
from annotations.store import MIGRATIONS, Item, LabelStore, StoreUnavailable

ROOT = Path(__file__).resolve().parents[2]
EKMAN = ("anger", "disgust", "fear", "joy", "neutral", "sadness", "surprise")
LABELLER = """
import sys
from annotations.store import LabelStore
store = LabelStore(sys.argv[1], ("joy", "fear"))
ids = [store.label("sticker_emotion", f"s{i % 20}", "joy", "ann", key=f"call-{i}") for i in range(200)]
print(",".join(map(str, ids)))
"""


def items(n: int) -> list[Item]:
    return [Item(f"s{i}", "sticker_emotion", {"label": f"sticker {i}"}, "pack", i) for i in range(n)]


def processes(n: int, code: str, *args: str) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-c", code, *args], cwd=ROOT, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(n)]


def test_processes_opening_a_new_store_together_migrate_it_once(postgres_server):
    url = postgres_server.create_database("opened_together")
    opening = processes(4, "import sys\nfrom annotations.store import LabelStore\n"
                           "print(LabelStore(sys.argv[1]).schema_version)", url)
    outputs = [p.communicate(timeout=120) for p in opening]
    assert [out.strip() for out, _ in outputs] == [str(len(MIGRATIONS))] * 4, outputs
    store = LabelStore(url)
    assert store._sql("SELECT count(*) FROM schema_migrations")[0][0] == len(MIGRATIONS)
    store.close()


def test_a_key_retried_from_another_process_is_written_once(postgres_server):
    """Two app processes answer the same client's retries (a load balancer moved it): the
    same 200 keys from both, at once, are 200 events, and both processes return the same ids."""
    url = postgres_server.create_database("keys_across_processes")
    store = LabelStore(url, ("joy", "fear"))
    store.put_items(items(20))
    racing = processes(2, LABELLER, url)
    outputs = [p.communicate(timeout=120) for p in racing]
    assert all(p.returncode == 0 for p in racing), outputs
    first, second = (out.strip().split(",") for out, _ in outputs)
    assert first == second
    assert len(store.events()) == 200 and len(set(first)) == 200
    store.close()


def test_a_restart_under_load_loses_no_acknowledged_label():
    """Writers keep labelling while the server is killed (``immediate``: no clean shutdown)
    and started again; a call that fails says the store is unavailable and is retried with its
    key, as the app's clients do. Every acknowledged id is there once, nothing is written twice."""
    with LocalPostgres() as server:
        store = LabelStore(server.create_database("restarted"), EKMAN)
        store.put_items(items(50))
        acknowledged, unavailable, stop = [], [], threading.Event()

        def write(worker: int) -> None:
            n = 0
            while not stop.is_set():
                key = f"w{worker}-{n}"
                try:
                    acknowledged.append((key, store.label("sticker_emotion", f"s{n % 50}", "joy",
                                                          f"writer-{worker}", key=key)))
                    n += 1
                except StoreUnavailable as error:
                    unavailable.append(str(error))
                    time.sleep(0.05)  # and retry the same key

        writers = [threading.Thread(target=write, args=(w,)) for w in range(4)]
        for writer in writers:
            writer.start()
        time.sleep(1.0)
        before = len(acknowledged)
        server.restart("immediate")
        time.sleep(1.0)
        stop.set()
        for writer in writers:
            writer.join(timeout=60)
        assert before > 0 and len(acknowledged) > before  # labels went in before and after
        assert unavailable and "did not answer" in unavailable[0] and "try again" in unavailable[0]
        events = store.events()
        stored = {e.id for e in events}
        assert {event_id for _, event_id in acknowledged} <= stored  # nothing acknowledged lost
        keys = store._sql("SELECT request_key, count(*) FROM label_events GROUP BY request_key "
                          "HAVING count(*) > 1")
        assert keys == [] and len(events) == len({key for key, _ in acknowledged})
        store.close()


def test_a_store_whose_server_is_down_says_so_without_its_password():
    with pytest.raises(StoreUnavailable, match=r"postgresql://memeui:\*\*\*@127\.0\.0\.1:\d+/x does not answer"):
        LabelStore(f"postgresql://memeui:secret@127.0.0.1:{_closed_port()}/x")


def _closed_port() -> int:
    from annotations.local_postgres import free_port

    return free_port()  # nothing listens there once the probe closed
