"""The run's ledger: its schema and opening (``schema``), the file's reads and
transactions (``file``), and the transitions a run makes (``transitions``).
"""
