"""Projects and applications: every write the views and the API share, and env vars."""
