"""The role names, apart from config.py so the CLI's parser needs no config machinery."""

ROLES = ("master", "worker", "leecher")
