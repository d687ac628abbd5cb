"""Request handlers, one module per resource kind (protocol §3)."""
