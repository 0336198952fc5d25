"""Training: the paper's two-stage recipe (installed as scgan_rt.train)."""

from __future__ import annotations

import importlib

from scgan_rt.errors import UsageError

# Modules only training needs; the `train` extra in pyproject.toml installs them, so a
# colorize-only install stays lean.
TRAIN_MODULES = ("tensorboard",)
TRAIN_INSTALL = "pip install 'scgan-rt[train]'"


def require_train_extra() -> None:
    """Refuse to train without the `train` extra, naming the one command that adds it."""
    missing = []
    for name in TRAIN_MODULES:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise UsageError(f"training needs {', '.join(missing)} (the train extra): {TRAIN_INSTALL}")
