"""The command line: the commands and the error-to-exit map (``commands``), the parser, and
everything said to a person.
"""

from runner.cli.commands import main

__all__ = ["main"]
