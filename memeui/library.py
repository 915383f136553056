"""The Library tab: add sticker packs (files, a folder's files, a zip), see them, remove them."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import gradio as gr

from engine import Engine
from engine.ingest import IngestError


def packs_table(engine: Engine) -> list[list]:
    return [[p["name"], p["stickers"], p["source"]] for p in engine.list_packs()]


def report_markdown(report) -> str:
    lines = [f"**{report.summary()}**"]
    lines += [f"- refused `{name}`: {why}" for name, why in report.errors[:50]]
    lines += [f"- near-duplicates: `{a}` and `{b}` ({bits} bits apart)"
              for a, b, bits in report.near_duplicates[:20]]
    return "\n".join(lines)


def build_library_tab(engine: Engine, changed=lambda: None) -> None:
    """``changed`` runs after a pack is added or removed (the studio refreshes its items)."""
    def add(files: list[str] | None, name: str, ocr: bool, progress=gr.Progress()):
        if not files:
            raise gr.Error("Choose sticker files or a zip first.", duration=5)
        paths = [Path(f) for f in files]
        with tempfile.TemporaryDirectory() as tmp:
            if len(paths) == 1:
                source = paths[0]
            else:  # several files become one folder, one pack
                source = Path(tmp) / "upload"
                source.mkdir()
                for path in paths:
                    shutil.copy(path, source / path.name)
            try:
                report = engine.add_pack(source, name.strip() or paths[0].stem, ocr=ocr,
                                         progress=lambda f, m: progress(f, desc=m))
            except IngestError as error:
                raise gr.Error(str(error), duration=8) from None
        changed()
        return (report_markdown(report), packs_table(engine),
                gr.Dropdown(choices=engine.added_pack_names()))

    def remove(name: str | None):
        if not name:
            raise gr.Error("Pick a pack to remove.", duration=5)
        try:
            engine.remove_pack(name)
        except IngestError as error:
            raise gr.Error(str(error), duration=8) from None
        changed()
        return (f"Removed **{name}**.", packs_table(engine),
                gr.Dropdown(choices=engine.added_pack_names(), value=None))

    gr.Markdown("Add stickers: PNG, JPEG, WebP, GIF, MP4 or WebM files, or a zip of them, "
                "optionally with a CSV/JSON file of labels, tags, captions and emotions.")
    with gr.Row():
        files = gr.File(label="Sticker files or a zip", file_count="multiple",
                        elem_id="library-files", scale=3)
        with gr.Column(scale=2):
            name = gr.Textbox(label="Pack name", placeholder="default: the first file's name",
                              elem_id="library-name", max_length=64)
            ocr = gr.Checkbox(value=engine.settings.ocr, label="Read text in stickers (OCR)")
            add_button = gr.Button("Add pack", variant="primary", elem_id="library-add")
    status = gr.Markdown(elem_id="library-status")
    table = gr.Dataframe(headers=["pack", "stickers", "source"], value=lambda: packs_table(engine),
                         interactive=False, label="Packs", elem_id="library-packs")
    with gr.Row():
        choice = gr.Dropdown(label="Pack to remove", choices=engine.added_pack_names(),
                             elem_id="library-remove-choice", scale=3)
        remove_button = gr.Button("Remove pack", variant="stop", scale=1)
    add_button.click(add, [files, name, ocr], [status, table, choice], api_name="library_add",
                     concurrency_id="library", concurrency_limit=1)
    remove_button.click(remove, [choice], [status, table, choice], api_name="library_remove",
                        concurrency_id="library", concurrency_limit=1)
