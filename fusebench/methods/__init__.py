"""Fusion methods behind one interface, created by name: ``create_method("maefuse-compact")``.

Each family's module registers its methods when first needed (see ``METHODS``), so creating a cheap method
does not import the networks' dependencies.
"""

from fusebench.methods.base import (
    METHODS,
    FusionMethod,
    WeightsError,
    create_method,
    list_methods,
    register_method,
)

__all__ = ["METHODS", "FusionMethod", "WeightsError", "create_method", "list_methods", "register_method"]
