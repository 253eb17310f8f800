"""What the installation knows about itself: metric samples, Prometheus figures, the workers page."""
