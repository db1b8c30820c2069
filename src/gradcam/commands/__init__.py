"""Subcommands of the ``gradcam`` CLI, one module each."""
