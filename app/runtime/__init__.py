"""The only package that talks to the Docker engine: images, versions and their endpoints, logs, stats."""
