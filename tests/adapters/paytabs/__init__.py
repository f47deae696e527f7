"""Tests of the PayTabs adapter (client, signatures, wire format)."""
