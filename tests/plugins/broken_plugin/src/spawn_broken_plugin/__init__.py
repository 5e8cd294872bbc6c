"""Fails on import, as a plugin with a missing dependency would."""

raise ImportError("No module named 'a_dependency_nobody_installed'")
