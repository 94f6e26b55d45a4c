"""Backends: ways to start and find nodes. `cloudy.backend.simplelocalnet` is the one."""
