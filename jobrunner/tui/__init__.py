"""`jobrunner tui`: a full-screen Textual app over the same database as the CLI.

Imports point one way: the TUI uses `domain` and `store`, never `cli` or `daemon`.
"""
