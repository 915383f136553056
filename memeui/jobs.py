"""The Jobs tab and the jobs API over the trainer (``memeui/trainer.py``): jobs, their logs,
model versions, promote and roll back."""

from __future__ import annotations

import logging
import re
from dataclasses import replace

import gradio as gr
import pandas as pd

from engine import Engine
from engine.training.registry import GATE_KEYS, GATE_KEYS_OF_ROLE
from memeui.access import Access
from memeui.annotate import refused
from memeui.trainer import TASK_OF_RECIPE, Trainer

log = logging.getLogger(__name__)
def build_jobs_tab(trainer: Trainer, access: Access) -> None:
    engine: Engine = trainer.engine

    def jobs_view(request: gr.Request):
        admin = sees_logs(access, request)
        jobs = [j if admin else for_annotators(j) for j in engine.jobs.jobs()]
        rows = [[j.id, j.recipe, j.state, _bar(j.progress), j.message, j.trigger, j.outcome]
                for j in jobs]
        latest = jobs[0] if jobs else None
        curve = pd.DataFrame(latest.curve if latest else [], columns=["step", "loss", "metric"])
        curve = curve.melt(id_vars="step", value_vars=["loss", "metric"], var_name="series",
                           value_name="value").dropna()
        log_text = ("" if latest is None else engine.jobs.log_text(latest.id) if admin
                    else "(a job's log is shown to admins)")
        return (rows, log_text,
                gr.LinePlot(curve, x="step", y="value", color="series"),
                gr.Dropdown(choices=[j.id for j in jobs if j.state in ("queued", "running")]))

    def versions_view(role: str):
        rows = []
        for v in reversed(engine.registry.versions(role)):
            candidate = v.metrics.get("candidate", {})
            live = v.metrics.get("live", {})
            rows.append([v.id, v.status, v.parent or "bundled", v.trigger,
                         *(_metric(side, check, role) for check in ("holdout", "public")
                           for side in (candidate, live)), v.note])
        return rows, gr.Dropdown(choices=[v.id for v in engine.registry.versions(role)])

    def cancel(job_id: str | None, name: str, request: gr.Request):
        access.admin(request, name)
        if not job_id:
            raise gr.Error("Pick a running job.", duration=4)
        try:
            engine.jobs.cancel(job_id)
        except ValueError as error:
            raise gr.Error(str(error), duration=5) from None
        return jobs_view(request)

    def train_now(recipe: str, name: str, request: gr.Request):
        who = access.admin(request, name)
        studio_request(trainer, TASK_OF_RECIPE[recipe], who.name)
        gr.Info("Requested: the job starts in a moment.", duration=3)
        return jobs_view(request)

    def promote(role: str, version: str | None, name: str, request: gr.Request):
        access.admin(request, name)
        if not version:
            raise gr.Error("Pick a version.", duration=4)
        try:
            engine.promote(role, version, note="promoted by hand")
        except ValueError as error:
            raise gr.Error(str(error), duration=5) from None
        trainer.studio.library_changed()
        return versions_view(role)

    def rollback(role: str, name: str, request: gr.Request):
        access.admin(request, name)
        try:
            engine.rollback(role)
        except ValueError as error:
            raise gr.Error(str(error), duration=5) from None
        trainer.studio.library_changed()
        return versions_view(role)

    gr.Markdown("Training jobs run in their own processes from a snapshot of the labels; a "
                "candidate goes live only when it is not worse than the live model on held-out "
                "labels and on the fixed public check.")
    with gr.Row():
        name = gr.Textbox(label="Your name (open mode)", visible=access.open, max_length=64)
        recipe = gr.Dropdown(list(TASK_OF_RECIPE), value="sticker-emotion", label="Recipe",
                             info="sticker-emotion: sticker emotion labels; prerecognizer: "
                                  "utterance emotion labels; selector: best-sticker answers")
        train = gr.Button("Train now", variant="primary", elem_id="jobs-train")
    jobs = gr.Dataframe(headers=["job", "recipe", "state", "progress", "message", "trigger",
                                 "outcome"], interactive=False, elem_id="jobs-table", wrap=True)
    with gr.Row():
        running = gr.Dropdown([], label="Running job", scale=3)
        cancel_button = gr.Button("Cancel job", variant="stop", scale=1)
    with gr.Row():
        curve = gr.LinePlot(x="step", y="value", color="series", label="Latest job: progress")
        log_box = gr.Textbox(label="Latest job: log", lines=10, max_lines=10, autoscroll=True)
    gr.Markdown("### Model versions")
    with gr.Row():
        role = gr.Dropdown(list(TASK_OF_RECIPE), value="sticker-emotion", label="Role", scale=2)
        version = gr.Dropdown([], label="Version", scale=3)
        promote_button = gr.Button("Promote", scale=1)
        rollback_button = gr.Button("Roll back", scale=1)
    versions = gr.Dataframe(headers=["version", "status", "parent", "trigger",
                                     "held-out", "live then", "public check", "live then",
                                     "gate"], interactive=False, elem_id="jobs-versions", wrap=True)
    timer = gr.Timer(2.0)
    job_outputs = [jobs, log_box, curve, running]
    timer.tick(jobs_view, None, job_outputs, api_name=False, queue=False)
    timer.tick(versions_view, role, [versions, version], api_name=False, queue=False)
    role.change(versions_view, role, [versions, version], api_name=False)
    cancel_button.click(cancel, [running, name], job_outputs, api_name=False)
    train.click(train_now, [recipe, name], job_outputs, api_name=False)
    promote_button.click(promote, [role, version, name], [versions, version], api_name=False)
    rollback_button.click(rollback, [role, name], [versions, version], api_name=False)


