import sys

from . import cli

cli.FREEZE_AT_START = True  # a process of its own (see gradcam.cli.started)
sys.exit(cli.main())
