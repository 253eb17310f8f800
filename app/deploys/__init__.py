"""Deployments: start, cancel, roll back; pipeline, reaper, routing, build log, live status."""
