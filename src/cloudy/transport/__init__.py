"""Transports between nodes: asyncio TCP (and UDP discovery in the backend)."""
