"""
What users read about outcomes: the counters behind `stats()`, the OpenTelemetry instruments, and the log of calls
not delivered, aggregated per reason.
"""
