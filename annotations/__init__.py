"""The DuckDB label store (sticker emotions, utterance emotions, best sticker for a dialogue).

Labels arrive with the annotation tabs; this package will hold them as append-only events and
never imports torch or gradio.
"""
