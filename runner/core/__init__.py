"""What every layer may use: task records and statuses, the error classes, the injected
clock, atomic files, a failure's cause, rates, secrets and terminal-safe text, logging,
the last-resort handler, one spelling per API, the user's cache folder. Imports nothing
of the project but ``core`` itself.
"""
