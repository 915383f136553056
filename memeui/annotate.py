"""The Annotate and Stats tabs and the label API, thin functions over the studio.

``memeui/studio.py`` holds the wiring (stickers of the live library as items with the engine's
suggestion, dialogues as utterance and best-sticker items, labels that may request
fine-tuning, people's corrections as the engine's sticker overrides). The tab and the named API
endpoints (``next_item``, ``label``, ``undo``, ``agreement`` …) each check the caller's
identity and role on the server, then call it.
"""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path

import gradio as gr
import pandas as pd

from annotations.agreement import agreement
from annotations.exchange import FORMATS, export_labels
from annotations.exchange import import_rows as exchange_rows
from annotations.store import (DEFAULT_ORDER, NO_STICKER, NONE_FITS, ORDERS, TASKS, UNSURE, LabelError,
                               StoreUnavailable, check_name)
from engine import Engine
from memeui.access import Access, Identity
from memeui.studio import Studio, dialogues_from_rows, sticker_listing
from memeui.trainer import RECIPE_OF_TASK

log = logging.getLogger(__name__)
TASK_NAMES = {"sticker_emotion": "Sticker emotion", "utterance_emotion": "Utterance emotion",
              "best_sticker": "Best sticker", "sticker_text": "Sticker text"}
ALL_PACKS = "all packs"
VIDEO_SUFFIXES = {".mp4", ".webm"}  # stickers a browser plays as video, not as an image


# ---------------------------------------------------------------- the tab

HOTKEYS_JS = """
() => {
  if (window.memeuiHotkeys) return;
  window.memeuiHotkeys = true;
  const visible = (el) => el && el.offsetParent !== null;
  document.addEventListener('keydown', (event) => {
    // only where keys type text: a radio or checkbox that was clicked keeps the hotkeys
    const target = event.target;
    const typing = ['TEXTAREA', 'SELECT'].includes(target.tagName) || target.isContentEditable
      || (target.tagName === 'INPUT' && !['radio', 'checkbox', 'button', 'submit', 'range',
                                          'color', 'file'].includes(target.type));
    if (typing) return;
    let button = null;
    if (/^[1-9]$/.test(event.key) && !event.ctrlKey && !event.metaKey && !event.altKey) {
      button = document.querySelector('#annotate-label-' + event.key);
    } else if ((event.key === 'z' && (event.ctrlKey || event.metaKey)) || event.key === 'Backspace') {
      button = document.querySelector('#annotate-undo');
    } else if (event.key === 'Enter') {
      button = document.querySelector('#annotate-accept');
    } else if (event.key === 's') {
      button = document.querySelector('#annotate-skip');
    }
    if (visible(button)) { event.preventDefault(); button.click(); }
  });
}
"""


def label_choices(engine: Engine) -> list[str]:
    return [*engine.scheme.labels, UNSURE]


