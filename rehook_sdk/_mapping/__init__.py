"""
Segment's semantics and Rehook's actions, pure: a call in, a request (or the reason there is none) out; no I/O and no
asyncio. FQL triggers, mapping-kit directives and JavaScript value rules (as Segment's code behaves), the audience
rules, the Segment event built from a call, the two actions' request bodies, and the router that picks a mapping.
"""
