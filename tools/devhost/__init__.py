"""A local Azure Functions host for machines without Core Tools: HTTP, queue and timer triggers on Azurite.

python -m tools.devhost [--port N] [--host 127.0.0.1] [--app function_app] [--root DIR]
"""

from .host import DevHost

__all__ = ["DevHost"]
