"""Test support shared by every test directory: the fake clock and in-memory service ports.

``tests/`` is on ``sys.path`` (pytest's default "prepend" import mode puts the root
``conftest.py``'s directory there, and mypy treats ``tests/`` as a base directory), so any test
can ``from testkit.clock import FakeClock`` whatever its own directory's import style.
"""
