"""
What outlives the process: the spool's part in a call's life (`spooling.py`) and its stores (`spools/`), the
dead-letter file's writer, and the files that hold calls.
"""
