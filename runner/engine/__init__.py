"""The night's engine: the stages (submit behind the canary, poll on one schedule, fetch),
their rate limits, the retry policy, stopping, the failure streak, a rerun's questions,
the progress snapshot; ``wiring`` runs them.
"""
