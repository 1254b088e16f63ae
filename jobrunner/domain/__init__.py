"""Pure rules of the job runner: stdlib only, no I/O, no peewee, no typer."""
