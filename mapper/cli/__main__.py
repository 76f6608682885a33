"""`python -m embmap.mapper.cli`: the `embmap` command."""

from embmap.mapper.cli import entry

entry()
