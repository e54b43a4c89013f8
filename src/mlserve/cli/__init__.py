"""The ``mlserve`` command line. It parses, calls one core function and renders the result."""
