"""Reports built from run summaries: Table-1 style comparison tables (and figures)."""

from fusebench.reports.table import RENDERERS, ResultTable, build_table, collect_summaries

__all__ = ["RENDERERS", "ResultTable", "build_table", "collect_summaries"]
