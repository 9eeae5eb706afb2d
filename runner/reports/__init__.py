"""What a run folder says: the report table and page, the status summary, failed tasks as
manifests, the contact sheet, the morning message.
"""
