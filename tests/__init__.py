"""
Tests for tsyncp_tx (run with C{python -m twisted.trial tests}).
"""
