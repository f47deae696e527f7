"""Use cases: async functions that receive their collaborators as arguments."""
