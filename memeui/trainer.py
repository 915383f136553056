"""The trainer: people's training requests in the store become jobs in the engine.

It polls the label store: each pending request of a task that has a recipe becomes a job on the
engine's runner, fed a Parquet snapshot of the labels (never the live file). When the job is
done the engine registers its candidate, gates it and, if it is not worse, serves it at once;
the request then records what happened. No gradio here."""

from __future__ import annotations

import logging
import threading

from memeui.studio import Studio

log = logging.getLogger(__name__)
RECIPE_OF_TASK = {"sticker_emotion": "sticker-emotion", "utterance_emotion": "prerecognizer",
                  "best_sticker": "selector"}  # the model each task's labels train
TASK_OF_RECIPE = {recipe: task for task, recipe in RECIPE_OF_TASK.items()}
POLL_SECONDS = 1.0


class Trainer:
    def __init__(self, studio: Studio) -> None:
        self.studio, self.engine = studio, studio.engine
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def start(self) -> None:
        self.engine.jobs.start()
        self._thread = threading.Thread(target=self._loop, name="memeui-trainer", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _loop(self) -> None:
        while not self._stop.wait(POLL_SECONDS):
            try:
                self.poll()
            except Exception:  # the next poll tries again; the app keeps serving
                log.exception("turning training requests into jobs failed")

    def poll(self) -> list[str]:
        """Pending requests → jobs; finished jobs → the requests' outcome. Returns new job ids."""
        store, started = self.studio.store, []
        pending: dict[str, list[dict]] = {}
        for request in store.training_requests(status="pending"):
            pending.setdefault(request["task"], []).append(request)
        for task, requests in pending.items():
            if task == "sticker_text":
                self.apply_text_corrections(requests)
                continue
            job = self.submit(RECIPE_OF_TASK[task], requests[-1]["requested_by"])  # one for all
            for request in requests:
                store.update_training_request(request["id"], "running", job.id)
            started.append(job.id)
        for request in store.training_requests(status="running"):
            job = next((j for j in self.engine.jobs.jobs() if j.id == request["job"]), None)
            if job is None or job.state in ("queued", "running") or \
                    (job.state == "done" and not job.outcome):
                continue
            if job.state == "done":
                self.studio.apply_corrections()  # people's labels win over any model
                self.studio.library_changed()  # suggestions come from the model now live
            store.update_training_request(request["id"], job.state, job.id)  # then: all live
        return started

    def apply_text_corrections(self, requests: list[dict]) -> None:
        """Sticker text corrections need no training: a new index version reads them."""
        self.studio.apply_corrections()
        version = f"index {self.engine.live.get().index.key}"
        for request in requests:
            self.studio.store.update_training_request(request["id"], "done", version)

    def submit(self, recipe: str, trigger: str):
        snapshot = self.studio.store.snapshot(self.engine.settings.data_dir / "snapshots")
        return self.engine.train(recipe, snapshot, trigger)
