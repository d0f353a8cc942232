"""Helpers shared by the tests. Test modules import helpers from here, never from another
test module or from a ``conftest.py``; conftest files hold fixtures only."""
