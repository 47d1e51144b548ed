"""fusebench: train, run and compare infrared-visible image fusion methods with metrics you can trust.

The common entry points are importable from the top level (loaded on first use, so ``import fusebench``
stays instant): ``fusebench.create_method``, ``fusebench.list_methods``, ``fusebench.load_dataset``,
``fusebench.evaluate``.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "create_method": "fusebench.methods",
    "list_methods": "fusebench.methods",
    "load_dataset": "fusebench.datasets",
    "list_datasets": "fusebench.datasets",
    "evaluate": "fusebench.metrics",
    "list_metrics": "fusebench.metrics",
}

__all__ = ["__version__", "create_method", "evaluate", "list_datasets", "list_methods", "list_metrics", "load_dataset"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'fusebench' has no attribute {name!r}")