SERVER_PATH = re.compile(r"(?<![\w.~])/[^\s'\"]+")  # /data/jobs/x/args.json, not 30/300


def without_paths(text: str) -> str:
    """The first line of ``text``, each server path cut to its last part."""
    line = (text or "").strip().splitlines()[0] if (text or "").strip() else ""
    return SERVER_PATH.sub(lambda match: match.group().rstrip("/").rsplit("/", 1)[-1], line)


def for_annotators(job):
    """A job as an annotator sees it: one line of message, error and outcome without server
    paths, and no arguments (they name the server's folders); admins see it whole."""
    return replace(job, args={}, message=without_paths(job.message),
                   error=without_paths(job.error), outcome=without_paths(job.outcome))


def sees_logs(access: Access, request: gr.Request | None) -> bool:
    try:
        return access.identify(request).is_admin
    except gr.Error:  # signed out (a Hub-login Space): the jobs, but no logs
        return False


def _bar(fraction: float, width: int = 10) -> str:
    filled = int(round(fraction * width))
    return f"{'▓' * filled}{'░' * (width - filled)} {fraction:.0%}"


def _metric(metrics: dict, check: str, role: str) -> str:
    """The number the gate compares for ``check`` (held-out or public), named."""
    values = metrics.get(check) or {}
    shown = [f"{key} {values[key]:.1f}" for key in GATE_KEYS_OF_ROLE.get(role, GATE_KEYS)[check]
             if values.get(key) is not None]
    return ", ".join(shown) or "—"


def add_jobs_api(trainer: Trainer, access: Access) -> None:
    """Named endpoints for jobs and model versions (``memeui jobs|models … --server``)."""
    engine = trainer.engine

    def jobs_list(annotator: str = "", request: gr.Request = None) -> list:
        """Every job, newest first: state, progress, metrics, outcome (admins: also its
        arguments and whole error; annotators: one line without server paths)."""
        who = access.identify(request, annotator)
        return [job.to_dict() if who.is_admin else for_annotators(job).to_dict()
                for job in engine.jobs.jobs()]

    def job_cancel(job_id: str, annotator: str = "", request: gr.Request = None) -> dict:
        """Cancel a queued or running job (admins only)."""
        access.admin(request, annotator)
        return refused(lambda: engine.jobs.cancel(job_id).to_dict())

    def train_now(recipe: str = "sticker-emotion", annotator: str = "",
                  request: gr.Request = None) -> dict:
        """Request a fine-tuning job from the labels so far (admins only); it starts within a
        second and shows in /jobs_list."""
        who = access.admin(request, annotator)
        if recipe not in TASK_OF_RECIPE:
            raise gr.Error(f"no recipe {recipe!r}; known: {', '.join(TASK_OF_RECIPE)}")
        return studio_request(trainer, TASK_OF_RECIPE[recipe], who.name)

    def models_list(annotator: str = "", request: gr.Request = None) -> list:
        """Every model version of every role with its metrics and status."""
        access.identify(request, annotator)
        return [version.to_dict() for version in engine.registry.versions()]

    def model_promote(role: str, version: str, annotator: str = "",
                      request: gr.Request = None) -> dict:
        """Serve VERSION of ROLE now (admins only)."""
        access.admin(request, annotator)
        refused(lambda: engine.promote(role, version, note="promoted by hand"))
        trainer.studio.library_changed()
        return engine.registry.get(role, version).to_dict()

    def model_rollback(role: str, version: str = "", annotator: str = "",
                       request: gr.Request = None) -> dict | None:
        """Go back to VERSION (or the one live before) of ROLE (admins only)."""
        access.admin(request, annotator)
        refused(lambda: engine.rollback(role, version or None))
        trainer.studio.library_changed()
        live = engine.registry.live(role)
        return live.to_dict() if live else None

    for function, name in ((jobs_list, "jobs_list"), (job_cancel, "job_cancel"),
                           (train_now, "train"), (models_list, "models_list"),
                           (model_promote, "model_promote"), (model_rollback, "model_rollback")):
        gr.api(function, api_name=name, queue=False)


def studio_request(trainer: Trainer, task: str, who: str) -> dict:
    """A training request the trainer turns into a job within a second."""
    return trainer.studio.store.request_training(task, who, "requested by an admin")

