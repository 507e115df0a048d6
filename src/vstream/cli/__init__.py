"""Command-line helpers shared by the `vstream` subcommands."""
