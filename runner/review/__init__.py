"""The morning review: a local page to judge, edit and redo a run from."""
