"""The `cc100` command (`cc100/cli.py`): one subcommand per stage, each in its stage's module."""
