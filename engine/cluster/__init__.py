"""The engine past one machine: its services as Ray Serve deployments (``deployments``), the
settings file they are sized by (``config``), the face an app process calls them through
(``client.ClusterEngine``) and a local Ray head for one machine (``local``). Ray is the
``cluster`` extra, imported only here; `shared_engine` picks the engine a process runs."""

ENGINES = ("local", "ray")


def shared_engine(settings):
    """The process's engine for ``settings``: the models in this process (``local``), or the
    Ray Serve application's (``ray``, ``engine.cluster``: the app process holds none)."""
    if settings.engine not in ENGINES:
        raise ValueError(f"MEMEUI_ENGINE={settings.engine!r}; known: {', '.join(ENGINES)}")
    if settings.engine == "ray":
        from engine.cluster.client import ClusterEngine

        return ClusterEngine.shared(settings)
    from engine.engine import Engine

    return Engine.shared(settings)
