"""``memeui`` on the command line: serve the app, search stickers, chat, benchmark.

Logs go to stderr; with ``--json`` stdout carries only the JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
from pathlib import Path

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7860


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=os.environ.get("MEMEUI_LOG_LEVEL", "INFO"), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return args.run(args)
    except ValueError as error:  # bad input: say what, without a traceback
        print(f"memeui: {error}", file=sys.stderr)
        return 2
    except RuntimeError as error:
        from engine.reply import ReplyError  # imported late: see serving_threads

        if not isinstance(error, ReplyError):
            raise
        print(f"memeui: {error}", file=sys.stderr)  # no reply: say why
        return 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="memeui", description="Chat with a meme bot, find stickers.")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="start the web app")
    serve.add_argument("--host", default=os.environ.get("MEMEUI_HOST", DEFAULT_HOST))
    serve.add_argument("--port", type=int, default=int(os.environ.get("MEMEUI_PORT", DEFAULT_PORT)))
    serve.set_defaults(run=run_serve)

    search = commands.add_parser("search", help="rank stickers for a text query")
    search.add_argument("query")
    search.add_argument("-k", type=int, default=8, help="how many stickers (default 8)")
    search.add_argument("--json", action="store_true", help="print a JSON array")
    search.set_defaults(run=run_search)

    chat = commands.add_parser("chat", help="one bot turn for MESSAGE, or a chat in the terminal")
    chat.add_argument("message", nargs="?", help="leave out for an interactive chat")
    chat.add_argument("--json", action="store_true", help="print the reply as one JSON object")
    chat.add_argument("--backend", help="reply backend: smollm2, retrieval, openai, or a "
                      "transformers model path (default: MEMEUI_REPLY_BACKEND)")
    chat.set_defaults(run=run_chat)

    library = commands.add_parser("library", help="add, list and remove sticker packs")
    actions = library.add_subparsers(required=True, metavar="ACTION")
    add = actions.add_parser("add", help="add a folder, zip or file as a pack")
    add.add_argument("path", type=Path)
    add.add_argument("--name", help="pack name (default: the file or folder name)")
    add.add_argument("--no-ocr", action="store_true", help="skip OCR (faster)")
    add.add_argument("--json", action="store_true", help="print the report as JSON")
    add.set_defaults(run=run_library_add)
    listing = actions.add_parser("list", help="packs and their sticker counts")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(run=run_library_list)
    remove = actions.add_parser("remove", help="remove a pack added before")
    remove.add_argument("name")
    remove.set_defaults(run=run_library_remove)

    evaluate = commands.add_parser("eval", help="evaluate on public data; prints JSON")
    evaluate.add_argument("task", choices=["emoji", "premeld", "erc"],
                          help="emoji: TweetEval emoji as stickers; premeld: forecast the next "
                               "utterance's sentiment (MELD); erc: each utterance's emotion (MELD)")
    evaluate.add_argument("--data", type=Path, required=True, help="folder in the task's format")
    evaluate.add_argument("--split", help="default: val (emoji), dev (MELD)")
    evaluate.add_argument("--fit", action="store_true", help="train on DATA's train split first")
    evaluate.add_argument("--json", action="store_true", help="(the output is always JSON)")
    evaluate.set_defaults(run=run_eval)

    train = commands.add_parser("train", help="train a model the engine uses; prints JSON")
    train.add_argument("model", choices=["image-tower", "emotion"],
                       help="image-tower: the offline LiT-style image tower; emotion: the bundled "
                            "pre-recognizer from chitchat-dataset + nade (both in assets/models/)")
    train.add_argument("--epochs", type=int, default=60, help="image tower epochs")
    train.add_argument("--conversations", type=int, default=1200,
                       help="chitchat conversations for the emotion model")
    train.add_argument("--out", type=Path, help="where to write (default: the bundled weights)")
    train.add_argument("--json", action="store_true", help="(the output is always JSON)")
    train.set_defaults(run=run_train)

    emotion = commands.add_parser("emotion", help="each turn's emotion and the next speaker's forecast")
    emotion.add_argument("transcript", help="'Name: text' per line (use $'A: hi\\nB: hey')")
    emotion.add_argument("--next", dest="next_speaker", help="who speaks next (default: the "
                         "speaker before the last one, or 'bot')")
    emotion.add_argument("--scheme", help="label scheme (default: MEMEUI_LABEL_SCHEME or ekman7)")
    emotion.add_argument("--json", action="store_true", help="print one JSON object")
    emotion.set_defaults(run=run_emotion)

    spaces = commands.add_parser("spaces", help="build a Hugging Face Space from spaces.yaml")
    spaces.add_argument("action", choices=["build"])
    spaces.add_argument("out", type=Path, help="folder to write the Space into")
    spaces.set_defaults(run=run_spaces)

    bench = commands.add_parser("bench", help="benchmarks; they print JSON")
    bench.add_argument("name", choices=["search", "emotion", "chat"])
    bench.add_argument("--json", action="store_true", help="(the output is always JSON)")
    bench.add_argument("--queries", type=int, default=200)
    bench.add_argument("--knn-vectors", type=int, default=1_000_000,
                       help="size of the synthetic knn benchmark (default 1M)")
    bench.add_argument("--ingest-stickers", type=int, default=200)
    bench.set_defaults(run=run_bench)
    return parser


def make_engine(**overrides):
    """The engine on the environment's settings, with ``overrides`` that are not None."""
    from engine import Engine, Settings

    return Engine(Settings.from_env(**{k: v for k, v in overrides.items() if v is not None}))


