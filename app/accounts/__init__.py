"""Accounts: first-run setup, signing in and out, passwords and sessions."""