def build_annotate_tab(studio: Studio, access: Access, tab: gr.Tab) -> None:
    """The labelling view; its first item loads when the tab is opened."""
    labels = label_choices(studio.engine)

    def who(request: gr.Request | None, name: str) -> Identity:
        return access.identify(request, name)

    def show(view: dict | None, note: str = ""):
        """Everything the tab shows for one item (or for "nothing left")."""
        if view is None:
            empty = "**Nothing left to label here.** Pick another task or pack, or come back later."
            return (None, gr.update(value=None, visible=False), gr.update(visible=False),
                    gr.update(visible=False),
                    gr.update(visible=False), f"{note}\n\n{empty}".strip(), "",
                    *[gr.update(variant="secondary") for _ in labels], [], "", "", "", "")
        payload, task = view["payload"], view["task"]
        progress = f"**{view['done']} of {view['total']}** labelled by you" + \
            (f" · {view['skipped']} skipped" if view.get("skipped") else "")
        emotion_task = task in ("sticker_emotion", "utterance_emotion")
        sticker = payload.get("file") if task in ("sticker_emotion", "sticker_text") else None
        moving = bool(sticker) and Path(sticker).suffix.lower() in VIDEO_SUFFIXES
        if task == "utterance_emotion":
            turns = "\n".join(
                f"{'➡️ **' if turn['id'] == view['id'] else ''}{turn['speaker']}: {turn['text']}"
                f"{'**' if turn['id'] == view['id'] else ''}" for turn in view["dialogue"])
            info = f"Label the marked turn, in its dialogue:\n\n{turns}"
        elif task == "best_sticker":
            info = "Which sticker fits as the next turn?\n\n" + "\n".join(
                f"> {turn}" for turn in payload.get("turns", []))
        else:
            info = (f"### {payload.get('emoji', '')} {payload.get('label', '')}\n"
                    f"tags: {', '.join(payload.get('tags', [])) or '—'}  \n"
                    f"text in it: {payload.get('ocr') or '—'}  \npack: {payload.get('pack', '')}")
        if view.get("suggestion") and emotion_task:
            info += (f"\n\nSuggested: **{view['suggestion']}** "
                     f"({(view.get('confidence') or 0):.0%}; Enter accepts)")
        variants = [gr.update(variant="primary" if emotion_task and label == view.get("suggestion")
                              else "secondary") for label in labels]
        gallery = [(c["file"], f"{c['emoji']} {c['label']}") for c in view.get("candidates", [])]
        return (gr.update(value=None if moving else sticker, visible=not moving),
                gr.update(value=sticker if moving else None, visible=moving),
                gr.update(visible=emotion_task), gr.update(visible=task == "best_sticker"),
                gr.update(visible=task == "sticker_text"), f"{note}\n\n{info}".strip(), progress,
                *variants, gallery, payload.get("label", ""), ", ".join(payload.get("tags", [])),
                payload.get("ocr", ""), view["id"])

    def load(task: str, order: str, pack: str, name: str, request: gr.Request, note: str = ""):
        identity = who(request, name)
        try:
            view = studio.next_item(task, identity.name, order, None if pack == ALL_PACKS else pack)
        except (LabelError, StoreUnavailable) as error:
            raise gr.Error(str(error), duration=5) from None
        return (view, *show(view, note))

    def answer(task: str, order: str, pack: str, name: str, current: dict | None, label: str,
               request: gr.Request, shown: list[str] | None = None):
        identity = who(request, name)
        studio.label_rate.check(request, f"user:{identity.name}")
        if not current:
            raise gr.Error("Nothing to label: pick a task.", duration=4)
        label = current.get("suggestion") if label == "__accept__" else label
        if not label:
            raise gr.Error("No suggestion to accept: pick a label.", duration=4)
        try:
            studio.label(task, current["id"], label, identity, session=_session(request),
                         shown=shown)
        except (LabelError, StoreUnavailable) as error:
            raise gr.Error(str(error), duration=5) from None
        return load(task, order, pack, name, request)

    def skip(task, order, pack, name, current, request: gr.Request):
        identity = who(request, name)
        if current:
            studio.store.skip(task, current["id"], identity.name, session=_session(request))
        return load(task, order, pack, name, request)

    def undo(task, order, pack, name, request: gr.Request):
        identity = who(request, name)
        undone = studio.store.undo(task, identity.name, session=_session(request))
        if undone is None:
            return load(task, order, pack, name, request, "Nothing to undo.")
        item = studio.store.item(task, undone.item)
        view = studio.view(item, identity.name, None if pack == ALL_PACKS else pack)
        return (view, *show(view, f"Undone: {undone.kind} `{undone.label or ''}`"))

    def pick(task, order, pack, name, current, selected: gr.SelectData, request: gr.Request):
        candidates = (current or {}).get("candidates", [])
        if not candidates or selected.index >= len(candidates):
            raise gr.Error("Pick one of the stickers shown.", duration=4)
        return answer(task, order, pack, name, current, candidates[selected.index]["id"],
                      request, [c["id"] for c in candidates])

    def labelled(label: str):
        def handler(task, order, pack, name, current, request: gr.Request):
            return answer(task, order, pack, name, current, label, request)
        return handler

    def no_pick(kind: str):
        def handler(task, order, pack, name, current, request: gr.Request):
            shown = [c["id"] for c in (current or {}).get("candidates", [])]
            return answer(task, order, pack, name, current, kind, request, shown)
        return handler

    def correct(task, order, pack, name, current, label, tags, ocr, request: gr.Request):
        value = {"label": label.strip(), "tags": [t.strip() for t in tags.split(",") if t.strip()],
                 "ocr": ocr.strip()}
        return answer(task, order, pack, name, current, json.dumps(value), request)

    gr.Markdown(access.banner(), elem_id="annotate-banner")
    with gr.Row():
        task = gr.Radio([(TASK_NAMES[t], t) for t in TASKS], value="sticker_emotion",
                        label="Task", elem_id="annotate-task", scale=4)
        order = gr.Dropdown(list(ORDERS), value=DEFAULT_ORDER, label="Order", scale=1)
        pack = gr.Dropdown([ALL_PACKS], value=ALL_PACKS, label="Pack", scale=1,
                           elem_id="annotate-pack")
        name = gr.Textbox(label="Your name (open mode)", value="", placeholder="anonymous",
                          visible=access.open, scale=1, elem_id="annotate-name", max_length=64)
    current = gr.State(None)
    with gr.Row():
        with gr.Column(scale=2):
            picture = gr.Image(label="Sticker", height=300, interactive=False,
                               elem_id="annotate-sticker", show_label=False)  # GIFs animate
            clip = gr.Video(label="Sticker", height=300, interactive=False, autoplay=True,
                            loop=True, visible=False, show_label=False)  # MP4/WebM stickers
        with gr.Column(scale=3):
            progress = gr.Markdown(elem_id="annotate-progress")
            info = gr.Markdown(elem_id="annotate-info")
    with gr.Column(visible=True) as emotion_panel:
        with gr.Row():
            buttons = [gr.Button(f"{number} · {label}", elem_id=f"annotate-label-{number}",
                                 size="sm", min_width=80)
                       for number, label in enumerate(labels, start=1)]
    with gr.Column(visible=False) as best_panel:
        candidates = gr.Gallery(label="Candidates: click the one that fits", columns=5,
                                height=260, object_fit="contain", allow_preview=False,
                                elem_id="annotate-candidates")
        with gr.Row():
            none_fits = gr.Button("None fits", elem_id="annotate-none-fits")
            no_sticker = gr.Button("No sticker should be sent here", elem_id="annotate-no-sticker")
    with gr.Column(visible=False) as text_panel:
        with gr.Row():
            text_label = gr.Textbox(label="Label", max_length=200, elem_id="annotate-text-label")
            text_tags = gr.Textbox(label="Tags (comma-separated)", max_length=1000)
            text_ocr = gr.Textbox(label="Text in the sticker (OCR)", max_length=2000)
        save_text = gr.Button("Save correction", variant="primary", elem_id="annotate-save-text")
    with gr.Row():
        accept = gr.Button("Accept suggestion (Enter)", elem_id="annotate-accept", size="sm")
        skip_button = gr.Button("Skip (S)", elem_id="annotate-skip", size="sm")
        undo_button = gr.Button("Undo (Ctrl+Z / Backspace)", elem_id="annotate-undo", size="sm")
    item_id = gr.Textbox(visible=False)

    shown_outputs = [picture, clip, emotion_panel, best_panel, text_panel, info, progress, *buttons,
                     candidates, text_label, text_tags, text_ocr, item_id]
    outputs = [current, *shown_outputs]
    where = [task, order, pack, name]
    fast = {"api_name": False, "concurrency_id": "labels", "concurrency_limit": 16}
    for control in (task.change, order.change, pack.change, name.submit):
        control(load, where, outputs, **fast)
    for button, label in zip(buttons, labels):
        button.click(labelled(label), [*where, current], outputs, **fast)
    accept.click(labelled("__accept__"), [*where, current], outputs, **fast)
    skip_button.click(skip, [*where, current], outputs, **fast)
    undo_button.click(undo, where, outputs, **fast)
    candidates.select(pick, [*where, current], outputs, **fast)
    none_fits.click(no_pick(NONE_FITS), [*where, current], outputs, **fast)
    no_sticker.click(no_pick(NO_STICKER), [*where, current], outputs, **fast)
    save_text.click(correct, [*where, current, text_label, text_tags, text_ocr], outputs, **fast)

    def packs_of(task_name: str):
        studio.ensure_items()
        return gr.Dropdown(choices=[ALL_PACKS, *studio.store.groups(task_name)], value=ALL_PACKS)

    task.change(packs_of, task, pack, api_name=False, queue=False)
    tab.select(load, where, outputs, **fast)


