"""
Benchmarks for tsyncp_tx; each module runs on its own (C{python benchmarks/<name>.py}).
"""
