"""Explanation methods. Each is a small class on top of :mod:`gradcam.methods.base`."""