def agreement_bars(figures: dict) -> pd.DataFrame:
    """Each annotator's agreement with the majority and with the model, one bar each, side by
    side (a bar per annotator and measure: Gradio stacks bars that share an x)."""
    return pd.DataFrame(
        [{"bar": f"{a} · {measure}", "annotator": a, "measure": measure, "agreement": value}
         for a, row in figures["annotators"].items()
         for measure, value in (("majority", row["agreement_with_majority"]),
                                ("model", row["agreement_with_model"]))
         if value is not None], columns=["bar", "annotator", "measure", "agreement"])


def learning_curve(engine: Engine, task: str) -> pd.DataFrame:
    """For the deployment's own labels: each promoted version of the task's model by the labels
    it was trained on (with its held-out slice), its held-out accuracy and the reader's it
    replaced on the same slice."""
    recipe, rows = RECIPE_OF_TASK.get(task), []
    for version in engine.registry.versions(recipe) if recipe else []:
        metrics = version.metrics
        if version.status not in ("live", "retired") or "train" not in metrics:
            continue
        labels = metrics["train"] + metrics.get("holdout", 0)
        for reader, side in (("promoted version", "candidate"), ("the reader it replaced", "live")):
            accuracy = ((metrics.get(side) or {}).get("holdout") or {}).get("accuracy")
            if accuracy is not None:
                rows.append({"labels": labels, "accuracy": accuracy, "reader": reader})
    return pd.DataFrame(rows, columns=["labels", "accuracy", "reader"])


