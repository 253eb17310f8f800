"""What the installation knows of itself: metric samples, Prometheus figures, the workers page."""
