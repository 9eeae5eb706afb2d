"""The run's ledger: its schema and opening (``schema``), the file's reads (``file``), the transitions a run
makes (``transitions``).
"""