def build_stats_tab(studio: Studio, access: Access) -> None:
    """The admin view: label distribution, agreement, pending fine-tuning, export, import."""
    def stats(task: str, name: str, request: gr.Request):
        access.admin(request, name)
        studio.ensure_items()
        figures = agreement(studio.store, task)
        counts = studio.store.stats()
        distribution = pd.DataFrame(
            [{"label": k, "count": v} for k, v in counts["distribution"].get(task, {}).items()],
            columns=["label", "count"])
        people = agreement_bars(figures)
        summary = (f"**{TASK_NAMES[task]}**: {figures['n_labels']} labels on {figures['n_items']} "
                   f"items by {figures['n_annotators']} annotators; Fleiss' κ "
                   f"{_fmt(figures['fleiss_kappa'])}, Krippendorff's α "
                   f"{_fmt(figures['krippendorff_alpha'])} ({figures['n_items_shared']} items "
                   f"labelled by two or more).")
        pairs = [[pair, value["kappa"], value["n_items"]]
                 for pair, value in figures["cohen_kappa"].items()]
        requests = [[r["id"], r["task"], r["reason"], r["labels"], r["status"]]
                    for r in studio.store.training_requests()]
        top = int(distribution["count"].max()) if len(distribution) else 1
        return (summary, gr.BarPlot(distribution, y_lim=[0, top]), people, pairs, requests,
                learning_curve(studio.engine, task), {"agreement": figures, **counts})

    def request_training(task: str, name: str, request: gr.Request):
        identity = access.admin(request, name)
        studio.store.request_training(task, identity.name, "requested by an admin")
        gr.Info(f"Fine-tuning of {TASK_NAMES[task]} requested: it is pending.", duration=4)
        return stats(task, name, request)

    def apply(name: str, request: gr.Request, progress=gr.Progress()):
        access.admin(request, name)
        progress(0.1, desc="building a new index version")
        changed = studio.apply_corrections()
        return "A new index version with people's corrections is live." if changed \
            else "Search already reads every correction."

    def export(format: str, name: str, request: gr.Request):
        access.admin(request, name)
        out = Path(tempfile.mkdtemp(prefix="memeui-export-")) / f"labels.{format}"
        rows = export_labels(studio.store, out, format)
        gr.Info(f"{rows} labels exported.", duration=3)
        return str(out)

    def import_(path: str | None, task: str, name: str, request: gr.Request):
        access.admin(request, name)
        if not path:
            raise gr.Error("Choose a file to import.", duration=4)
        try:
            result = studio.import_file(Path(path), task)
        except (LabelError, ValueError) as error:
            raise gr.Error(str(error), duration=8) from None
        return json.dumps(result)

    with gr.Row():
        task = gr.Dropdown([(TASK_NAMES[t], t) for t in TASKS], value="sticker_emotion",
                           label="Task", scale=2, elem_id="stats-task")
        name = gr.Textbox(label="Your name (open mode)", visible=access.open, scale=1,
                          max_length=64)
        refresh = gr.Button("Refresh", variant="primary", elem_id="stats-refresh", scale=1)
    summary = gr.Markdown(elem_id="stats-summary")
    with gr.Row():
        distribution = gr.BarPlot(x="label", y="count", label="Labels", elem_id="stats-distribution")
        people = gr.BarPlot(x="bar", y="agreement", color="measure", y_lim=[0, 1],
                            x_title="annotator", label="Each annotator's agreement",
                            elem_id="stats-people")
    curve = gr.LinePlot(x="labels", y="accuracy", color="reader", y_lim=[0, 100],
                        label="Held-out accuracy of each promoted version, by labels so far",
                        elem_id="stats-curve")
    with gr.Row():
        pairs = gr.Dataframe(headers=["pair", "Cohen's κ", "items"], label="Annotator pairs",
                             interactive=False)
        requests = gr.Dataframe(headers=["id", "task", "reason", "labels", "status"],
                                label="Fine-tuning requests", interactive=False)
    with gr.Accordion("All figures", open=False):
        figures = gr.JSON()
    with gr.Row():
        train = gr.Button("Request fine-tuning now", elem_id="stats-train")
        apply_button = gr.Button("Apply corrections to search", elem_id="stats-apply")
    applied = gr.Markdown()
    with gr.Row():
        format = gr.Dropdown(list(FORMATS), value="parquet", label="Export format", scale=1)
        export_button = gr.Button("Export labels", scale=1)
        exported = gr.File(label="Export", scale=2)
    with gr.Row():
        upload = gr.File(label="Import labels (JSONL, CSV, Parquet) or conversations "
                               "(MELD/EmoryNLP CSV, MOD JSON, transcript)", type="filepath", scale=3)
        import_button = gr.Button("Import", scale=1)
    imported = gr.Markdown()

    outputs = [summary, distribution, people, pairs, requests, curve, figures]
    refresh.click(stats, [task, name], outputs, api_name=False)
    task.change(stats, [task, name], outputs, api_name=False)
    train.click(request_training, [task, name], outputs, api_name=False)
    apply_button.click(apply, name, applied, api_name="apply_corrections",
                       concurrency_id="library", concurrency_limit=1)
    export_button.click(export, [format, name], exported, api_name=False)
    import_button.click(import_, [upload, task, name], imported, api_name=False)


