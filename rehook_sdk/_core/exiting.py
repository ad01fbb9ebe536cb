"""
Whether the interpreter is exiting: set by the exit drain (``_exit.py``) when it starts, read by what it makes run.

While it is true, what is made must not need a new thread (Python 3.12 refuses to start one in an exit hook: "can't
create new thread at interpreter shutdown"): the transports resolve names without an executor, and adoption from a
spool starts no writer thread.
"""

draining = False
