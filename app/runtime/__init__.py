"""The only package that talks to the Docker engine: images, versions, endpoints, logs, stats."""
