"""A run folder's life: the flow of run, resume and rerun; the folder's rules and lock; the
rehearsal; the options; doctor.
"""
