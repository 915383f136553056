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

from annotations.activity import activity
from annotations.agreement import agreement
from annotations.campaigns import campaigns, close_campaign, open_campaign
from annotations.exchange import FORMATS, export_labels
from annotations.exchange import import_rows as exchange_rows
from annotations.review import next_review, review_stats
from annotations.store import (DEFAULT_ORDER, EMOTION_TASKS, NO_STICKER, NONE_FITS, ORDERS, TASKS, UNSURE,
                               LabelError, StoreUnavailable, check_name)
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
    // the same keys label in the Label view and settle in the Review view: the visible one
    const shown = (...ids) => ids.map((id) => document.querySelector(id)).find(visible) || null;
    let button = null;
    if (/^[1-9]$/.test(event.key) && !event.ctrlKey && !event.metaKey && !event.altKey) {
      button = shown('#annotate-label-' + event.key, '#review-label-' + event.key);
    } else if ((event.key === 'z' && (event.ctrlKey || event.metaKey)) || event.key === 'Backspace') {
      button = shown('#annotate-undo', '#review-undo');
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


def build_review_view(studio: Studio, access: Access, tab: gr.Tab) -> None:
    """The Review view: the item settling would change most, each annotator's label and the
    model's; the label keys settle it, Ctrl+Z / Backspace undoes the latest settled label."""
    labels = list(studio.engine.scheme.labels)

    def show(view: dict | None, task: str, note: str = ""):
        figures = review_stats(studio.store, task)
        summary = (f"**{figures['waiting']} waiting** for review · {figures['settled']} settled · "
                   f"α before review {_fmt(figures['before_review']['krippendorff_alpha'])}, "
                   f"after {_fmt(figures['after_review']['krippendorff_alpha'])}")
        if view is None:
            return (None, gr.update(value=None, visible=False),
                    f"{note}\n\n**Nothing waits for review here.**".strip(), summary)
        payload = view["payload"]
        given = "\n".join(f"- **{name}**: {label}" for name, label in view["annotators"].items())
        model = f"{view['model']} ({(view['confidence'] or 0):.0%})" if view["model"] else "—"
        if task == "utterance_emotion":
            what = f"{payload.get('speaker', '')}: {payload.get('text', '')}"
        else:
            what = f"{payload.get('emoji', '')} {payload.get('label', '')}"
        info = (f"{note}\n\n### {what}\n*{view['reason']}*\n\n{given}\n- **model**: {model}"
                "\n\nSettle it with a label key (1–9); Ctrl+Z / Backspace undoes.").strip()
        sticker = payload.get("file") if task == "sticker_emotion" else None
        return view, gr.update(value=sticker, visible=bool(sticker)), info, summary

    def load(task: str, name: str, request: gr.Request, note: str = ""):
        access.reviewer(request, name)
        return show(refused(lambda: next_review(studio.store, task)), task, note)

    def settle(label: str):
        def handler(task: str, name: str, current: dict | None, request: gr.Request):
            who = access.reviewer(request, name)
            if not current:
                raise gr.Error("Nothing to settle here.", duration=4)
            refused(lambda: studio.settle(task, current["item"], label, who, session=_session(request)))
            return load(task, name, request, f"Settled `{current['item']}` as **{label}**.")
        return handler

    def undo(task: str, name: str, request: gr.Request):
        who = access.reviewer(request, name)
        undone = refused(lambda: studio.store.undo(task, who.name, session=_session(request),
                                                   review=True))
        note = f"Undone: `{undone.item}` is no longer settled as {undone.label}." if undone \
            else "Nothing to undo."
        return load(task, name, request, note)

    with gr.Row():
        task = gr.Radio([(TASK_NAMES[t], t) for t in EMOTION_TASKS], value="sticker_emotion",
                        label="Task", elem_id="review-task", scale=4)
        name = gr.Textbox(label="Your name (open mode)", placeholder="anonymous",
                          visible=access.open, scale=1, max_length=64)
    summary = gr.Markdown(elem_id="review-summary")
    current = gr.State(None)
    with gr.Row():
        picture = gr.Image(height=240, interactive=False, show_label=False, visible=False,
                           elem_id="review-sticker", scale=2)
        info = gr.Markdown(elem_id="review-info")
    with gr.Row():
        buttons = [gr.Button(f"{number} · {label}", elem_id=f"review-label-{number}", size="sm",
                             min_width=80) for number, label in enumerate(labels, start=1)]
    undo_button = gr.Button("Undo (Ctrl+Z / Backspace)", elem_id="review-undo", size="sm")
    outputs = [current, picture, info, summary]
    fast = {"api_name": False, "concurrency_id": "labels", "concurrency_limit": 16}
    for button, label in zip(buttons, labels):
        button.click(settle(label), [task, name, current], outputs, **fast)
    undo_button.click(undo, [task, name], outputs, **fast)
    task.change(load, [task, name], outputs, **fast)
    name.submit(load, [task, name], outputs, **fast)
    tab.select(load, [task, name], outputs, **fast)


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


def review_summary(reviewed: dict, model: dict) -> str:
    """The review and anchoring lines of the Stats summary."""
    accuracy = ", ".join(f"{name} {a['accuracy']:.0%} of {a['items']}"
                         for name, a in reviewed["accuracy_against_review"].items()) or "—"
    return (f"**Review**: {reviewed['waiting']} items waiting, {reviewed['settled']} settled; "
            f"Krippendorff's α {_fmt(reviewed['before_review']['krippendorff_alpha'])} before "
            f"review, {_fmt(reviewed['after_review']['krippendorff_alpha'])} after; accuracy "
            f"against review: {accuracy}.  \n**With the model**: {_share(model['with_suggestion_shown'])} "
            f"of {model['labels_shown']} labels agree where its suggestion was shown, "
            f"{_share(model['with_suggestion_hidden'])} of {model['labels_hidden']} where a "
            "campaign hid it.")


def _share(value) -> str:
    return "—" if value is None else f"{value:.0%}"


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
        reviewed = review_stats(studio.store, task) if task in EMOTION_TASKS else None
        summary += "\n\n" + review_summary(reviewed, figures["model"]) if reviewed else ""
        pairs = [[pair, value["kappa"], value["n_items"]]
                 for pair, value in figures["cohen_kappa"].items()]
        requests = [[r["id"], r["task"], r["reason"], r["labels"], r["status"]]
                    for r in studio.store.training_requests()]
        top = int(distribution["count"].max()) if len(distribution) else 1
        return (summary, gr.BarPlot(distribution, y_lim=[0, top]), people, pairs, requests,
                learning_curve(studio.engine, task),
                {"agreement": figures, "review": reviewed, **counts})

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


CAMPAIGN_HEADERS = ["id", "name", "task", "selection", "overlap", "done", "target", "progress",
                    "suggestions", "status", "labels per annotator"]
ACTIVITY_HEADERS = ["annotator", "labels", "reviews", "skips", "undone", "busy min", "idle min",
                    "idle for (min)", "labels in the last hours", "last answer"]


def campaign_rows(store) -> list[list]:
    """Each campaign as a row of the Stats table."""
    return [[c["id"], c["name"], c["task"], c["selection"], c["overlap"], c["done"], c["target"],
             f"{c['progress']:.0%}", "shown" if c["suggestions"] else "hidden", c["status"],
             ", ".join(f"{name}: {n}" for name, n in c["annotators"].items()) or "—"]
            for c in campaigns(store)]


def activity_rows(store) -> list[list]:
    """Each annotator's activity as a row of the Stats table."""
    rows = []
    for name, a in activity(store)["annotators"].items():
        answers = a["answers"]
        rows.append([name, answers.get("label", 0), answers.get("review", 0), answers.get("skip", 0),
                     a["undone"], a["busy_minutes"], a["idle_minutes"], a["idle_for_minutes"],
                     " · ".join(f"{hour[-5:]}: {n}" for hour, n in a["labels_per_hour"].items()) or "—",
                     a["last"]])
    return rows


def build_campaigns_view(studio: Studio, access: Access) -> None:
    """Campaigns (open one on a chosen set of items, see each one's progress, close it) and
    the team's activity: who labelled what and when. Admins only."""
    def refresh(name: str, request: gr.Request):
        access.admin(request, name)
        return campaign_rows(studio.store), activity_rows(studio.store)

    def open_(campaign: str, task: str, selection: str, overlap, target, suggestions: bool,
              name: str, request: gr.Request):
        who = access.admin(request, name)
        studio.ensure_items()
        opened = refused(lambda: open_campaign(
            studio.store, campaign, task, selection, who.name, overlap=int(overlap or 1),
            target=int(target or 0) or None, suggestions=suggestions))
        gr.Info(f"Campaign {opened['name']} is open: {opened['size']} items, target "
                f"{opened['target']}.", duration=4)
        return refresh(name, request)

    def close(campaign, name: str, request: gr.Request):
        who = access.admin(request, name)
        closed = refused(lambda: close_campaign(studio.store, campaign, who.name))
        gr.Info(f"Campaign {closed['name']} is closed; its fine-tuning is requested.", duration=4)
        return refresh(name, request)

    gr.Markdown("### Campaigns\nWhile a task has an open campaign, annotators are served only "
                "its items, each to *overlap* annotators, until *target* items are done. "
                "Closing a campaign requests its fine-tuning.", elem_id="campaigns-heading")
    table = gr.Dataframe(headers=CAMPAIGN_HEADERS, label="Campaigns and their progress",
                         interactive=False, elem_id="campaign-table", wrap=True)
    with gr.Row():
        campaign = gr.Textbox(label="Name", max_length=64, elem_id="campaign-name", scale=2)
        task = gr.Dropdown([(TASK_NAMES[t], t) for t in TASKS], value="sticker_emotion",
                           label="Task", scale=2, elem_id="campaign-task")
        selection = gr.Textbox(label="Items: all, pack:NAME, file:NAME, uncertain:N, random:N",
                               value="uncertain:50", max_length=200, scale=3,
                               elem_id="campaign-selection")
    with gr.Row():
        overlap = gr.Number(label="Overlap", value=2, minimum=1, maximum=20, precision=0, scale=1)
        target = gr.Number(label="Target (0: all)", value=0, minimum=0, precision=0, scale=1)
        suggestions = gr.Checkbox(label="Show the model's suggestion", value=True, scale=1)
        name = gr.Textbox(label="Your name (open mode)", visible=access.open, max_length=64)
        open_button = gr.Button("Open campaign", variant="primary", elem_id="campaign-open", scale=1)
    with gr.Row():
        which = gr.Number(label="Campaign to close", precision=0, minimum=1, scale=1)
        close_button = gr.Button("Close campaign", elem_id="campaign-close", scale=1)
        refresh_button = gr.Button("Refresh", elem_id="campaign-refresh", scale=1)
    gr.Markdown("### Activity\nWho labelled what and when (UTC hours; a gap over five minutes "
                "is idle time).")
    team = gr.Dataframe(headers=ACTIVITY_HEADERS, label="Annotators", interactive=False,
                        elem_id="activity-table")
    outputs = [table, team]
    open_button.click(open_, [campaign, task, selection, overlap, target, suggestions, name],
                      outputs, api_name=False)
    close_button.click(close, [which, name], outputs, api_name=False)
    refresh_button.click(refresh, name, outputs, api_name=False)


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

    def review_next_api(task: str, annotator: str = "", request: gr.Request = None) -> dict | None:
        """The item of TASK that settling would change most, with each annotator's label and
        the model's, or None when nothing waits (reviewers and admins)."""
        access.reviewer(request, annotator)
        return refused(lambda: next_review(studio.store, task))

    def review(task: str, item: str, label: str, annotator: str = "", key: str = "",
               request: gr.Request = None) -> dict:
        """Settle ITEM of TASK as LABEL: it stands above the annotators' labels (reviewers and
        admins; KEY as for /label)."""
        who = access.reviewer(request, annotator)
        return refused(lambda: studio.settle(task, item, label, who, session=_session(request),
                                             key=key))

    def review_undo(task: str, annotator: str = "", key: str = "",
                    request: gr.Request = None) -> dict | None:
        """Take back the caller's latest settled label in TASK (reviewers and admins)."""
        who = access.reviewer(request, annotator)
        undone = refused(lambda: studio.store.undo(task, who.name, source="api", key=key,
                                                   review=True))
        return None if undone is None else {"event": undone.id, "item": undone.item,
                                            "label": undone.label}

    def review_stats_api(task: str, annotator: str = "", request: gr.Request = None) -> dict:
        """Items waiting and settled, accuracy against review, agreement before and after."""
        access.reviewer(request, annotator)
        return refused(lambda: review_stats(studio.store, task))

    def campaigns_api(status: str = "", annotator: str = "", request: gr.Request = None) -> list:
        """Every campaign (or those of STATUS: open, closed) with its progress (admins)."""
        access.admin(request, annotator)
        return refused(lambda: campaigns(studio.store, status or None))

    def campaign_open(name: str, task: str, selection: str, overlap: int = 1, target: int = 0,
                      suggestions: bool = True, annotator: str = "",
                      request: gr.Request = None) -> dict:
        """Open campaign NAME on the items of TASK that SELECTION chooses (all, pack:NAME,
        file:NAME, uncertain:N, random:N), each labelled by OVERLAP annotators, until TARGET
        items are done (0: all); SUGGESTIONS false hides the model's suggestion (admins)."""
        who = access.admin(request, annotator)
        studio.ensure_items()
        return refused(lambda: open_campaign(studio.store, name, task, selection, who.name,
                                             overlap=int(overlap), target=int(target) or None,
                                             suggestions=bool(suggestions)))

    def campaign_close(campaign: int, annotator: str = "", request: gr.Request = None) -> dict:
        """Close CAMPAIGN (its number) and request its fine-tuning (admins)."""
        who = access.admin(request, annotator)
        return refused(lambda: close_campaign(studio.store, campaign, who.name))

    def activity_api(hours: int = 24, annotator: str = "", request: gr.Request = None) -> dict:
        """Who labelled what and when: answers, labels per hour, busy and idle time (admins)."""
        access.admin(request, annotator)
        return refused(lambda: activity(studio.store, max(1, min(int(hours), 24 * 90))))

    for function, name in ((review_next_api, "review_next"), (review, "review"),
                           (review_undo, "review_undo"), (review_stats_api, "review_stats"),
                           (campaigns_api, "campaigns"), (campaign_open, "campaign_open"),
                           (campaign_close, "campaign_close"), (activity_api, "activity")):
        gr.api(function, api_name=name, queue=False)
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


