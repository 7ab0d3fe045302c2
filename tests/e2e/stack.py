"""Moved to testing/stack.py (shared with bench/); kept while the last importers move."""

from testing.stack import BIN, REPO, Stack, running_stack

__all__ = ["BIN", "REPO", "Stack", "running_stack"]
