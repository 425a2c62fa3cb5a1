"""Configs of the training CLI: one `get_config()` per experiment.

`base.get_config()` holds every field with the reference defaults; each
experiment file starts from it and changes what differs.
"""
