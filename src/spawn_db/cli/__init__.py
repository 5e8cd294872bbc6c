"""The ``spawn`` command line: parse, call the library, print."""
