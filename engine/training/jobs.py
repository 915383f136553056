"""Training jobs: persisted records, one spawned worker process per job, progress, cancel.

A job record (``<data_dir>/jobs/<id>/job.json``) goes queued → running → done | failed |
cancelled; a job that was running when the app stopped is marked ``interrupted`` at the next
start and can be queued again. Each job runs a recipe (``fit(args, out, progress) → metrics``)
in a process of its own (a fresh Python running ``work``, so the app's main module is never
imported again) with its CPU threads capped, so training never holds the server's cores or its GIL; the
worker reports progress as JSON lines the runner reads. Cancel terminates the worker at once.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from engine.settings import thread_environment

log = logging.getLogger(__name__)
STATES = ("queued", "running", "done", "failed", "cancelled", "interrupted")
RECIPES = {"sticker-emotion": "engine.stickers.emotion_head:fit",  # recipe → "module:function"
           "prerecognizer": "engine.emotion.recipes:fit_job",
           "selector": "engine.stickers.recipes:fit"}
POLL_SECONDS = 0.2
WORKER = "import sys; from engine.training.jobs import work; work(sys.argv[1], sys.argv[2])"
KILL_AFTER_SECONDS = 3.0


@dataclass
class Job:
    id: str
    recipe: str
    args: dict
    trigger: str
    state: str = "queued"
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    progress: float = 0.0
    message: str = ""
    curve: list[dict] = field(default_factory=list)  # {"step", "loss"?, "metric"?} per report
    metrics: dict = field(default_factory=dict)
    error: str = ""
    outcome: str = ""  # what happened after: promoted, rejected (and why)

    def to_dict(self) -> dict:
        return asdict(self)


class JobRunner:
    """Runs at most ``max_running`` jobs at a time; ``on_finished(job, out_folder)`` is called
    (in the runner's thread) when a job is done, to register and gate its candidate."""

    def __init__(self, root: Path, max_running: int = 1, threads: int = 1,
                 on_finished: Callable[[Job, Path], str] | None = None) -> None:
        self.root = Path(root)  # created with the first job's record
        self.max_running, self.threads = max_running, threads
        self.on_finished = on_finished
        self._lock = threading.RLock()
        self._jobs: dict[str, Job] = {}
        self._processes: dict[str, subprocess.Popen] = {}
        self._offsets: dict[str, int] = {}
        self._cancelled: set[str] = set()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._recovered = False
        for path in sorted(self.root.glob("*/job.json")):
            job = Job(**json.loads(path.read_text("utf-8")))
            self._jobs[job.id] = job

    def _recover(self) -> None:
        """Jobs left running by a process that is gone are interrupted. Done when this runner
        starts (the app's, or a command that trains), never by a process that only reads."""
        for job in self._jobs.values():
            if job.state == "running" and job.id not in self._processes:
                job.state, job.message = "interrupted", "the app stopped while it ran"
                self._save(job)
        self._recovered = True

    # ------------------------------------------------------------ records

    def _save(self, job: Job) -> None:
        folder = self.root / job.id
        folder.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=folder, prefix=".job.")
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            json.dump(job.to_dict(), file)
        os.replace(temporary, folder / "job.json")

    def jobs(self) -> list[Job]:
        with self._lock:
            return sorted(self._jobs.values(), key=lambda job: job.created, reverse=True)

    def get(self, job_id: str) -> Job:
        with self._lock:
            if job_id not in self._jobs:
                raise ValueError(f"there is no job {job_id!r}")
            return self._jobs[job_id]

    def log_text(self, job_id: str, tail: int = 20_000) -> str:
        path = self.root / self.get(job_id).id / "log.txt"
        return path.read_text("utf-8", errors="replace")[-tail:] if path.is_file() else ""

    def out_folder(self, job: Job) -> Path:
        return self.root / job.id / "candidate"

    # ------------------------------------------------------------ control

    def submit(self, recipe: str, args: dict, trigger: str) -> Job:
        if recipe not in RECIPES:
            raise ValueError(f"unknown recipe {recipe!r}; known: {', '.join(RECIPES)}")
        self.start()  # recovers first, so a stale "running" record is not taken for a live one
        job = Job(f"job-{time.strftime('%Y%m%d-%H%M%S')}-{os.urandom(3).hex()}", recipe, args,
                  trigger)
        with self._lock:
            self._jobs[job.id] = job
            self._save(job)
        return job  # the runner's thread, started above, picks it up

    def requeue(self, job_id: str) -> Job:
        with self._lock:
            job = self.get(job_id)
            if job.state not in ("interrupted", "failed", "cancelled"):
                raise ValueError(f"{job_id} is {job.state}; only interrupted, failed or "
                                 "cancelled jobs are queued again")
            job.state, job.progress, job.message, job.error, job.curve = "queued", 0.0, "", "", []
            self._save(job)
        self.start()
        return job

    def cancel(self, job_id: str) -> Job:
        with self._lock:
            job = self.get(job_id)
            if job.state == "queued":
                job.state, job.finished = "cancelled", time.time()
                self._save(job)
            elif job.state == "running":
                self._cancelled.add(job_id)
                process = self._processes.get(job_id)
                if process is not None:
                    process.terminate()
                    threading.Timer(KILL_AFTER_SECONDS, process.kill).start()  # if it ignores TERM
            else:
                raise ValueError(f"{job_id} is {job.state} already")
            return job

    def start(self) -> None:
        """The runner's thread (started on the first submit, or by the app)."""
        with self._lock:
            if not self._recovered:
                self._recover()
            if self._thread is None or not self._thread.is_alive():
                self._stop.clear()
                self._thread = threading.Thread(target=self._loop, name="memeui-jobs", daemon=True)
                self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            for process in self._processes.values():
                process.terminate()

    def wait(self, job_id: str, timeout: float = 600) -> Job:
        deadline = time.monotonic() + timeout
        while self.get(job_id).state in ("queued", "running"):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{job_id} still {self.get(job_id).state} after {timeout}s")
            time.sleep(POLL_SECONDS)
        return self.get(job_id)

    # ------------------------------------------------------------ the loop

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._step()
            except Exception:  # the loop must outlive any one job's trouble
                log.exception("job runner step failed")
            time.sleep(POLL_SECONDS)

    def _step(self) -> None:
        with self._lock:
            running = [job_id for job_id, p in self._processes.items()]
            for job_id in running:
                self._read_progress(self._jobs[job_id])
                if self._processes[job_id].poll() is not None:
                    self._finish(self._jobs[job_id], self._processes.pop(job_id))
            queued = sorted((j for j in self._jobs.values() if j.state == "queued"),
                            key=lambda job: job.created)
            for job in queued[: max(0, self.max_running - len(self._processes))]:
                self._launch(job)

    def _launch(self, job: Job) -> None:
        folder = self.root / job.id
        for stale in ("progress.jsonl", "result.json"):
            (folder / stale).unlink(missing_ok=True)
        (folder / "args.json").write_text(json.dumps(job.args))
        with (folder / "log.txt").open("ab") as log_file:
            process = subprocess.Popen(
                [sys.executable, "-c", WORKER, RECIPES[job.recipe], str(folder)],
                env={**os.environ, **thread_environment(self.threads)}, stdout=log_file, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL)
        job.state, job.started, job.message = "running", time.time(), "starting"
        self._processes[job.id], self._offsets[job.id] = process, 0
        self._save(job)

    def _read_progress(self, job: Job) -> None:
        path = self.root / job.id / "progress.jsonl"
        if not path.is_file():
            return
        with path.open("rb") as file:
            file.seek(self._offsets.get(job.id, 0))
            chunk = file.read()
        complete = chunk[: chunk.rfind(b"\n") + 1]
        self._offsets[job.id] = self._offsets.get(job.id, 0) + len(complete)
        for line in complete.decode("utf-8", errors="replace").splitlines():
            report = json.loads(line)
            job.progress, job.message = report["progress"], report["message"]
            if "loss" in report or "metric" in report:
                job.curve.append({k: report[k] for k in ("step", "loss", "metric") if k in report})
        if complete:
            self._save(job)

    def _finish(self, job: Job, process: subprocess.Popen) -> None:
        result_path = self.root / job.id / "result.json"
        result = json.loads(result_path.read_text("utf-8")) if result_path.is_file() else {}
        job.finished = time.time()
        if job.id in self._cancelled:
            self._cancelled.discard(job.id)
            job.state, job.message = "cancelled", "cancelled"
        elif "metrics" in result:
            job.state, job.metrics, job.progress = "done", result["metrics"], 1.0
        else:
            job.state = "failed"
            job.error = result.get("error") or f"the worker exited with code {process.returncode}"
            job.message = job.error.splitlines()[0] if job.error else "failed"
        self._save(job)
        if job.state == "done" and self.on_finished is not None:
            try:
                job.outcome = self.on_finished(job, self.out_folder(job))
            except Exception as error:  # noqa: BLE001 - the outcome says what went wrong
                log.exception("adopting %s failed", job.id)
                job.outcome = f"not adopted: {error}"
            self._save(job)


