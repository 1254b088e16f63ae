"""The daemon: a supervisor process, its worker processes, and the loop that ties them to the store."""
