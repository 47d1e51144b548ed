"""The metric registry: one ``Registry`` entry per metric, with its direction and definitions as read-only metadata.

Third-party metrics register through the ``fusebench.metrics`` entry-point group with the same decorator.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from fusebench.registry import Entry, Registry

METRICS: Registry[Any] = Registry("metric", entry_point_group="fusebench.metrics")


def register_metric(
    name: str,
    *,
    higher_is_better: bool,
    description: str,
    needs_sources: bool = True,
    version: int = 1,
    definitions: Mapping[str, str] | None = None,
    reference: str = "",
    min_size: int = 2,
    aliases: tuple[str, ...] = (),
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator registering a functional metric ``f(fused, ir, vi, *, data_range, reduction, **options)``.

    Args:
        name: canonical column name (``"Qabf"``); its lower-case form is added as an alias.
        higher_is_better: direction, required (Nabf, CE, Qcv, MSE: False).
        description: one line for ``fusebench list metrics``.
        needs_sources: whether the metric compares F with the infrared and visible images.
        version: bumped whenever the numbers of any profile change.
        definitions: profile name -> the exact definition that profile computes.
        reference: paper DOI and the reference code followed.
        min_size: smallest height/width the metric is defined for.
        aliases: extra names.
    """
    if not isinstance(higher_is_better, bool):
        raise TypeError(f"higher_is_better must be a bool for metric '{name}'")
    lower = name.lower()
    extra = (lower,) if lower != name else ()
    return METRICS.register(
        name,
        aliases=extra + tuple(aliases),
        higher_is_better=higher_is_better,
        needs_sources=needs_sources,
        description=description,
        version=version,
        definitions=dict(definitions or {}),
        reference=reference,
        min_size=min_size,
    )


def list_metrics(pattern: str = "*") -> list[str]:
    """Canonical metric names matching the fnmatch ``pattern`` (case-sensitive: ``"Q*"``)."""
    return METRICS.list(pattern)


def get_metric(name: str) -> Entry[Any]:
    """The frozen entry of a metric (canonical name or alias, e.g. ``"qabf"``)."""
    return METRICS.get(name)


def metric_info(name: str) -> dict[str, Any]:
    """JSON-serialisable metadata of one metric."""
    e = get_metric(name)
    return {
        "name": e.name,
        "higher_is_better": e.higher_is_better,
        "needs_sources": e.needs_sources,
        "description": e.description,
        "version": e.version,
        "reference": e.reference,
        "definitions": dict(e.definitions),
    }
