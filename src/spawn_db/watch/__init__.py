"""``spawn watch``: a development database that follows the files as they are saved."""