@contextlib.contextmanager
def stdout_for_json_only():
    """Send anything libraries print to stderr, so stdout stays parseable JSON."""
    with contextlib.redirect_stdout(sys.stderr):
        yield


def print_json(value) -> None:
    sys.stdout.write(json.dumps(value, ensure_ascii=False, indent=2) + "\n")


def run_serve(args) -> int:
    serving_threads()  # before anything imports numpy or torch
    from memeui.app import build_app, launch, open_studio, start

    engine = make_engine()
    studio = open_studio(engine)
    demo = build_app(engine, studio)
    start(engine, studio)
    launch(demo, engine, host=args.host, port=args.port)
    return 0


def serving_threads() -> None:
    """One thread per operation (torch, BLAS, OpenMP) in the server, MEMEUI_THREADS to change:
    chat requests are small and run side by side, and a small operation spread over all
    cores costs more in thread wake-ups and spinning than it saves. Batch commands keep every
    core. Environment variables, because the libraries read them once, when first imported."""
    threads = os.environ.get("MEMEUI_THREADS", "1")
    for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(variable, threads)


def run_search(args) -> int:
    if args.k < 1:
        raise ValueError("-k must be at least 1")
    with stdout_for_json_only():
        results = make_engine().search(args.query, args.k)
    if args.json:
        print_json([result.to_dict() for result in results])
    else:
        for result in results:
            print(f"{result.score:6.3f}  {result.emoji}  {result.label}  ({result.emotion})")
    return 0


def run_chat(args) -> int:
    from engine import Dialogue, Turn
    from engine.dialogue import check_message

    if args.message is None:
        return interactive_chat(make_engine(reply_backend=args.backend))
    dialogue = Dialogue((Turn("user", check_message(args.message)),))
    with stdout_for_json_only():
        engine = make_engine(reply_backend=args.backend)
        engine.warm_up().join()  # load first, so timings_ms measure the turn itself
        reply = engine.chat(dialogue)
    if args.json:
        print_json(reply.to_dict())
    else:
        print(f"bot: {reply.text}{format_extras(reply)}")
    return 0


def format_extras(reply) -> str:
    """The sticker and mood of a reply, after its text."""
    sticker = f"  {reply.sticker.emoji} [{reply.sticker.label}]" if reply.sticker else ""
    return f"{sticker}  (mood: {max(reply.mood, key=reply.mood.get)})"


def interactive_chat(engine) -> int:
    """A chat in the terminal; the reply streams in, then its sticker and mood."""
    from engine import Dialogue, Reply, ReplyError, Turn
    from engine.dialogue import check_message

    engine.warm_up()
    dialogue = Dialogue()
    print("Chat with the meme bot; an empty line or Ctrl-D ends it.", file=sys.stderr)
    while True:
        try:
            line = input("you: ")
        except EOFError:
            break
        if not line.strip():
            break
        try:
            dialogue = dialogue.then(Turn("user", check_message(line)))
        except ValueError as error:
            print(error, file=sys.stderr)
            continue
        print("bot: ", end="", flush=True)
        shown = ""
        try:
            for step in engine.chat_stream(dialogue):
                if isinstance(step, Reply):
                    break
                print(step[len(shown):], end="", flush=True)
                shown = step
        except ReplyError as error:
            print(f"\n({error})", file=sys.stderr)
            dialogue = Dialogue(dialogue.turns[:-1])
            continue
        dialogue = dialogue.then(Turn("bot", step.text, step.sticker.label if step.sticker else ""))
        print(format_extras(step), flush=True)
    return 0


