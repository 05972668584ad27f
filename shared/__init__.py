"""Recurring integrations on Azure Functions: the application package."""
