"""The TUI's screens: jobs, dead letters, one job's detail, and dialogs."""