def run_library_add(args) -> int:
    engine = make_engine()
    with stdout_for_json_only(), ProgressBar() as bar:
        report = engine.add_pack(args.path, args.name, ocr=engine.settings.ocr and not args.no_ocr,
                                 progress=bar.update)
    if args.json:
        print_json(report.to_dict())
    else:
        print(report.summary())
        for file_name, reason in report.errors:
            print(f"  refused {file_name}: {reason}")
    return 0


def run_library_list(args) -> int:
    with stdout_for_json_only():
        packs = make_engine().list_packs()
    if args.json:
        print_json(packs)
    else:
        for pack in packs:
            print(f"{pack['name']:<32} {pack['stickers']:>6}  {pack['source']}")
    return 0


def run_library_remove(args) -> int:
    with stdout_for_json_only():
        make_engine().remove_pack(args.name)
    print(f"removed {args.name}", file=sys.stderr)
    return 0


class ProgressBar:
    """A one-line progress bar on stderr (stdout stays free for JSON)."""

    def __enter__(self):
        return self

    def update(self, fraction: float, message: str) -> None:
        filled = int(fraction * 30)
        sys.stderr.write(f"\r[{'#' * filled}{'.' * (30 - filled)}] {fraction:4.0%} {message[:40]:<40}")
        sys.stderr.flush()

    def __exit__(self, *exc) -> None:
        sys.stderr.write("\n")


def run_eval(args) -> int:
    from engine.evaluate import EmojiEvaluation, EmotionEvaluation

    with stdout_for_json_only():
        engine = make_engine()
        if args.task == "emoji":
            result = EmojiEvaluation(engine).run(args.data, args.split or "val", fit=args.fit)
        else:
            evaluation = EmotionEvaluation(engine)
            run = evaluation.premeld if args.task == "premeld" else evaluation.erc
            result = run(args.data, args.split or "dev", fit=args.fit)
    print_json(result)
    return 0


def run_emotion(args) -> int:
    from engine.dialogue import Dialogue

    dialogue = Dialogue.from_transcript(args.transcript.replace("\\n", "\n"))
    with stdout_for_json_only():
        engine = make_engine()
        reading = engine.read_emotion(dialogue, args.next_speaker, args.scheme)
    if args.json:
        print_json(reading.to_dict())
        return 0
    for turn in reading.turns:
        print(f"{turn.speaker}: {turn.text}  [{max(turn.emotion, key=turn.emotion.get)}]")
    top = sorted(reading.forecast.items(), key=lambda item: -item[1])[:3]
    print(f"next, {reading.next_speaker}: " + ", ".join(f"{label} {p:.0%}" for label, p in top))
    return 0


def run_train(args) -> int:
    from dataclasses import asdict

    from engine.image import LIT_WEIGHTS, train_lit_tower
    from engine.stickers import StickerLibrary

    if args.model == "emotion":
        from engine.emotion_recipes import train_default

        with stdout_for_json_only():
            engine = make_engine()
            info = train_default(engine.emotion_encoder(), args.out or engine.settings.prerecognizer,
                                 args.conversations, cache=engine.settings.data_dir / "cache")
        print_json(info)
        return 0
    with stdout_for_json_only():
        engine = make_engine()
        library = StickerLibrary.load(engine.pack_dirs())
        report = train_lit_tower(library.stickers, engine.encoder.get(),
                                 out=args.out or LIT_WEIGHTS, epochs=args.epochs)
    print_json(asdict(report))
    return 0


def run_spaces(args) -> int:
    from memeui.spaces import build

    print(build(args.out))
    return 0


def run_bench(args) -> int:
    with stdout_for_json_only():
        if args.name == "chat":
            serving_threads()  # the in-process turns run as the server runs them
            from bench.chat import run as bench_chat

            result = bench_chat(turns=args.queries)
        elif args.name == "emotion":
            from bench.emotion import run as bench_emotion

            result = bench_emotion(make_engine(), forecasts=args.queries)
        else:
            from bench.search import run as bench_search

            result = bench_search(make_engine(), queries=args.queries,
                                  knn_vectors=args.knn_vectors,
                                  ingest_stickers=args.ingest_stickers)
    print_json(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
