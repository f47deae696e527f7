"""The PayTabs PT2 gateway: client, wire models, errors, signatures, transformers."""
