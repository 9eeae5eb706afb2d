"""Manifests: reading YAML, CSV, globs and captions (``files``), rows and their expansion
(``rows``), and the plan: validation, pictures, price (``plan``).
"""
