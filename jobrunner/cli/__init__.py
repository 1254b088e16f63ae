"""The `jobrunner` command: one module per noun, errors turned into one line and an exit code."""
