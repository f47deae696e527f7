"""Adapters: the only code that talks to PayTabs, databases, Redis and brokers."""
