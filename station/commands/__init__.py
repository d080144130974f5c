"""Subcommands of ``station``: one module each, discovered by ``station.cli``."""
