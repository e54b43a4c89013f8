"""mlserve: take a trained model from a file on a laptop to production traffic, with an escape hatch.

The package is a library first: ``mlserve.registry``, ``mlserve.optimize``, ``mlserve.benchmark`` and
``mlserve.rollout`` work from Python without the CLI. ``mlserve.cli`` only parses, calls and renders.
"""

__version__ = "0.1.0"
