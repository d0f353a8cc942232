"""``python -m llamactl`` is the ``llamactl`` command."""

from llamactl.cli import main

main()
