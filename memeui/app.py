"""The Blocks app: one tab per capability, all sharing one Engine."""

from __future__ import annotations

import inspect
import logging
import re
import threading

import gradio as gr
from starlette.middleware import Middleware

from annotations.feedback import import_feedback_file
from annotations.users import USERS_FILE, Users
from engine import Engine
from memeui.access import Access
from memeui.annotate import (HOTKEYS_JS, add_label_api, build_annotate_tab, build_campaigns_view,
                             build_review_view, build_stats_tab)
from memeui.chat import build_chat_tab
from memeui.jobs import add_jobs_api, build_jobs_tab
from memeui.emotion import build_emotion_tab
from memeui.library import build_library_tab
from memeui.limits import LoginThrottle
from memeui.search import build_search_tab
from memeui.state import StateSync
from memeui.studio import Studio
from memeui.trainer import Trainer

log = logging.getLogger(__name__)
TITLE = "memeui · chat with stickers"
CSS = """
#chatbot img { max-height: 160px; width: auto; }  /* stickers, not posters */
#chat-alternatives .grid-container { grid-template-columns: repeat(auto-fill, 110px) !important; }
#chat-alternatives img { padding: 4px 4px 36px; }  /* the whole sticker above its caption (an emoji in it makes the caption ~29 px tall) */
"""
FEEDBACK_FILE = "feedback.jsonl"  # chat labels before the store: imported once at start
QUEUE_SIZE = 64  # requests waiting beyond this are refused ("queue is full") instead of piling up


def open_studio(engine: Engine) -> Studio:
    """The label store wired to the engine; people's corrections apply before the index loads."""
    studio = Studio.open(engine)
    engine.sticker_overrides = studio.corrections()
    return studio


def access_for(engine: Engine) -> Access:
    """Who may do what: Hub logins on a Space with hf_oauth, the users file under the data
    dir, or open mode without either."""
    s = engine.settings
    admins = tuple(name.strip() for name in s.admins.split(",") if name.strip())
    return Access(Users(s.data_dir / USERS_FILE), oauth=s.hf_oauth, admins=admins)


class Blocks(gr.Blocks):
    """Gradio's Blocks, where a call may leave out trailing values that have defaults (as
    ``gradio_client`` does), and a call with too few values is told which the endpoint takes
    (Gradio's own answer names Python objects)."""

    def validate_inputs(self, block_fn, inputs: list) -> None:
        if len(inputs) < len(block_fn.inputs):
            try:
                parameters = [p for p in inspect.signature(block_fn.fn).parameters.values()
                              if p.kind is p.POSITIONAL_OR_KEYWORD and p.annotation not in
                              (gr.Request, "gr.Request", gr.Progress, "gr.Progress")]
            except (TypeError, ValueError):
                parameters = []
            missing = parameters[len(inputs):len(block_fn.inputs)]
            if len(parameters) >= len(block_fn.inputs) and missing and \
                    all(p.default is not p.empty for p in missing):
                inputs.extend(p.default for p in missing)  # the list the call goes on with
            else:
                names = [p.name for p in parameters[: len(block_fn.inputs)]]
                raise gr.Error(f"This endpoint takes {len(block_fn.inputs)} values"
                               + (f" ({', '.join(names)})" if len(names) == len(block_fn.inputs)
                                  else "")
                               + f"; the request sent {len(inputs)}.", duration=8)
        super().validate_inputs(block_fn, inputs)

    async def preprocess_data(self, block_fn, inputs, state, explicit_call: bool = False):
        """An input a component cannot read (a broken picture) is the caller's to fix: said
        as a message, with file names but not the server's paths."""
        try:
            return await super().preprocess_data(block_fn, inputs, state, explicit_call)
        except gr.Error:
            raise
        except Exception as error:  # noqa: BLE001 - every input problem gets its message
            text = re.sub(r"(?:[A-Za-z]:)?[\\/][^\s'\"]*[\\/]([^\\/\s'\"]+)", r"\1", str(error))
            raise gr.Error(f"An input cannot be read: {text}", duration=8) from None


def build_app(engine: Engine, studio: Studio | None = None, access: Access | None = None,
              trainer: Trainer | None = None) -> gr.Blocks:
    studio = studio or open_studio(engine)
    access = access or access_for(engine)
    trainer = trainer or Trainer(studio)
    with Blocks(title=TITLE) as demo:
        gr.Markdown(f"## {TITLE}")
        if access.oauth:
            gr.LoginButton()
        with gr.Tab("Chat"):
            picker, picker_choices = build_chat_tab(engine, studio.record_feedback)
        with gr.Tab("Search"):
            build_search_tab(engine)
        with gr.Tab("Emotion"):
            build_emotion_tab(engine)
        with gr.Tab("Library"):
            removable, removable_choices = build_library_tab(engine, access, studio.library_changed)
        with gr.Tab("Annotate") as annotate, gr.Tabs():
            with gr.Tab("Label"):
                build_annotate_tab(studio, access, annotate)
            with gr.Tab("Review") as review:
                build_review_view(studio, access, review)
        with gr.Tab("Stats"):
            build_stats_tab(studio, access)
            build_campaigns_view(studio, access)
        with gr.Tab("Jobs"):
            build_jobs_tab(trainer, access)
        add_label_api(studio, access)
        add_jobs_api(trainer, access)
        demo.load(picker_choices, None, picker, api_name=False, queue=False)
        demo.load(removable_choices, None, removable, api_name=False, queue=False)
        demo.load(None, js=HOTKEYS_JS, api_name=False)
    demo.queue(max_size=QUEUE_SIZE)
    return demo


def start(engine: Engine, studio: Studio, trainer: Trainer | None = None,
          sync: StateSync | None = None) -> Trainer:
    """Background work while serving: the models load, the stickers become label items, old
    chat feedback moves into the store, training requests become jobs, and (``sync``) the
    state is pushed to its repo every few minutes and at shutdown."""
    def items_then_feedback() -> None:
        try:
            studio.ensure_items()
            import_feedback_file(studio.store, engine.settings.data_dir / FEEDBACK_FILE)
        except Exception:  # the first request that needs the items raises it again, visibly
            log.exception("preparing the label items failed")

    engine.warm_up()
    threading.Thread(target=items_then_feedback, name="memeui-label-items", daemon=True).start()
    trainer = trainer or Trainer(studio)
    trainer.start()
    if sync is not None:
        sync.start(studio.store)
    return trainer


def launch(demo: gr.Blocks, engine: Engine, host: str | None = None, port: int | None = None,
           access: Access | None = None, **kwargs):
    """Serve the app; sticker files are the only local files it hands to browsers; with a
    users file, only signed-in users reach it."""
    access = access or access_for(engine)
    if access.login() is not None:  # wrong-password bursts are refused (memeui/limits.py)
        app_kwargs = kwargs.pop("app_kwargs", None) or {}
        kwargs["app_kwargs"] = {**app_kwargs, "middleware": [
            *app_kwargs.get("middleware", []), Middleware(LoginThrottle)]}
    return demo.launch(
        auth=access.login(), auth_message="memeui: sign in with your annotator account",
        server_name=host, server_port=port,
        allowed_paths=[str(path) for path in engine.settings.packs] + [str(engine.user_packs_dir)],
        max_file_size=f"{engine.settings.max_upload_mb}mb",  # Gradio refuses it before reading
        theme=gr.themes.Soft(), css=CSS, show_error=False, **kwargs,  # gr.Error only: no internals
    )