def _die_with_parent() -> None:
    """On Linux, the worker is killed with the app (even by SIGKILL), so a job never trains
    on with nobody to adopt it: the next start marks it interrupted."""
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() == 1:  # the app died before the line above
        sys.exit(1)


def work(target: str, folder: str | Path) -> None:
    """A worker process: run the recipe on ``args.json``, report progress to
    ``progress.jsonl`` and the end to ``result.json`` (threads are capped by the runner's
    environment, set before any library loads)."""
    _die_with_parent()
    logging.basicConfig(stream=sys.stdout, level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    folder = Path(folder)
    args = json.loads((folder / "args.json").read_text("utf-8"))
    progress_file = (folder / "progress.jsonl").open("a", encoding="utf-8")
    step = [0]

    def progress(fraction: float, message: str, **values) -> None:
        step[0] += 1
        progress_file.write(json.dumps({"progress": float(fraction), "message": message,
                                        "step": step[0], **values}) + "\n")
        progress_file.flush()
        logging.getLogger("recipe").info("%3.0f%% %s %s", 100 * fraction, message, values or "")

    try:
        module, function = target.split(":")
        metrics = getattr(importlib.import_module(module), function)(
            args, folder / "candidate", progress)
        result = {"metrics": metrics}
    except Exception as error:  # noqa: BLE001 - the runner reports it as the job's error
        logging.getLogger("recipe").exception("the recipe failed")
        result = {"error": f"{type(error).__name__}: {error}\n{traceback.format_exc(limit=3)}"}
    (folder / "result.json").write_text(json.dumps(result))
    progress_file.close()

