"""From template to SQL text: the Jinja environment and runtime, SQL values, variables files."""
