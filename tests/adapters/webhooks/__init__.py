"""Tests of the Standard Webhooks adapter."""
