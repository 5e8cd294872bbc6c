"""``spawn init --example``: the example project and the code that lays it out."""
