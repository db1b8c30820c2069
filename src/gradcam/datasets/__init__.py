"""Data the library generates or ships for evaluation and examples: synthetic scenes (shapes, colours and
positions with ground truth), used by :mod:`gradcam.evaluation`, :mod:`gradcam.vl`, :mod:`gradcam.neurons`
and :mod:`gradcam.studies`. Nothing here imports the layers above it."""
