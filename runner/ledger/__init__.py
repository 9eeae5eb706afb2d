"""The run's ledger: the SQLite file and its reads (``file``), and the transitions a run
makes (``transitions``).
"""
