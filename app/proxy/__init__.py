"""The proxy: Traefik's configuration (and, later, the certificates it serves)."""
