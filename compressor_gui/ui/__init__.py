"""PySide6 widgets: show core state, collect the user's intent, run core jobs in workers."""
