"""The thread diagram tool: `python -m pyloop.threads script.py` (see __main__.py).

record.py records (the script's process hooks threading; the tool samples /proc),
draw.py shows (a table, a PNG timeline). Works for any loop: asyncio, uvloop, pyloop.
"""
