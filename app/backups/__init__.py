"""Backups: runs, targets, retention, restores, dumps, S3 storage, and the forms setting them up."""
