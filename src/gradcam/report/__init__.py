"""``gradcam report``: a static, self-contained HTML page for a results folder, and rich display in Jupyter."""

from .render import write_report

__all__ = ["write_report"]
