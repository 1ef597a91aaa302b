"""Versioned schema migrations: sources, history, advisory lock, plan, lint, apply and command mode."""