def add_label_api(studio: Studio, access: Access) -> None:
    """The named endpoints ``gradio_client`` and ``memeui … --server`` call; answered without
    the queue's round trips, under the same identity and roles as the tab."""
    def next_item(task: str, annotator: str = "", order: str = DEFAULT_ORDER, pack: str = "",
                  request: gr.Request = None) -> dict | None:
        """The next item for the caller in TASK, or None when nothing is left."""
        identity = access.identify(request, annotator)
        return refused(lambda: studio.next_item(task, identity.name, order, pack or None))

    def label(task: str, item: str, label: str, annotator: str = "", key: str = "",
              request: gr.Request = None) -> dict:
        """Record the caller's LABEL for ITEM of TASK; returns once it is committed. KEY (an
        idempotency key, any unique string): a retry with the same key is written once."""
        identity = access.identify(request, annotator)
        studio.label_rate.check(request, f"user:{identity.name}")
        return refused(lambda: studio.label(task, item, label, identity, source="api",
                                         session=_session(request), key=key))

    def undo(task: str, annotator: str = "", key: str = "",
             request: gr.Request = None) -> dict | None:
        """Take back the caller's latest label or skip in TASK (KEY: as for /label)."""
        identity = access.identify(request, annotator)
        undone = refused(lambda: studio.store.undo(task, identity.name, source="api", key=key))
        return None if undone is None else {"event": undone.id, "item": undone.item,
                                            "label": undone.label, "kind": undone.kind}

    def agreement_api(task: str, annotator: str = "", request: gr.Request = None) -> dict:
        """Agreement figures for TASK (admins only)."""
        access.admin(request, annotator)
        return refused(lambda: agreement(studio.store, task))

    def labels_stats(annotator: str = "", request: gr.Request = None) -> dict:
        """Counts per task and annotator, label distributions, pending fine-tuning (admins)."""
        access.admin(request, annotator)
        studio.ensure_items()
        return studio.store.stats()

    def current_labels(task: str = "", annotator: str = "", request: gr.Request = None) -> list:
        """Every annotator's standing label with its item (admins only): what an export holds."""
        access.admin(request, annotator)
        return refused(lambda: studio.store.current_labels(task or None))

    def import_rows(rows: list, task: str = "", annotator: str = "",
                    request: gr.Request = None) -> dict:
        """Add label rows (the columns of an export) as events (admins only)."""
        access.admin(request, annotator)
        if not isinstance(rows, list):
            raise gr.Error("rows is a list of label rows (the columns of an export)")
        studio.ensure_items()
        return refused(lambda: exchange_rows(studio.store, rows, task or None))

    def import_conversations(dialogues: list, source: str = "import", annotator: str = "",
                             request: gr.Request = None) -> dict:
        """Add conversations to label (a list of {"id", "turns": [{"speaker", "text"}]}) as
        utterance-emotion and best-sticker items, named after SOURCE (admins only)."""
        access.admin(request, annotator)
        return refused(lambda: studio.add_dialogues(dialogues_from_rows(dialogues),
                                                    check_name(source or "import")))

    def request_training(task: str, annotator: str = "", request: gr.Request = None) -> dict:
        """Record a fine-tuning request for TASK now (admins only)."""
        identity = access.admin(request, annotator)
        return refused(lambda: studio.store.request_training(task, identity.name, "requested by an admin"))

    def library_stickers(request: gr.Request = None) -> list:
        """Every sticker with its emotion, who gave it (people or model) and the confidence."""
        return sticker_listing(studio.engine)

    for function, name in ((next_item, "next_item"), (label, "label"), (undo, "undo"),
                           (agreement_api, "agreement"), (labels_stats, "labels_stats"),
                           (current_labels, "current_labels"), (import_rows, "import_labels"),
                           (import_conversations, "import_conversations"),
                           (request_training, "request_training"),
                           (library_stickers, "library_stickers")):
        gr.api(function, api_name=name, queue=False)


def refused(call):
    """Run ``call``; a refusal (LabelError, or any ValueError the engine raises for bad input)
    or a label store that does not answer reaches the caller as a clear message, not a server
    error."""
    try:
        return call()
    except (ValueError, StoreUnavailable) as error:
        raise gr.Error(str(error)) from None


def _session(request: gr.Request | None) -> str:
    return getattr(request, "session_hash", None) or "" if request is not None else ""


def _fmt(value) -> str:
    return "—" if value is None else f"{value:.3f}"


