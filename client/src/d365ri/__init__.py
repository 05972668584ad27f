"""d365ri: a partner client for Dynamics 365 recurring integrations (and this product's compatible API)."""

__version__ = "0.1.0"
