"""ZeroMQ messaging: wire schemas (``wire``), request parsing (``commands``), the client."""
