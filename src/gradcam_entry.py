"""The ``gradcam`` console script's entry point, outside the ``gradcam`` package on purpose.

Importing ``gradcam`` imports torch (a second or two); a Ctrl-C in that time would otherwise print a
traceback from the generated script. Here it gives the same clean exit 130 as a Ctrl-C later on.
"""
import sys


def main() -> int:
    """Run ``gradcam.cli.main``; a Ctrl-C while it starts up (imports) exits with 130 and one line."""
    try:
        from gradcam.cli import main as cli_main
    except KeyboardInterrupt:
        print("gradcam: interrupted while starting", file=sys.stderr)
        return 130
    return cli_main()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
