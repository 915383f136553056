"""The application `serve build engine.cluster.app:app` and `serve run` import: the settings
file's (MEMEUI_CLUSTER_CONFIG, else the bundled one), with the MEMEUI_* settings of the
process that builds it."""

from engine.cluster.deployments import build_app

app = build_app()
