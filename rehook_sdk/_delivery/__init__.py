"""
The background side of a client, in the order a call meets it: intake admits it or ends it, a sender takes it off
the queue and routes it, attempts send each request with retries, outcomes end it exactly once; adoption takes
calls over from a spool, and the engine starts, drains and stops these parts.
"""
