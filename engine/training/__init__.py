"""Training: jobs in their own processes, the registry of model versions and its gate, the
snapshots of people's labels recipes read, and the losses trainable models share. Arrows: into
the engine's floor only; recipes live with their concept and are named to the job runner."""

from engine import lazy_exports

EXPORTS = {"Job": "jobs", "JobRunner": "jobs", "Registry": "registry", "Version": "registry",
           "gate": "registry", "Choice": "snapshot"}
__all__ = sorted(EXPORTS)
__getattr__ = lazy_exports(__name__, EXPORTS)
