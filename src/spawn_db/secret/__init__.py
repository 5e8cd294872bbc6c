"""Secrets: values spawn hands to psql but never writes down (build output, checksums,
pins, history rows, messages), and variables files whose values are encrypted with age."""
