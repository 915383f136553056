"""memeui: the Gradio app, CLI and wiring around the shared engine. No ML code here."""
