"""Managed databases: engines, lifecycle (create, start, stop, restart, rotate, delete),
and links that give apps their variables at deploy time."""
