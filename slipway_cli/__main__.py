"""``python -m slipway_cli``: the same as the ``slipway`` console script."""

from slipway_cli.main import cli

if __name__ == "__main__":
    cli(prog_name="slipway")
