"""
The background side of a client, in the order a call meets it: intake admits it or ends it into the queue, a
sender takes it off the queue and routes it, attempts send each request (with retries, the reachability gate, the
concurrency limiter and what each answer proves), outcomes end it exactly once and hand it to its handle; adoption
takes calls over from a spool, the drain ends a client by its deadline, and the engine starts and stops the parts.
"""
