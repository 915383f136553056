"""`memeui serve|search|chat|emotion|spaces`: the app and the bot from a terminal."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

from memeui.cli.common import make_engine, print_json, serving_threads, stdout_for_json_only

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7860

def add_commands(commands) -> None:
    """The app commands."""
    serve = commands.add_parser("serve", help="start the web app")
    serve.add_argument("--host", default=os.environ.get("MEMEUI_HOST", DEFAULT_HOST))
    serve.add_argument("--port", type=int, default=int(os.environ.get("MEMEUI_PORT", DEFAULT_PORT)))
    serve.add_argument("--engine", choices=["local", "ray"], help="local: the models in this "
                       "process; ray: the Serve application at RAY_ADDRESS (`memeui cluster up`); "
                       "default MEMEUI_ENGINE or local")
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

    emotion = commands.add_parser("emotion", help="each turn's emotion and the next speaker's forecast")
    emotion.add_argument("transcript", help="'Name: text' per line (use $'A: hi\\nB: hey')")
    emotion.add_argument("--next", dest="next_speaker", help="who speaks next (default: the "
                         "speaker before the last one, or 'bot')")
    emotion.add_argument("--scheme", help="label scheme (default: MEMEUI_LABEL_SCHEME or ekman7)")
    emotion.add_argument("--json", action="store_true", help="print one JSON object")
    emotion.set_defaults(run=run_emotion)

    spaces = commands.add_parser("spaces", help="build a Hugging Face Space from spaces.yaml")
    spaces.add_argument("action", choices=["build", "check"],
                        help="build: write the Space; check: build it, then list what would keep "
                             "it from starting (front matter, system libraries); exit 1 if any")
    spaces.add_argument("out", type=Path, help="folder to write the Space into")
    spaces.add_argument("--start", action="store_true", help="check: also install the bundle "
                        "into a fresh venv (only its requirements.txt), start app.py as Spaces "
                        "does and call /search and /chat")
    spaces.set_defaults(run=run_spaces)


def run_serve(args) -> int:
    serving_threads()  # before anything imports numpy or torch
    from memeui.app import build_app, launch, open_studio, start
    from memeui.trainer import Trainer
    from memeui.state import state_sync
    from engine import Settings

    sync = state_sync(Settings.from_env())
    if sync is not None:
        sync.restore()  # before the engine reads the registry and the packs
    engine = make_engine(engine=args.engine)
    studio = open_studio(engine)
    trainer = Trainer(studio)
    demo = build_app(engine, studio, trainer=trainer)
    start(engine, studio, trainer, sync)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # a stop runs the shutdown push
    launch(demo, engine, host=args.host, port=args.port)
    return 0


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


def run_spaces(args) -> int:
    from memeui.spaces import build, check

    if args.action == "build":
        print(build(args.out))
        return 0
    problems = check(args.out)
    for problem in problems:
        print(problem)
    print(f"{args.out}: {len(problems)} problem(s)", file=sys.stderr)
    if problems or not args.start:
        return 1 if problems else 0
    from memeui.spaces import start_check

    print_json(start_check(args.out))  # RuntimeError (exit 2) when it does not start
    return 0
