"""Moved to :mod:`gradcam.display` (rich display sits below the result types, not in the report)."""

from ..display import (  # noqa: F401 - re-exported for old imports
    MAX_IMAGES,
    MAX_MAPS,
    MAX_SIDE,
    explanation_html,
    image_result_html,
    png_data_uri,
    rgb_image,
)
